import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Synchronization
import Testing

/// The storage layer's group commit, which the audit log, the call log and waiting writes share.
@Suite("Group commit")
struct GroupCommitTests {
  static func database() throws -> EncryptedDatabase {
    let database = try EncryptedDatabase.open(path: try temporaryDirectory() + "/group.db", key: .key(AEAD.makeKey()), create: true)
    try database.write { db in try db.execute(sql: "CREATE TABLE entry (value INTEGER NOT NULL UNIQUE)") }
    return database
  }

  static func values(_ database: EncryptedDatabase) throws -> [Int] {
    try database.read { db in try Int.fetchAll(db, sql: "SELECT value FROM entry ORDER BY value") }
  }

  @Test("entries appended are written together within the delay; flush writes at once; a failed batch is kept and retried")
  func appendFlushRetry() async throws {
    let database = try Self.database()
    let transactions = Mutex(0)
    let failNext = Mutex(false)
    let group = GroupCommit<Int>(database: database, label: "test", delay: .milliseconds(20), limit: 1000, onFailure: .retry) {
      db, entries in
      transactions.withLock { $0 += 1 }
      if failNext.withLock({ failing in defer { failing = false }; return failing }) {
        throw StorageError(.failed, "disk full, say")
      }
      for value in entries { try db.execute(literal: "INSERT INTO entry (value) VALUES (\(value))") }
    }
    for value in 0..<100 { group.append(value) }
    #expect(group.unwritten { $0.count } == 100)
    // Written by the group's own queue, in one transaction, without anyone flushing.
    let deadline = ContinuousClock.now + .seconds(5)
    while try Self.values(database).count < 100, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
    #expect(try Self.values(database) == Array(0..<100))
    #expect(transactions.withLock { $0 } == 1)
    #expect(group.unwritten { $0.count } == 0)

    // A failing transaction loses nothing: the entries wait for the next batch.
    failNext.withLock { $0 = true }
    group.append(100)
    #expect(throws: StorageError.self) { try group.flush() }
    #expect(group.unwritten { $0 } == [100])
    group.append(101)
    try group.flush()
    #expect(try Self.values(database).suffix(2) == [100, 101])
  }

  @Test("a batch reaching the limit is written at once; callers that report learn each batch's outcome")
  func limitAndReport() async throws {
    let database = try Self.database()
    let outcomes = Mutex<[(count: Int, ok: Bool)]>([])
    let group = GroupCommit<Int>(
      database: database, label: "test", delay: .seconds(3600), limit: 10, onFailure: .report,
      write: { db, entries in
        for value in entries { try db.execute(literal: "INSERT INTO entry (value) VALUES (\(value))") }
      },
      committed: { entries, outcome in
        outcomes.withLock { $0.append((entries.count, (try? outcome.get()) != nil)) }
      })
    for value in 0..<10 { group.append(value) }
    // The delay is an hour: only the limit can have started this batch.
    let deadline = ContinuousClock.now + .seconds(5)
    while outcomes.withLock({ $0.isEmpty }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
    #expect(outcomes.withLock { $0.map(\.count) } == [10])
    // A duplicate fails its whole batch, and is not retried.
    group.append(5)
    #expect(throws: (any Error).self) { try group.flush() }
    #expect(outcomes.withLock { $0.last?.ok } == false)
    #expect(group.unwritten { $0.count } == 0)
    #expect(try Self.values(database) == Array(0..<10))
  }

  @Test("batched writes: concurrent callers share transactions, and one failing rolls back alone")
  func batchedWrites() async throws {
    let database = try Self.database()
    let writes = BatchedWrites(database: database) { $0 }
    try await withThrowingTaskGroup(of: Bool.self) { group in
      for value in 0..<200 {
        group.addTask {
          do {
            try await writes.write { db in
              try db.execute(literal: "INSERT INTO entry (value) VALUES (\(value))")
              // Every tenth writes, then fails: its row must not stay.
              if value % 10 == 0 { throw StorageError(.rejected, "refused") }
            }
            return true
          } catch let error as StorageError {
            #expect(error.code == .rejected)
            return false
          }
        }
      }
      var succeeded = 0
      for try await ok in group where ok { succeeded += 1 }
      #expect(succeeded == 180)
    }
    #expect(try Self.values(database) == (0..<200).filter { $0 % 10 != 0 })
  }
}
