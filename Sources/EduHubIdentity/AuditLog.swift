import EduHubAPI
import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Synchronization

/// The append-only, hash-chained audit log of a node: logins, failures, denials, mutations and
/// clear reads of minors' data.
///
/// Each entry holds a keyed BLAKE2b hash of its own fields and the previous entry's hash, with the
/// node's audit key (kept in its key store, not in the database): changing, inserting or removing an
/// entry breaks the chain from there on, and without the key nobody can forge a new chain.
/// The log is local to its node (it records what this node did and was asked).
public final class AuditLog: Sendable {
  /// One event to record.
  public struct Entry: Sendable, Hashable {
    public var actor: String
    public var action: String
    public var target: String
    public var outcome: String
    public var detail: String
    public var peer: String
    public var timeMs: Int64

    public init(
      actor: String, action: String, target: String = "", outcome: String = "ok", detail: String = "",
      peer: String = "", timeMs: Int64 = Int64(Date().timeIntervalSince1970 * 1000)
    ) {
      self.actor = actor
      self.action = action
      self.target = target
      self.outcome = outcome
      self.detail = detail
      self.peer = peer
      self.timeMs = timeMs
    }
  }

  let database: EncryptedDatabase
  private let key: SecretBytes
  private struct Pending {
    var entries: [(entry: Entry, count: Int)] = []
    /// Where each distinct event stands in `entries`.
    var index: [EventKey: Int] = [:]
    var flushScheduled = false
  }

  /// An event without its time: what makes two records of it the same.
  private struct EventKey: Hashable {
    let actor, action, target, outcome, detail, peer: String

    init(_ entry: Entry) {
      actor = entry.actor
      action = entry.action
      target = entry.target
      outcome = entry.outcome
      detail = entry.detail
      peer = entry.peer
    }
  }

  private let pending = Mutex(Pending())

  static let migrator: DatabaseMigrator = {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("audit-v1") { db in
      try db.execute(
        sql: """
          CREATE TABLE audit_event (
            sequence INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            peer TEXT NOT NULL,
            hash BLOB NOT NULL
          );
          CREATE INDEX audit_event_actor ON audit_event (actor, sequence);
          """)
    }
    return migrator
  }()

  /// Opens the log in `database` with the node's audit `key`.
  public init(database: EncryptedDatabase, key: SecretBytes) throws {
    self.database = database
    self.key = key
    do { try Self.migrator.migrate(database.pool) } catch { throw EncryptedDatabase.mapError(error, path: database.path) }
  }

