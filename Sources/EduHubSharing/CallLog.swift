import EduHubAPI
import EduHubPrivacy
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Every shared API call and subscription session of this node: who, what, the parameters'
/// fingerprint (never their values), rows, bytes, status and latency.
///
/// A call only appends to memory; a background flush writes what accumulated in one transaction
/// (group commit), so logging never waits on the disk. Local to its node, like the audit log.
public final class CallLog: Sendable {
  /// One call or session.
  public struct Entry: Sendable {
    public var timeMs: Int64
    /// YYYY-MM-DD, China time.
    public var day: String
    public var resource: String
    public var resourceScope: String
    public var consumer: String
    public var consumerPath: String
    public var grant: String
    /// call, test or stream.
    public var kind: String
    public var fingerprint: String
    public var rows: Int64
    public var bytes: Int64
    /// The gRPC status code.
    public var status: Int
    public var latencyMicros: Int64
  }

  let database: EncryptedDatabase
  /// Calls waiting to be written.
  private let writes: GroupCommit<Entry>
  /// Written at once beyond this many.
  static let batch = 4096

  static let migrator: DatabaseMigrator = {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("share-call-log-v1") { db in
      try db.execute(
        sql: """
          CREATE TABLE share_call (
            id INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            day TEXT NOT NULL,
            resource TEXT NOT NULL,
            resource_scope TEXT NOT NULL,
            consumer TEXT NOT NULL,
            consumer_path TEXT NOT NULL,
            grant_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            rows INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            status INTEGER NOT NULL,
            latency_us INTEGER NOT NULL
          );
          CREATE INDEX share_call_day ON share_call (day, resource, consumer);
          CREATE INDEX share_call_grant ON share_call (grant_id, day);
          """)
    }
    migrator.registerMigration("share-call-log-v2-daily") { db in
      // Statistics read these running totals, one row a day, resource and consumer: grouping the
      // raw log sorted every call of the period in a temporary b-tree (180 MB for 1.8M calls).
      try db.execute(
        sql: """
          CREATE TABLE share_call_daily (
            day TEXT NOT NULL,
            resource TEXT NOT NULL,
            consumer TEXT NOT NULL,
            resource_scope TEXT NOT NULL,
            consumer_path TEXT NOT NULL,
            calls INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            latency_us INTEGER NOT NULL,
            sessions INTEGER NOT NULL,
            PRIMARY KEY (day, resource, consumer, resource_scope, consumer_path)
          ) WITHOUT ROWID;
          INSERT INTO share_call_daily
            SELECT day, resource, consumer, resource_scope, consumer_path, sum(kind != 'stream'), sum(status != 0), sum(rows),
              sum(bytes), sum(CASE WHEN kind != 'stream' THEN latency_us ELSE 0 END), sum(kind = 'stream')
            FROM share_call GROUP BY day, resource, consumer, resource_scope, consumer_path;
          DROP INDEX share_call_day;
          """)
    }
    return migrator
  }()

  init(database: EncryptedDatabase) throws {
    self.database = database
    self.writes = GroupCommit(
      database: database, label: "calls", delay: .milliseconds(50), limit: Self.batch, onFailure: .retry, write: Self.write)
    do { try Self.migrator.migrate(database.pool) } catch { throw EncryptedDatabase.mapError(error, path: database.path) }
  }

  /// Logs `entry` soon (within about 50 ms, or at once when many are waiting).
  public func record(_ entry: Entry) {
    writes.append(entry)
  }

  /// Entries appended and not yet committed (waiting for their group, or being written).
  public var backlog: Int { writes.unwritten { $0.count } }

  /// Writes every pending entry now.
  public func flush() throws {
    try writes.flush()
  }

