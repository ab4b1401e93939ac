import Dispatch
import GRDB
import Synchronization

/// Group commit: entries that arrive while a transaction runs wait and then share the next one, so
/// many small writes cost one commit between them instead of one each.
///
/// The transactions run on a serial queue of the group's own, never on the caller's thread: a batch
/// blocks its thread while SQLite writes, and the cooperative pool (one thread per core) is for the
/// callers. Entries are written within `delay` of the first one waiting, or at once when `limit`
/// wait. What a failed transaction does with its entries is the owner's choice: logs put them back
/// to be written by the next batch (nothing is dropped silently), callers waiting on a write learn
/// the error.
public final class GroupCommit<Entry: Sendable>: Sendable {
  /// What happens to a batch whose transaction failed.
  public enum OnFailure: Sendable {
    /// Back in front of what came since, for the next batch (logs).
    case retry
    /// Handed to `committed` with the error (callers that wait).
    case report
  }

  private struct State {
    var pending: [Entry] = []
    /// Entries a transaction is writing now (see ``unwritten(_:)``).
    var writing: [Entry] = []
    /// A batch is queued or running; it takes what arrives until nothing waits.
    var scheduled = false
  }

  private let state = Mutex(State())
  private let database: EncryptedDatabase
  private let queue: DispatchQueue
  private let delay: Duration
  private let limit: Int
  private let onFailure: OnFailure
  private let write: @Sendable (Database, [Entry]) throws -> Void
  private let committed: @Sendable ([Entry], Result<Void, any Error>) -> Void

  /// - Parameters:
  ///   - write: writes a batch inside the group's transaction.
  ///   - committed: learns each batch's outcome once its transaction has committed or failed.
  public init(
    database: EncryptedDatabase, label: String, delay: Duration = .zero, limit: Int, onFailure: OnFailure,
    write: @escaping @Sendable (Database, [Entry]) throws -> Void,
    committed: @escaping @Sendable ([Entry], Result<Void, any Error>) -> Void = { _, _ in }
  ) {
    self.database = database
    self.queue = DispatchQueue(label: "eduhub.group-commit.\(label)", qos: .userInitiated)
    self.delay = delay
    self.limit = max(1, limit)
    self.onFailure = onFailure
    self.write = write
    self.committed = committed
  }

  /// Queues `entry` for the next batch; does not wait for it.
  public func append(_ entry: Entry) {
    let (schedule, now) = state.withLock { state -> (Bool, Bool) in
      state.pending.append(entry)
      let full = state.pending.count >= limit
      if state.scheduled { return (full && state.pending.count == limit, true) }
      state.scheduled = true
      return (true, full || delay == .zero)
    }
    guard schedule else { return }
    if now {
      queue.async { self.drain() }
    } else {
      let (seconds, attoseconds) = delay.components
      let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
      queue.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { self.drain() }
    }
  }

  /// Writes everything waiting now, after any batch already running, and throws if that fails.
  public func flush() throws {
    try queue.sync {
      while let batch = take() {
        if case .failure(let error) = commit(batch) { throw error }
      }
    }
  }

  /// Runs `body` on the entries not yet committed: waiting or being written.
  public func unwritten<T>(_ body: ([Entry]) -> T) -> T {
    state.withLock { body($0.writing + $0.pending) }
  }

  /// On the queue: writes batches until nothing waits (or one fails and is kept for later).
  private func drain() {
    while let batch = take() {
      if case .failure = commit(batch), onFailure == .retry {
        state.withLock { $0.scheduled = false }
        return
      }
    }
  }

  /// The next batch, marked as being written; nil (and nothing scheduled) when none waits.
  private func take() -> [Entry]? {
    state.withLock { state -> [Entry]? in
      guard !state.pending.isEmpty else {
        state.scheduled = false
        return nil
      }
      let batch = Array(state.pending.prefix(limit))
      state.pending.removeFirst(batch.count)
      state.writing = batch
      return batch
    }
  }

  /// Writes `batch` in one transaction and settles it.
  private func commit(_ batch: [Entry]) -> Result<Void, any Error> {
    let result: Result<Void, any Error>
    do {
      try database.write { db in try write(db, batch) }
      result = .success(())
    } catch {
      result = .failure(error)
    }
    state.withLock { state in
      state.writing = []
      if case .failure = result, onFailure == .retry { state.pending.insert(contentsOf: batch, at: 0) }
    }
    committed(batch, result)
    return result
  }
}

/// Writes of callers that wait for their commit, grouped: each runs in its own savepoint of the
/// shared transaction, so one failing rolls back alone, and each caller returns once the
/// transaction has committed.
public final class BatchedWrites: Sendable {
  /// One caller's write: runs inside the batch, then learns the commit's outcome.
  struct Job: Sendable {
    let run: @Sendable (Database) -> Void
    let finish: @Sendable (Result<Void, any Error>) -> Void
  }

  private let group: GroupCommit<Job>
  private let mapError: @Sendable (any Error) -> any Error
  /// The most writes in one transaction.
  static let limit = 256

  public init(database: EncryptedDatabase, mapError: @escaping @Sendable (any Error) -> any Error) {
    self.mapError = mapError
    group = GroupCommit(
      database: database, label: "writes", limit: Self.limit, onFailure: .report,
      write: { db, jobs in for job in jobs { job.run(db) } },
      committed: { jobs, outcome in
        let mapped = outcome.mapError(mapError)
        for job in jobs { job.finish(mapped) }
      })
  }

  /// Runs `body` in the next shared transaction; returns once that transaction has committed.
  public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
      let kept = Mutex<Result<T, any Error>?>(nil)
      let mapError = self.mapError
      group.append(
        Job(
          run: { db in
            // Savepoints by prepared statements (compiled once per connection, not once per write).
            var result: Result<T, any Error>
            do {
              try db.cachedStatement(sql: "SAVEPOINT eduhub_batch").execute()
              do {
                result = .success(try body(db))
                try db.cachedStatement(sql: "RELEASE SAVEPOINT eduhub_batch").execute()
              } catch {
                result = .failure(mapError(error))
                try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT eduhub_batch").execute()
                try db.cachedStatement(sql: "RELEASE SAVEPOINT eduhub_batch").execute()
              }
            } catch {
              result = .failure(mapError(error))
            }
            kept.withLock { $0 = result }
          },
          finish: { commit in
            switch (commit, kept.withLock { $0 }) {
            case (.failure(let error), _): continuation.resume(throwing: error)
            case (.success, .success(let value)?): continuation.resume(returning: value)
            case (.success, .failure(let error)?): continuation.resume(throwing: error)
            case (.success, nil): continuation.resume(throwing: StorageError(.failed, "the write was not run"))
            }
          }))
    }
  }
}