  /// Appends `entry` inside the caller's write transaction: the event commits with the change it
  /// records, or not at all.
  public func append(_ entry: Entry, in db: Database) throws {
    let last = try Row.fetchOne(
      db.cachedStatement(sql: "SELECT sequence, hash FROM audit_event ORDER BY sequence DESC LIMIT 1"))
    let sequence: Int64 = (last?[0] ?? 0) + 1
    let previous = last.map { [UInt8]($0[1] as Data) } ?? []
    let hash = try Self.chainHash(previous: previous, sequence: sequence, entry, key: key)
    try db.cachedStatement(
      sql: """
        INSERT INTO audit_event (sequence, time_ms, actor, action, target, outcome, detail, peer, hash)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      sequence, entry.timeMs, entry.actor, entry.action, entry.target, entry.outcome, entry.detail, entry.peer,
      Data(hash),
    ])
  }

  /// Records `entry` soon, batched with others (reads and denials must not each cost a transaction).
  /// An entry identical to one already pending (the same caller reading the same record again and
  /// again, within one flush) is counted on it, `×N` in its detail, rather than written again. ``flush()`` writes what is pending; listing events flushes first.
  public func record(_ entry: Entry) {
    let key = EventKey(entry)
    let schedule = pending.withLock { state -> Bool in
      if let index = state.index[key] {
        state.entries[index].count += 1
        return false
      }
      state.index[key] = state.entries.count
      state.entries.append((entry, 1))
      if state.flushScheduled { return false }
      state.flushScheduled = true
      return true
    }
    guard schedule else { return }
    Task.detached { [self] in
      try? await Task.sleep(for: .milliseconds(20))
      try? flush()
    }
  }

  /// Writes every pending entry now.
  public func flush() throws {
    let entries = pending.withLock { state -> [(entry: Entry, count: Int)] in
      defer { state = Pending() }
      return state.entries
    }
    guard !entries.isEmpty else { return }
    do {
      try database.write { db in
        for (entry, count) in entries {
          var written = entry
          if count > 1 { written.detail += (written.detail.isEmpty ? "" : " ") + "×\(count)" }
          try append(written, in: db)
        }
      }
    } catch {
      // Put them back first so a later flush retries: an audit event is never dropped silently.
      pending.withLock { state in
        state.entries.insert(contentsOf: entries, at: 0)
        state.index = [:]
        for (position, pending) in state.entries.enumerated() { state.index[EventKey(pending.entry)] = position }
      }
      throw error
    }
  }

  /// Events after `after`, oldest first, optionally only of one actor, action or outcome.
  public func events(after: Int64, actor: String = "", action: String = "", outcome: String = "", limit: Int)
    throws -> [Eduhub_Identity_V1_AuditEvent]
  {
    try flush()
    return try database.read { db in
      var sql = "SELECT sequence, time_ms, actor, action, target, outcome, detail, peer, hash FROM audit_event WHERE sequence > ?"
      var arguments: [any DatabaseValueConvertible] = [after]
      if !actor.isEmpty {
        sql += " AND actor = ?"
        arguments.append(actor)
      }
      if !action.isEmpty {
        sql += " AND action = ?"
        arguments.append(action)
      }
      if !outcome.isEmpty {
        sql += " AND outcome = ?"
        arguments.append(outcome)
      }
      sql += " ORDER BY sequence LIMIT ?"
      arguments.append(limit)
      return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
        var event = Eduhub_Identity_V1_AuditEvent()
        event.sequence = row[0]
        event.timeMs = row[1]
        event.actor = row[2]
        event.action = row[3]
        event.target = row[4]
        event.outcome = row[5]
        event.detail = row[6]
        event.peer = row[7]
        event.hash = [UInt8](row[8] as Data).map { String(format: "%02x", $0) }.joined()
        return event
      }
    }
  }

  /// What verifying the chain found.
  public struct Verification: Sendable, Hashable {
    public var entries: Int64
    /// The first entry that does not hold (changed, inserted, or after a removed one); nil if the
    /// chain is whole.
    public var brokenAt: Int64?
    public var reason: String?
  }

  /// Walks the whole chain and recomputes every hash.
  public func verify() throws -> Verification {
    try flush()
    return try database.read { db in
      var previous: [UInt8] = []
      var expected: Int64 = 1
      var count: Int64 = 0
      let rows = try Row.fetchCursor(
        db, sql: "SELECT sequence, time_ms, actor, action, target, outcome, detail, peer, hash FROM audit_event ORDER BY sequence")
      while let row = try rows.next() {
        let sequence: Int64 = row[0]
        let entry = Entry(
          actor: row[2], action: row[3], target: row[4], outcome: row[5], detail: row[6], peer: row[7], timeMs: row[1])
        let stored = [UInt8](row[8] as Data)
        count += 1
        if sequence != expected {
          return Verification(entries: count, brokenAt: sequence, reason: "entry \(expected) is missing")
        }
        let hash = try Self.chainHash(previous: previous, sequence: sequence, entry, key: key)
        guard ConstantTime.equals(hash, stored) else {
          return Verification(entries: count, brokenAt: sequence, reason: "entry \(sequence) was changed")
        }
        previous = stored
        expected += 1
      }
      return Verification(entries: count, brokenAt: nil, reason: nil)
    }
  }

  static func chainHash(previous: [UInt8], sequence: Int64, _ entry: Entry, key: SecretBytes) throws -> [UInt8] {
    var message = previous
    WireFields.appendVarint(UInt64(bitPattern: sequence), to: &message)
    WireFields.appendVarint(UInt64(bitPattern: entry.timeMs), to: &message)
    for text in [entry.actor, entry.action, entry.target, entry.outcome, entry.detail, entry.peer] {
      let utf8 = Array(text.utf8)
      WireFields.appendVarint(UInt64(utf8.count), to: &message)
      message += utf8
    }
    return try KeyedHash.hash(message, key: key, length: 32)
  }
}
