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
  let key: SecretBytes
  /// Records waiting to be written (reads and denials must not each cost a transaction).
  private let writes: GroupCommit<Entry>

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
    // Where the chain continues after entries older than the retention were pruned: the last
    // pruned entry's sequence and hash, authenticated with the audit key (see AuditLog+Retention).
    migrator.registerMigration("audit-v2-anchor") { db in
      try db.execute(
        sql: """
          CREATE TABLE audit_anchor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            sequence INTEGER NOT NULL,
            hash BLOB NOT NULL,
            before_ms INTEGER NOT NULL,
            mac BLOB NOT NULL
          );
          """)
    }
    return migrator
  }()

  /// Opens the log in `database` with the node's audit `key`.
  public init(database: EncryptedDatabase, key: SecretBytes) throws {
    self.database = database
    self.key = key
    // A batch is written together; an entry identical to an earlier one of the batch but for its
    // time (the same caller reading the same record again and again) is counted on it, `×N` in
    // its detail, rather than written again.
    self.writes = GroupCommit(
      database: database, label: "audit", delay: .milliseconds(20), limit: 4096, onFailure: .retry
    ) { db, entries in
      var distinct: [(entry: Entry, count: Int)] = []
      var index: [EventKey: Int] = [:]
      for entry in entries {
        if let at = index[EventKey(entry)] {
          distinct[at].count += 1
        } else {
          index[EventKey(entry)] = distinct.count
          distinct.append((entry, 1))
        }
      }
      for (entry, count) in distinct {
        var written = entry
        if count > 1 { written.detail += (written.detail.isEmpty ? "" : " ") + "×\(count)" }
        try Self.append(written, key: key, in: db)
      }
    }
    do { try Self.migrator.migrate(database.pool) } catch { throw EncryptedDatabase.mapError(error, path: database.path) }
  }

  /// Appends `entry` inside the caller's write transaction: the event commits with the change it
  /// records, or not at all.
  public func append(_ entry: Entry, in db: Database) throws {
    try Self.append(entry, key: key, in: db)
  }

  static func append(_ entry: Entry, key: SecretBytes, in db: Database) throws {
    let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT sequence, hash FROM audit_event ORDER BY sequence DESC LIMIT 1"))
    let sequence: Int64 = (last?["sequence"] ?? 0) + 1
    let previous = last.map { [UInt8]($0["hash"] as Data) } ?? []
    let hash = Data(try chainHash(previous: previous, sequence: sequence, entry, key: key))
    // A constant statement, prepared once per connection, its values bound (a mutation writes one
    // of these in its own transaction: no SQL is built per event).
    try db.cachedStatement(
      sql: "INSERT INTO audit_event (sequence, time_ms, actor, action, target, outcome, detail, peer, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ).execute(arguments: [sequence, entry.timeMs, entry.actor, entry.action, entry.target, entry.outcome, entry.detail, entry.peer, hash])
  }

  /// Records `entry` soon, written with others in one transaction within about 20 ms.
  /// ``flush()`` writes what is pending; listing events flushes first.
  public func record(_ entry: Entry) {
    writes.append(entry)
  }

  /// Entries appended and not yet committed (waiting for their group, or being written).
  public var backlog: Int { writes.unwritten { $0.count } }

  /// Writes every pending entry now.
  public func flush() throws {
    try writes.flush()
  }

  /// Events after `after`, oldest first, optionally only of one actor, action or outcome.
  public func events(after: Int64, actor: String = "", action: String = "", outcome: String = "", limit: Int)
    throws -> [Eduhub_Identity_V1_AuditEvent]
  {
    try flush()
    return try database.read { db in
      var sql: SQL = "SELECT sequence, time_ms, actor, action, target, outcome, detail, peer, hash FROM audit_event WHERE sequence > \(after)"
      if !actor.isEmpty { sql += " AND actor = \(actor)" }
      if !action.isEmpty { sql += " AND action = \(action)" }
      if !outcome.isEmpty { sql += " AND outcome = \(outcome)" }
      sql += " ORDER BY sequence LIMIT \(limit)"
      return try Row.fetchAll(db, SQLRequest(literal: sql)).map { row in
        var event = Eduhub_Identity_V1_AuditEvent()
        event.sequence = row["sequence"]
        event.timeMs = row["time_ms"]
        event.actor = row["actor"]
        event.action = row["action"]
        event.target = row["target"]
        event.outcome = row["outcome"]
        event.detail = row["detail"]
        event.peer = row["peer"]
        event.hash = IdentityService.hex([UInt8](row["hash"] as Data))
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

  /// Walks the whole chain and recomputes every hash; after a prune, from its authenticated anchor.
  public func verify() throws -> Verification {
    try flush()
    return try database.read { db in
      var walk = ChainWalk(key: key, previous: [], expected: 1)
      if let anchor = try Self.anchor(in: db) {
        guard try anchor.holds(key: key) else {
          return Verification(entries: 0, brokenAt: anchor.sequence, reason: "the record of pruned entries was changed")
        }
        walk = ChainWalk(key: key, previous: anchor.hash, expected: anchor.sequence + 1)
      }
      let rows = try Row.fetchCursor(
        db, sql: "SELECT sequence, time_ms, actor, action, target, outcome, detail, peer, hash FROM audit_event ORDER BY sequence")
      while let row = try rows.next() {
        let entry = Entry(
          actor: row["actor"], action: row["action"], target: row["target"], outcome: row["outcome"], detail: row["detail"],
          peer: row["peer"], timeMs: row["time_ms"])
        if let broken = try walk.step(row["sequence"], entry, stored: [UInt8](row["hash"] as Data)) { return broken }
      }
      return Verification(entries: walk.count, brokenAt: nil, reason: nil)
    }
  }

  /// One walk along the chain, for the log and for an archive alike: each entry must come next in
  /// sequence and hash, with the one before it, to what is stored with it.
  struct ChainWalk {
    let key: SecretBytes
    var previous: [UInt8]
    /// The sequence the next entry must have (nil: any; an archive may start anywhere).
    var expected: Int64?
    private(set) var count: Int64 = 0

    init(key: SecretBytes, previous: [UInt8], expected: Int64?) {
      self.key = key
      self.previous = previous
      self.expected = expected
    }

    /// Checks the next entry; what ends the walk when it does not hold.
    mutating func step(_ sequence: Int64, _ entry: Entry, stored: [UInt8]) throws -> Verification? {
      count += 1
      if let expected, sequence != expected {
        return Verification(entries: count, brokenAt: sequence, reason: "entry \(expected) is missing")
      }
      guard ConstantTime.equals(try AuditLog.chainHash(previous: previous, sequence: sequence, entry, key: key), stored) else {
        return Verification(entries: count, brokenAt: sequence, reason: "entry \(sequence) was changed")
      }
      previous = stored
      expected = sequence + 1
      return nil
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
