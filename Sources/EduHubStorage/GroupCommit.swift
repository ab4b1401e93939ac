import Dispatch
import GRDB
import Synchronization

/// Group commit: writes that arrive while a transaction runs wait and then share the next one,
/// each inside its own savepoint (a failing one rolls back alone), and learn their outcome once
/// that transaction has committed. Many small concurrent writes (work order submissions) then cost
/// one commit between them instead of one each, and wait for the writer once, not in a queue.
public final class GroupCommit: Sendable {
  private struct Job: Sendable {
    /// Runs the write inside the shared transaction; returns what to do after the commit.
    let run: @Sendable (Database) -> @Sendable (Result<Void, any Error>) -> Void
    /// Ends the write with an error when the transaction never ran it.
    let fail: @Sendable (any Error) -> Void
  }

  private struct State {
    var pending: [Job] = []
    var draining = false
  }

  private let state = Mutex(State())
  private let database: EncryptedDatabase
  private let mapError: @Sendable (any Error) -> any Error
  static let queue = DispatchQueue(label: "eduhub.group-commit", qos: .userInitiated)
  /// The most writes in one transaction.
  static let limit = 256

  public init(database: EncryptedDatabase, mapError: @escaping @Sendable (any Error) -> any Error) {
    self.database = database
    self.mapError = mapError
  }

  /// Runs `body` in the next shared transaction; returns once that transaction has committed.
  public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
      let job = Job(run: { db in
        // Savepoints by prepared statements (compiled once per connection, not once per write).
        var result: Result<T, any Error>
        do {
          try db.cachedStatement(sql: "SAVEPOINT eduhub_batch").execute()
          do {
            result = .success(try body(db))
            try db.cachedStatement(sql: "RELEASE SAVEPOINT eduhub_batch").execute()
          } catch {
            result = .failure(self.mapError(error))
            try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT eduhub_batch").execute()
            try db.cachedStatement(sql: "RELEASE SAVEPOINT eduhub_batch").execute()
          }
        } catch {
          result = .failure(self.mapError(error))
        }
        let outcome = result
        return { commit in
          switch (commit, outcome) {
          case (.failure(let error), _): continuation.resume(throwing: error)
          case (.success, .success(let value)): continuation.resume(returning: value)
          case (.success, .failure(let error)): continuation.resume(throwing: error)
          }
        }
      }, fail: { error in continuation.resume(throwing: error) })
      let start = state.withLock { state -> Bool in
        state.pending.append(job)
        guard !state.draining else { return false }
        state.draining = true
        return true
      }
      // On a queue of its own: a batch blocks its thread while it writes, and the cooperative
      // pool (one thread per core) is for the callers.
      if start { Self.queue.async { self.drain() } }
    }
  }

  /// Writes batches until nothing waits.
  private func drain() {
    while true {
      let batch = state.withLock { state -> [Job] in
        let taken = Array(state.pending.prefix(Self.limit))
        state.pending.removeFirst(taken.count)
        if taken.isEmpty { state.draining = false }
        return taken
      }
      guard !batch.isEmpty else { return }
      var finishers: [@Sendable (Result<Void, any Error>) -> Void] = []
      let commit: Result<Void, any Error>
      do {
        try database.write { db in
          finishers = batch.map { $0.run(db) }
        }
        commit = .success(())
      } catch {
        commit = .failure(mapError(error))
      }
      // Every write learns the outcome once: the ones that ran through their finisher (a failed
      // commit fails them all), the ones the transaction never reached through `fail`.
      for finish in finishers { finish(commit) }
      if finishers.count < batch.count {
        let error: any Error
        if case .failure(let failure) = commit { error = failure } else { error = StorageError(.failed, "the write was not run") }
        for job in batch[finishers.count...] { job.fail(error) }
      }
    }
  }
}