  /// Writes a batch: each call, and the day's totals by one upsert per group of the batch.
  private static func write(_ db: Database, _ entries: [Entry]) throws {
    struct Key: Hashable { let day, resource, consumer, scope, path: String }
    var totals: [Key: [Int64]] = [:]
    // One constant statement for the batch, its values bound per call (every shared API call logs
    // one: no SQL is built per call).
    let insert = try db.cachedStatement(
      sql: """
        INSERT INTO share_call (time_ms, day, resource, resource_scope, consumer, consumer_path, grant_id, kind,
          fingerprint, rows, bytes, status, latency_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """)
    for entry in entries {
      try insert.execute(arguments: [
        entry.timeMs, entry.day, entry.resource, entry.resourceScope, entry.consumer, entry.consumerPath, entry.grant, entry.kind,
        entry.fingerprint, entry.rows, entry.bytes, entry.status, entry.latencyMicros,
      ])
      let session = entry.kind == "stream"
      let key = Key(day: entry.day, resource: entry.resource, consumer: entry.consumer, scope: entry.resourceScope, path: entry.consumerPath)
      let add: [Int64] = [
        session ? 0 : 1, entry.status != 0 ? 1 : 0, entry.rows, entry.bytes, session ? 0 : entry.latencyMicros, session ? 1 : 0,
      ]
      totals[key] = zip(totals[key] ?? [0, 0, 0, 0, 0, 0], add).map { $0 + $1 }
    }
    for (key, values) in totals {
      try db.cachedStatement(
        literal: """
          INSERT INTO share_call_daily (day, resource, consumer, resource_scope, consumer_path, calls, failures, rows, bytes,
            latency_us, sessions)
          VALUES (\(key.day), \(key.resource), \(key.consumer), \(key.scope), \(key.path), \(values[0]), \(values[1]),
            \(values[2]), \(values[3]), \(values[4]), \(values[5]))
          ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, failures = failures + excluded.failures,
            rows = rows + excluded.rows, bytes = bytes + excluded.bytes, latency_us = latency_us + excluded.latency_us,
            sessions = sessions + excluded.sessions
          """
      ).execute()
    }
  }

  /// Calls (not tests or sessions) of `grant` logged on `day`: those written and those pending (no
  /// flush: this may run on an event loop, where a write transaction must not).
  /// Calls of `grant` on `day` that count against its quota: online tests too (they return rows).
  func calls(of grant: String, on day: String) throws -> Int64 {
    // Memory first (pending and being written): an entry committed between the two reads is
    // counted twice rather than missed.
    let pending = writes.unwritten { entries in
      Int64(entries.lazy.filter { $0.grant == grant && $0.day == day && ($0.kind == "call" || $0.kind == "test") }.count)
    }
    let written = try database.read { db in
      try Int64.fetchOne(db, SQLRequest<Int64>(literal: "SELECT count(*) FROM share_call WHERE grant_id = \(grant) AND day = \(day) AND kind IN ('call', 'test')")) ?? 0
    }
    return written + pending
  }

  /// One group of the statistics, with what decides who may see it.
  struct Group {
    var stat: Eduhub_Sharing_V1_CallStat
    var resourceScope: String
    var consumerPath: String
  }

  /// Calls and sessions by day, resource and consumer over [from, to].
  func statistics(from: String, to: String, resource: String, consumer: String) throws -> [Group] {
    try flush()
    return try database.read { db in
      var sql: SQL = """
        SELECT day, resource, consumer, resource_scope, consumer_path, calls, failures, rows, bytes, latency_us, sessions
        FROM share_call_daily WHERE day >= \(from) AND day <= \(to)
        """
      if !resource.isEmpty { sql += " AND resource = \(resource)" }
      if !consumer.isEmpty { sql += " AND consumer = \(consumer)" }
      sql += " ORDER BY day, resource, consumer"
      return try Row.fetchAll(db, SQLRequest(literal: sql)).map { row in
        var stat = Eduhub_Sharing_V1_CallStat()
        stat.day = row["day"]
        stat.resourceCode = row["resource"]
        stat.consumerID = row["consumer"]
        stat.calls = row["calls"]
        stat.failures = row["failures"]
        stat.rows = row["rows"]
        stat.bytes = row["bytes"]
        let latency: Int64 = row["latency_us"]
        stat.meanLatencyUs = stat.calls > 0 ? latency / stat.calls : 0
        stat.sessions = row["sessions"]
        return Group(stat: stat, resourceScope: row["resource_scope"], consumerPath: row["consumer_path"])
      }
    }
  }
}
