import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// One record as stored: an entity of a collection, with what replication needs to reconcile it.
public struct StoredRecord: Sendable, Hashable {
  public var collection: String
  public var id: String
  /// The org path the record belongs to, e.g. `511700/511702/5117020001`.
  public var scope: String
  /// The protobuf body.
  public var body: [UInt8]
  /// The encoded version vector (opaque to the store).
  public var version: [UInt8]
  /// The encoded per-field stamps (opaque to the store).
  public var stamps: [UInt8]
  /// A tombstone: kept so the deletion replicates.
  public var deleted: Bool
  /// The local change sequence of the record's last write (assigned by the store).
  public var sequence: Int64

  public init(
    collection: String, id: String, scope: String, body: [UInt8], version: [UInt8] = [], stamps: [UInt8] = [],
    deleted: Bool = false, sequence: Int64 = 0
  ) {
    self.collection = collection
    self.id = id
    self.scope = scope
    self.body = body
    self.version = version
    self.stamps = stamps
    self.deleted = deleted
    self.sequence = sequence
  }
}

/// What a collection declares: exact-match indexes and whether it is searchable, and how to get
/// their keys and text out of a body.
public struct CollectionDefinition: Sendable {
  /// What the extractor finds in a body.
  public struct Extracted: Sendable {
    public var keys: [(index: String, key: String)]
    public var text: String?

    public init(keys: [(index: String, key: String)] = [], text: String? = nil) {
      self.keys = keys
      self.text = text
    }
  }

  public var name: String
  public var indexes: Set<String>
  public var searchable: Bool
  /// Keep an index of the collection's own changes (`changes(of:after:)`), for readers that hold
  /// the whole collection in memory and catch up on what changed. (A partial index: writes to other
  /// collections do not pay for it.)
  public var indexesChanges: Bool
  /// Reads index keys and search text from a body; throwing refuses the write (and its batch).
  public var extract: @Sendable ([UInt8]) throws -> Extracted

  public init(
    name: String, indexes: Set<String> = [], searchable: Bool = false, indexesChanges: Bool = false,
    extract: @escaping @Sendable ([UInt8]) throws -> Extracted = { _ in Extracted() }
  ) {
    self.name = name
    self.indexes = indexes
    self.searchable = searchable
    self.indexesChanges = indexesChanges
    self.extract = extract
  }
}

/// The record store: collections of records with secondary indexes, Chinese-capable search, scope
/// prefix queries and a change sequence, in one SQLite database.
///
/// Every write happens in a transaction and advances the store's change sequence in it; reading
/// records by sequence is the change log that sync pulls from. (The log is compacted: a record
/// appears once, at the sequence of its last write, which is what a puller needs.)
public final class RecordStore: Sendable {
  public let database: EncryptedDatabase
  let collections: [String: CollectionDefinition]
  /// Bumped after each commit that wrote a collection indexing its changes.
  public let changed = ChangeSignal()
  /// About how many records wait in `temp.staged_index` for their index keys and search text
  /// (never fewer than there are: a rolled-back write may leave it high, which only costs a lookup).
  let staged: Mutex<Int>
  /// Where this store's last write left the change sequence, and whether it found the sequence
  /// elsewhere since the last build (someone else wrote, or a write rolled back).
  let sequenceTrail = Mutex<(end: Int64?, othersWrote: Bool)>((nil, true))
  /// This store's staging mark in `store_meta` (see `deferredSince`).
  let stagingMark = RecordStore.deferredSince + ":" + UUID().uuidString

  /// Opens the store on `database`, migrating its schema.
  public init(database: EncryptedDatabase, collections: [CollectionDefinition]) throws {
    self.database = database
    self.collections = Dictionary(uniqueKeysWithValues: collections.map { ($0.name, $0) })
    self.staged = Mutex(0)
    do {
      try Self.migrator.migrate(database.pool)
      try database.pool.writeWithoutTransaction { db in
        // On the writer, outside any transaction: the table lives as long as the connection.
        try db.execute(sql: Self.createStagingTable)
        // A bulk load cut short (a crash in a first sync, or a close before its build) left records
        // unindexed: index them now.
        try db.inTransaction {
          try recoverDeferredIndexes(in: db)
          return .commit
        }
        let current = try lastSequence(in: db)
        sequenceTrail.withLock { $0 = (current, false) }
      }
      let tracked = collections.filter(\.indexesChanges).map(\.name)
      if !tracked.isEmpty {
        try database.pool.write { db in
          for name in tracked {
            try db.execute(sql: "CREATE INDEX IF NOT EXISTS \(Self.changeIndex(name)) ON record (sequence) WHERE collection = '\(name)'")
          }
        }
      }
    } catch { throw EncryptedDatabase.mapError(error, path: database.path) }
  }

  /// The name of a collection's change index. Collection names are the program's own, never input;
  /// the check keeps them identifiers, as they are spelled into SQL.
  static func changeIndex(_ collection: String) -> String {
    precondition(collection.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || $0 == UInt8(ascii: "_") }, "collection names are identifiers")
    return "record_changes_\(collection)"
  }

  static let migrator: DatabaseMigrator = {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("records-v1") { db in
      try db.execute(
        sql: """
          CREATE TABLE record (
            rowid INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            id TEXT NOT NULL,
            scope TEXT NOT NULL,
            body BLOB NOT NULL,
            version BLOB NOT NULL,
            stamps BLOB NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            sequence INTEGER NOT NULL,
            UNIQUE (collection, id)
          );
          CREATE INDEX record_scope ON record (collection, scope, id);
          CREATE UNIQUE INDEX record_sequence ON record (sequence);
          CREATE TABLE record_index (
            id INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            name TEXT NOT NULL,
            UNIQUE (collection, name)
          );
          CREATE TABLE record_key (
            index_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            record INTEGER NOT NULL,
            PRIMARY KEY (index_id, key, record)
          ) WITHOUT ROWID;
          CREATE VIRTUAL TABLE record_text USING fts5 (text, tokenize = 'unicode61');
          CREATE TABLE store_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
          CREATE TABLE conflict (
            id INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            record_id TEXT NOT NULL,
            field INTEGER NOT NULL,
            losing_value BLOB NOT NULL,
            losing_stamp BLOB NOT NULL,
            winning_stamp BLOB NOT NULL,
            local_version BLOB NOT NULL,
            remote_version BLOB NOT NULL,
            sequence INTEGER NOT NULL
          );
          CREATE INDEX conflict_record ON conflict (collection, record_id);
          INSERT INTO store_meta (name, value) VALUES ('sequence', 0);
          """)
    }
    migrator.registerMigration("records-v2-scope-exits") { db in
      // A record that leaves a scope (moved, or evicted from a node) leaves a mark here in the
      // write's own sequence, so nodes holding the old scope learn to drop it.
      try db.execute(
        sql: """
          CREATE TABLE scope_exit (
            sequence INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            id TEXT NOT NULL,
            old_scope TEXT NOT NULL,
            new_scope TEXT NOT NULL
          );
          """)
    }
    migrator.registerMigration("records-v3-blobs") { db in
      // Large values kept for the store's owner (a saved order index). Not in `store_meta`: that
      // table is WITHOUT ROWID, and a seek there compares keys by reading whole rows, so a few
      // megabytes beside the sequence slowed every write (the order index's first saves went
      // there, in builds never released; they are dropped).
      try db.execute(
        sql: """
          CREATE TABLE store_blob (name TEXT PRIMARY KEY, value BLOB NOT NULL);
          DELETE FROM store_meta WHERE name GLOB 'workorder.index*';
          """)
    }
    migrator.registerMigration("records-v4-staged") { db in
      // Where bulk loads staged index keys and search text until 2026-12 (they stage in
      // `temp.staged_index` now); rows left here by a crash are built when the store opens.
      try db.execute(
        sql: """
          CREATE TABLE record_staged (
            record INTEGER PRIMARY KEY,
            keys BLOB NOT NULL,
            text TEXT
          );
          """)
    }
    return migrator
  }()

  // MARK: Writing

  /// Writes `records` (insert or replace by collection and id) in one transaction: all or none.
  /// - Returns: the sequence assigned to each, in order.
  /// - Throws: ``StorageError`` `.rejected` (nothing written) if a record's collection is unknown,
  ///   its body cannot be indexed, or anything else fails.
  @discardableResult
  public func put(_ records: [StoredRecord]) throws -> [Int64] {
    try database.write { db in try put(records, in: db) }
  }

  /// Writes `records` inside the caller's transaction.
  ///
  /// The loop binds values straight to SQLite's prepared statements (GRDB's handles): with GRDB's
  /// argument arrays, the dynamic casts and statement-cache lookups cost more than SQLite's work.
  ///
  /// - Parameters:
  ///   - absent: for each record, whether the caller knows it is not stored (and not earlier in
  ///     `records`): then it is inserted without looking for it first.
  ///   - deferIndexes: a bulk load (a node's first sync, a seed). The records' index keys and
  ///     search text wait in `temp.staged_index` and go into their b-trees in key order, every
  ///     ``deferredLimit`` records or at ``buildDeferredIndexes(in:)``: random keys (national IDs,
  ///     phone numbers) inserted one by one dirty a leaf page each, and every commit writes them
  ///     all again. Until then `find` and `search` do not see these records.
  public func put(_ records: [StoredRecord], in db: Database, absent: [Bool]? = nil, deferIndexes: Bool = false) throws -> [Int64] {
    guard !records.isEmpty else { return [] }
    precondition(absent == nil || absent?.count == records.count, "one absent flag per record")
    var sequence = try nextSequence(db, reserving: records.count)
    let sequenceBefore = sequence
    var assigned: [Int64] = []
    assigned.reserveCapacity(records.count)
    let lookup = try db.cachedStatement(sql: "SELECT rowid, body, deleted, scope FROM record WHERE collection = ? AND id = ?")
    let logExit = try db.cachedStatement(
      sql: "INSERT INTO scope_exit (sequence, collection, id, old_scope, new_scope) VALUES (?, ?, ?, ?, ?)")
    let insert = try db.cachedStatement(
      sql: "INSERT INTO record (collection, id, scope, body, version, stamps, deleted, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    let update = try db.cachedStatement(
      sql: "UPDATE record SET scope = ?, body = ?, version = ?, stamps = ?, deleted = ?, sequence = ? WHERE rowid = ?")
    let deleteKey = try db.cachedStatement(sql: "DELETE FROM record_key WHERE index_id = ? AND key = ? AND record = ?")
    let insertKey = try db.cachedStatement(
      sql: "INSERT OR IGNORE INTO record_key (index_id, key, record) VALUES (?, ?, ?)")
    let deleteText = try db.cachedStatement(sql: "DELETE FROM record_text WHERE rowid = ?")
    let insertText = try db.cachedStatement(sql: "INSERT INTO record_text (rowid, text) VALUES (?, ?)")
    let unstage = try db.cachedStatement(sql: "DELETE FROM temp.staged_index WHERE record = ?")
    // A record replaced here may still wait in the staging table with its old keys.
    let mayBeStaged = deferIndexes || staged.withLock { $0 } > 0
    var stagedHere = 0
    var definition: CollectionDefinition?
    var indexIDs: [String: Int64] = [:]
    if records.contains(where: { collections[$0.collection]?.indexesChanges == true }) {
      let signal = changed
      db.afterNextTransaction(onCommit: { _ in signal.bump() })
    }
    for (position, record) in records.enumerated() {
      if definition?.name != record.collection {
        guard let found = collections[record.collection] else {
          throw StorageError(.rejected, "unknown collection \(record.collection)")
        }
        definition = found
      }
      let definition = definition!
      let entries = try Self.indexEntries(of: record, definition)
      sequence += 1

      // The record as it is now, if any: its index entries are recomputed from its body, so no
      // index from entries back to records is needed (one b-tree less per write).
      let found = lookup.sqliteStatement
      sqlite3_reset(found)
      bind(found, 1, record.collection)
      bind(found, 2, record.id)
      var existing: (rowid: Int64, body: [UInt8], deleted: Bool, scope: String)?
      if absent?[position] != true {
        switch sqlite3_step(found) {
        case SQLITE_ROW:
          existing = (
            sqlite3_column_int64(found, 0), columnBlob(found, 1), sqlite3_column_int64(found, 2) != 0, columnText(found, 3)
          )
        case SQLITE_DONE:
          break
        default:
          throw stepError(db, found)
        }
        sqlite3_reset(found)
      }

      let rowid: Int64
      if let existing {
        rowid = existing.rowid
        if mayBeStaged { try run(unstage.sqliteStatement, db) { sqlite3_bind_int64($0, 1, rowid) } }
        if existing.scope != record.scope {
          try run(logExit.sqliteStatement, db) { statement in
            sqlite3_bind_int64(statement, 1, sequence)
            bind(statement, 2, record.collection)
            bind(statement, 3, record.id)
            bind(statement, 4, existing.scope)
            bind(statement, 5, record.scope)
          }
        }
        try run(update.sqliteStatement, db) { statement in
          bind(statement, 1, record.scope)
          bind(statement, 2, record.body)
          bind(statement, 3, record.version)
          bind(statement, 4, record.stamps)
          sqlite3_bind_int64(statement, 5, record.deleted ? 1 : 0)
          sqlite3_bind_int64(statement, 6, sequence)
          sqlite3_bind_int64(statement, 7, rowid)
        }
        if !definition.indexes.isEmpty, !existing.deleted {
          let old = (try? definition.extract(existing.body))?.keys ?? []
          for key in old {
            let indexID = try self.indexID(record.collection, key.index, in: db, cache: &indexIDs)
            try run(deleteKey.sqliteStatement, db) { statement in
              sqlite3_bind_int64(statement, 1, indexID)
              bind(statement, 2, key.key)
              sqlite3_bind_int64(statement, 3, rowid)
            }
          }
        }
        // Its old text too (a staged one was unstaged above).
        if definition.searchable { try run(deleteText.sqliteStatement, db) { sqlite3_bind_int64($0, 1, rowid) } }
      } else {
        try run(insert.sqliteStatement, db) { statement in
          bind(statement, 1, record.collection)
          bind(statement, 2, record.id)
          bind(statement, 3, record.scope)
          bind(statement, 4, record.body)
          bind(statement, 5, record.version)
          bind(statement, 6, record.stamps)
          sqlite3_bind_int64(statement, 7, record.deleted ? 1 : 0)
          sqlite3_bind_int64(statement, 8, sequence)
        }
        rowid = sqlite3_last_insert_rowid(db.sqliteConnection)
      }
      assigned.append(sequence)
      if deferIndexes {
        guard try stage(rowid, sequence, record.collection, entries, in: db, indexIDs: &indexIDs) else { continue }
        if stagedHere == 0 {
          // The staging table is the writer connection's alone and dies with it: should the
          // process stop before the build, the next open re-stages every record written since
          // this mark (the first one since the last build stays).
          try db.cachedStatement(sql: "INSERT OR IGNORE INTO store_meta (name, value) VALUES (?, ?)")
            .execute(arguments: [stagingMark, sequenceBefore])
        }
        stagedHere += 1
        continue
      }
      for key in entries.keys {
        let indexID = try self.indexID(record.collection, key.index, in: db, cache: &indexIDs)
        try run(insertKey.sqliteStatement, db) { statement in
          sqlite3_bind_int64(statement, 1, indexID)
          bind(statement, 2, key.key)
          sqlite3_bind_int64(statement, 3, rowid)
        }
      }
      if let text = entries.text {
        try run(insertText.sqliteStatement, db) { statement in
          sqlite3_bind_int64(statement, 1, rowid)
          bind(statement, 2, text)
        }
      }
    }
    if stagedHere > 0 {
      let waiting = staged.withLock { count in
        count += stagedHere
        return count
      }
      if waiting >= Self.deferredLimit { try buildDeferredIndexes(in: db) }
    }
    return assigned
  }

  /// The small integer that stands for an index in `record_key` (so each entry is a few bytes,
  /// not the collection's and index's names again), created on first use.
  /// Cached per call only: an id made in a transaction that rolls back must not outlive it.
  func indexID(
    _ collection: String, _ name: String, in db: Database, cache: inout [String: Int64]
  ) throws -> Int64 {
    let cacheKey = collection + "\u{0}" + name
    if let id = cache[cacheKey] { return id }
    // Prepared once per connection: every put of an indexed collection comes here.
    if let id = try Int64.fetchOne(
      db.cachedStatement(sql: "SELECT id FROM record_index WHERE collection = ? AND name = ?"), arguments: [collection, name])
    {
      cache[cacheKey] = id
      return id
    }
    try db.cachedStatement(sql: "INSERT INTO record_index (collection, name) VALUES (?, ?)").execute(arguments: [collection, name])
    let id = db.lastInsertedRowID
    cache[cacheKey] = id
    return id
  }

  func run(_ handle: OpaquePointer, _ db: Database, _ bindings: (OpaquePointer) -> Void) throws {
    sqlite3_reset(handle)
    bindings(handle)
    guard sqlite3_step(handle) == SQLITE_DONE else { throw stepError(db, handle) }
  }

  func stepError(_ db: Database, _ handle: OpaquePointer) -> any Error {
    let code = sqlite3_extended_errcode(db.sqliteConnection)
    let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
    sqlite3_reset(handle)
    return EncryptedDatabase.mapError(
      DatabaseError(resultCode: ResultCode(rawValue: code), message: message), path: database.path)
  }

  /// Reserves `count` sequence numbers; returns the last one used before them.
  private func nextSequence(_ db: Database, reserving count: Int) throws -> Int64 {
    let current = try lastSequence(in: db)
    try db.cachedStatement(sql: "UPDATE store_meta SET value = ? WHERE name = 'sequence'")
      .execute(arguments: [current + Int64(count)])
    sequenceTrail.withLock { trail in
      if current != trail.end { trail.othersWrote = true }
      trail.end = current + Int64(count)
    }
    return current
  }

  /// Whether a write this store did not make (another process's, or one of its own rolled back)
  /// may have come since the last build: the change sequence was not where this store's last
  /// write left it.
  func othersMayHaveWritten(_ db: Database) throws -> Bool {
    let current = try lastSequence(in: db)
    return sequenceTrail.withLock { $0.othersWrote || $0.end != current }
  }

  // MARK: Reading

  static let columns =
    "record.collection, record.id, record.scope, record.body, record.version, record.stamps, record.deleted, record.sequence"

  static func record(_ row: Row) -> StoredRecord {
    StoredRecord(
      collection: row[0], id: row[1], scope: row[2], body: [UInt8](row[3] as Data? ?? Data()),
      version: [UInt8](row[4] as Data? ?? Data()), stamps: [UInt8](row[5] as Data? ?? Data()), deleted: row[6],
      sequence: row[7])
  }

  /// The record `collection`/`id`, tombstones included.
  public func get(_ collection: String, _ id: String) throws -> StoredRecord? {
    try database.read { db in try get(collection, id, in: db) }
  }

  /// Bound straight to SQLite's statement (as `put` is): replication looks up every record it
  /// applies, and GRDB's row decoding would cost more than the lookup.
  public func get(_ collection: String, _ id: String, in db: Database) throws -> StoredRecord? {
    let statement = try db.cachedStatement(
      sql: "SELECT scope, body, version, stamps, deleted, sequence FROM record WHERE collection = ? AND id = ?"
    ).sqliteStatement
    sqlite3_reset(statement)
    defer { sqlite3_reset(statement) }
    bind(statement, 1, collection)
    bind(statement, 2, id)
    switch sqlite3_step(statement) {
    case SQLITE_ROW:
      return storedRecord(statement, collection: collection, id: id)
    case SQLITE_DONE:
      return nil
    default:
      throw stepError(db, statement)
    }
  }

  /// The record `collection`/`id`, tombstones included, read on the calling thread through its own
  /// connection: for hot paths on event loops, where a hand-off to a pool's reader costs more than
  /// the read (see `PointReader`).
  public func pointGet(_ collection: String, _ id: String) throws -> StoredRecord? {
    try database.pointReader.get(collection, id)
  }

  /// Live records whose index `name` has exactly `key`.
  public func find(_ collection: String, index name: String, key: String, limit: Int = 1000) throws -> [StoredRecord] {
    try database.read { db in try find(collection, index: name, key: key, limit: limit, in: db) }
  }

  /// `find` inside the caller's read or transaction.
  public func find(
    _ collection: String, index name: String, key: String, limit: Int = 1000, in db: Database
  ) throws -> [StoredRecord] {
    try Row.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT \(Self.columns) FROM record_index
            JOIN record_key ON record_key.index_id = record_index.id
            JOIN record ON record.rowid = record_key.record
            WHERE record_index.collection = ? AND record_index.name = ? AND record_key.key = ? AND NOT record.deleted
            ORDER BY record.id LIMIT ?
            """),
        arguments: [collection, name, key, limit]
      ).map(Self.record)
  }

  /// Live records of `collection` in the org subtree `scope` (the node itself and everything under
  /// it), ordered by scope path then id; pass the last record of a page as `after` for the next.
  public func inScope(_ collection: String, scope: String, after: StoredRecord? = nil, limit: Int = 1000) throws
    -> [StoredRecord]
  {
    try database.read { db in try inScope(collection, scope: scope, after: after, limit: limit, in: db) }
  }

  /// `inScope` inside the caller's read (one consistent snapshot across pages).
  public func inScope(
    _ collection: String, scope: String, after: StoredRecord? = nil, limit: Int = 1000, in db: Database
  ) throws -> [StoredRecord] {
    // "a/b" matches "a/b" and "a/b/…", not "a/bc": '/' is followed by '0' in byte order, so the
    // subtree lies in [a/b, a/b0), less the neighbours such as "a/b-x" that the second test drops.
    // The bounds are plain ranges on scope (with a row value alone SQLite would start the index
    // scan at the collection's first entry), starting at the previous page's scope.
    let lower = max(scope, after?.scope ?? scope)
    return try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT \(Self.columns) FROM record
          WHERE collection = ? AND scope >= ? AND scope < ? AND (scope = ? OR scope >= ?)
            AND (scope, id) > (?, ?) AND NOT deleted
          ORDER BY scope, id LIMIT ?
          """),
      arguments: [collection, lower, scope + "0", scope, scope + "/", after?.scope ?? "", after?.id ?? "", limit]
    ).map(Self.record)
  }

  /// Whether every record of `collection` lies in the subtree `scope` (the root's, say): the
  /// subtree is `scope` itself and the range [scope + "/", scope + "0") of the scope index, so the
  /// first and last record and the gap between the two parts tell, in three seeks.
  private func holdsAll(_ collection: String, _ scope: String, in db: Database) throws -> Bool {
    let inside = { (found: String?) in found.map { $0 == scope || $0.hasPrefix(scope + "/") } ?? true }
    let first = try String.fetchOne(
      db.cachedStatement(sql: "SELECT scope FROM record WHERE collection = ? ORDER BY scope LIMIT 1"), arguments: [collection])
    let last = try String.fetchOne(
      db.cachedStatement(sql: "SELECT scope FROM record WHERE collection = ? ORDER BY scope DESC LIMIT 1"), arguments: [collection])
    guard inside(first), inside(last) else { return false }
    // "scope-x" sorts between "scope" and "scope/…" and is outside.
    return try String.fetchOne(
      db.cachedStatement(sql: "SELECT scope FROM record WHERE collection = ? AND scope > ? AND scope < ? LIMIT 1"),
      arguments: [collection, scope, scope + "/"]) == nil
  }

  /// Whether `collection` holds no record at all, live or deleted.
  public func isEmpty(_ collection: String, in db: Database) throws -> Bool {
    try Int.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM record WHERE collection = ? LIMIT 1"), arguments: [collection]) == nil
  }

  /// Calls `body` with the id and body of each live record of `collection` in the subtree `scope`
  /// (the whole collection when nil), in no set order, in the caller's read: for counts and
  /// summaries over millions of records, which building `StoredRecord`s page by page spent most of
  /// its time on.
  public func forEachLive(
    _ collection: String, inScope scope: String?, in db: Database, _ body: (_ id: String, _ body: [UInt8]) throws -> Void
  ) throws {
    let statement: Statement
    if let scope, try !holdsAll(collection, scope, in: db) {
      statement = try db.cachedStatement(
        sql: "SELECT id, body FROM record WHERE collection = ? AND scope >= ? AND scope < ? AND (scope = ? OR scope >= ?) AND NOT deleted")
      try statement.setArguments([collection, scope, scope + "0", scope, scope + "/"])
    } else {
      // The whole collection: the table in rowid order. Through the scope index each row is a
      // seek into the table, and a city's people span more pages than the cache holds, so pages
      // were read (and decrypted) again and again: three times slower.
      statement = try db.cachedStatement(sql: "SELECT id, body FROM record NOT INDEXED WHERE collection = ? AND NOT deleted")
      try statement.setArguments([collection])
    }
    let handle = statement.sqliteStatement
    defer { sqlite3_reset(handle) }
    while true {
      switch sqlite3_step(handle) {
      case SQLITE_ROW: try body(columnText(handle, 0), columnBlob(handle, 1))
      case SQLITE_DONE: return
      default: throw stepError(db, handle)
      }
    }
  }

  /// Live records of `collection` whose id starts with `prefix`, by id, after the id `after`.
  public func withPrefix(
    _ collection: String, idPrefix prefix: String, after: String? = nil, limit: Int, in db: Database
  ) throws -> [StoredRecord] {
    // Ids are compared as UTF-8 bytes: every id that starts with `prefix` lies below prefix + the
    // last code point. One lower bound only: given two (`id >= prefix AND id > after`), SQLite
    // seeks to the first and steps over every row up to the second, which makes paging quadratic.
    let (operation, lower) = if let after, after >= prefix { (">", after) } else { (">=", prefix) }
    // Read on SQLite's statement (as `get` is): pages of rows are what subscriptions and API scans
    // stream, and GRDB's row decoding cost more than the read.
    let statement = try db.cachedStatement(
      sql: """
        SELECT scope, body, version, stamps, deleted, sequence, id FROM record
        WHERE collection = ? AND id \(operation) ? AND id < ? AND NOT deleted ORDER BY id LIMIT ?
        """
    ).sqliteStatement
    sqlite3_reset(statement)
    defer { sqlite3_reset(statement) }
    bind(statement, 1, collection)
    bind(statement, 2, lower)
    bind(statement, 3, prefix + "\u{10FFFF}")
    sqlite3_bind_int64(statement, 4, Int64(limit))
    var records: [StoredRecord] = []
    records.reserveCapacity(min(limit, 10_000))
    while true {
      switch sqlite3_step(statement) {
      case SQLITE_ROW:
        records.append(storedRecord(statement, collection: collection, id: columnText(statement, 6)))
      case SQLITE_DONE:
        return records
      default:
        throw stepError(db, statement)
      }
    }
  }

  /// Records of `collection` (which must index its changes) written after sequence `after`, in
  /// sequence order, tombstones included, at most `limit`; and the ids that left this node's store
  /// since (evicted).
  public func changes(of collection: String, after: Int64, limit: Int = .max, in db: Database) throws
    -> (records: [StoredRecord], evicted: [(sequence: Int64, id: String)])
  {
    guard collections[collection]?.indexesChanges == true else {
      throw StorageError(.rejected, "collection \(collection) does not index its changes")
    }
    // The collection is spelled into the SQL: the planner uses a partial index only when the
    // query's condition names the same constant.
    let records = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT \(Self.columns) FROM record INDEXED BY \(Self.changeIndex(collection))
          WHERE collection = '\(collection)' AND sequence > ? ORDER BY sequence LIMIT ?
          """),
      arguments: [after, limit]
    ).map(Self.record)
    let evicted = try Row.fetchAll(
      db.cachedStatement(sql: "SELECT sequence, id FROM scope_exit WHERE sequence > ? AND collection = ? AND new_scope = ?"),
      arguments: [after, collection, Self.evictedScope]
    ).map { row in (sequence: row[0] as Int64, id: row[1] as String) }
    return (records, evicted)
  }

  /// Records of `collection` written in the sequence range (`after`, `through`], in sequence order,
  /// tombstones included, optionally only those whose id starts with `idPrefix` or whose scope lies
  /// in the subtree `scope`: the changes a subscription to part of a large collection follows.
  ///
  /// Read through the sequence index (forced: by the id range the planner would read the whole
  /// prefix and sort it), so the cost is the writes of the range, whatever the collection's size.
  public func changes(
    of collection: String, after: Int64, through: Int64, idPrefix: String = "", inScope scope: String? = nil, limit: Int,
    in db: Database
  ) throws -> [StoredRecord] {
    var sql = "SELECT \(Self.columns) FROM record INDEXED BY record_sequence WHERE sequence > ? AND sequence <= ? AND collection = ?"
    var arguments: [any DatabaseValueConvertible] = [after, through, collection]
    if !idPrefix.isEmpty {
      sql += " AND id >= ? AND id < ?"
      arguments += [idPrefix, idPrefix + "\u{10FFFF}"]
    }
    if let scope {
      let condition = Self.scopeCondition("scope", scope)
      sql += " AND " + condition.sql
      arguments += condition.arguments.map { $0 as any DatabaseValueConvertible }
    }
    sql += " ORDER BY sequence LIMIT ?"
    arguments.append(limit)
    return try Row.fetchAll(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments)).map(Self.record)
  }

  /// The sequence of the last write to `collection` (which must index its changes); 0 if none.
  public func lastSequence(of collection: String, in db: Database) throws -> Int64 {
    guard collections[collection]?.indexesChanges == true else {
      throw StorageError(.rejected, "collection \(collection) does not index its changes")
    }
    return try Int64.fetchOne(
      db.cachedStatement(
        sql: "SELECT max(sequence) FROM record INDEXED BY \(Self.changeIndex(collection)) WHERE collection = '\(collection)'")) ?? 0
  }

  /// Records written after sequence `after`, in sequence order, tombstones included: the change log.
  public func changes(after: Int64, limit: Int = 1000) throws -> [StoredRecord] {
    try database.read { db in
      try Row.fetchAll(
        db.cachedStatement(sql: "SELECT \(Self.columns) FROM record WHERE sequence > ? ORDER BY sequence LIMIT ?"),
        arguments: [after, limit]
      ).map(Self.record)
    }
  }

  // MARK: Sync

  /// Whether the org path `path` lies in the subtree `scope` ("" is the whole tree; records with
  /// an empty path are global and lie in every subtree).
  public static func inScope(_ path: String, _ scope: String) -> Bool {
    scope.isEmpty || path.isEmpty || path == scope || path.hasPrefix(scope + "/")
  }

  /// The SQL condition "scope is in the subtree `scope`, or global (empty)", and its arguments.
  static func scopeCondition(_ column: String, _ scope: String) -> (sql: String, arguments: [String]) {
    if scope.isEmpty { return ("1", []) }
    return ("(\(column) = '' OR \(column) = ? OR (\(column) >= ? AND \(column) < ?))", [scope, scope + "/", scope + "0"])
  }

  /// Records of the subtree `scope` (and global ones) written after sequence `after`, in sequence
  /// order, tombstones included: what a node holding that scope pulls.
  public func changes(after: Int64, inScope scope: String, limit: Int, in db: Database) throws -> [StoredRecord] {
    let condition = Self.scopeCondition("scope", scope)
    var arguments: [any DatabaseValueConvertible] = [after]
    arguments += condition.arguments.map { $0 as any DatabaseValueConvertible }
    arguments.append(limit)
    return try Row.fetchAll(
      db.cachedStatement(
        sql: "SELECT \(Self.columns) FROM record WHERE sequence > ? AND \(condition.sql) ORDER BY sequence LIMIT ?"),
      arguments: StatementArguments(arguments)
    ).map(Self.record)
  }

  /// A record that left a scope: moved elsewhere, or evicted from this node.
  public struct ScopeExit: Sendable, Hashable {
    public var sequence: Int64
    public var collection: String
    public var id: String
    public var oldScope: String
    public var newScope: String
  }

  /// Records that left the subtree `scope` after sequence `after` and up to `through`.
  public func exits(after: Int64, through: Int64, fromScope scope: String, in db: Database) throws -> [ScopeExit] {
    let condition = Self.scopeCondition("old_scope", scope)
    var arguments: [any DatabaseValueConvertible] = [after, through]
    arguments += condition.arguments.map { $0 as any DatabaseValueConvertible }
    return try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT sequence, collection, id, old_scope, new_scope FROM scope_exit
          WHERE sequence > ? AND sequence <= ? AND \(condition.sql) ORDER BY sequence
          """),
      arguments: StatementArguments(arguments)
    ).map { row in
      ScopeExit(sequence: row[0], collection: row[1], id: row[2], oldScope: row[3], newScope: row[4])
    }.filter { !Self.inScope($0.newScope, scope) || $0.newScope == Self.evictedScope }
  }

  /// Removes a record that left this node's scope (it still exists elsewhere): no tombstone, but a
  /// scope exit in the change sequence, so this node's own downstream nodes drop it too.
  public func evict(_ collection: String, _ id: String, in db: Database) throws {
    guard let rowid = try Int64.fetchOne(
      db, sql: "SELECT rowid FROM record WHERE collection = ? AND id = ?", arguments: [collection, id]),
      let record = try get(collection, id, in: db)
    else { return }
    let sequence = try nextSequence(db, reserving: 1) + 1
    // Index entries are found from the body, as in `put` (there is no index from records to them).
    if let definition = collections[collection], !definition.indexes.isEmpty, !record.deleted {
      var cache: [String: Int64] = [:]
      for key in (try? definition.extract(record.body))?.keys ?? [] {
        let indexID = try indexID(collection, key.index, in: db, cache: &cache)
        try db.execute(
          sql: "DELETE FROM record_key WHERE index_id = ? AND key = ? AND record = ?", arguments: [indexID, key.key, rowid])
      }
    }
    if collections[collection]?.searchable == true {
      try db.execute(sql: "DELETE FROM record_text WHERE rowid = ?", arguments: [rowid])
    }
    if staged.withLock({ $0 }) > 0 { try db.execute(sql: "DELETE FROM temp.staged_index WHERE record = ?", arguments: [rowid]) }
    try db.execute(sql: "DELETE FROM record WHERE rowid = ?", arguments: [rowid])
    try db.execute(
      sql: "INSERT INTO scope_exit (sequence, collection, id, old_scope, new_scope) VALUES (?, ?, ?, ?, ?)",
      arguments: [sequence, collection, id, record.scope, Self.evictedScope])
  }

  /// Records of `collection` (tombstones included) in id order after the id `after`: for readers
  /// that walk a whole collection in step with another one.
  public func byID(_ collection: String, after: String, limit: Int, in db: Database) throws -> [StoredRecord] {
    try Row.fetchAll(
      db.cachedStatement(sql: "SELECT \(Self.columns) FROM record WHERE collection = ? AND id > ? ORDER BY id LIMIT ?"),
      arguments: [collection, after, limit]
    ).map(Self.record)
  }

  /// Live records of `collection`, wherever they lie, by scope and id.
  /// Live records of `collection` in every scope, by scope and id, after `after` (pages of a whole
  /// collection; `inScope` with "" reads the global records only).
  public func records(_ collection: String, after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord] {
    try Row.fetchAll(
      db.cachedStatement(
        sql: "SELECT \(Self.columns) FROM record WHERE collection = ? AND (scope, id) > (?, ?) AND NOT deleted ORDER BY scope, id LIMIT ?"),
      arguments: [collection, after?.scope ?? "", after?.id ?? "", limit]
    ).map(Self.record)
  }

  /// Live records of `collection` in every scope, by scope and id.
  public func records(_ collection: String, limit: Int, in db: Database) throws -> [StoredRecord] {
    try records(collection, after: nil, limit: limit, in: db)
  }

  /// Tombstones written after sequence `after`, oldest first.
  public func tombstones(after: Int64, limit: Int, in db: Database) throws -> [StoredRecord] {
    try Row.fetchAll(
      db.cachedStatement(sql: "SELECT \(Self.columns) FROM record WHERE deleted AND sequence > ? ORDER BY sequence LIMIT ?"),
      arguments: [after, limit]
    ).map(Self.record)
  }

  /// Forgets a tombstone for good, once every node that needed it has it (or it is too old).
  public func purge(_ collection: String, _ id: String, in db: Database) throws {
    try db.execute(sql: "DELETE FROM record WHERE collection = ? AND id = ? AND deleted", arguments: [collection, id])
  }

  /// The scope an evicted record is logged as having moved to: inside no subtree.
  public static let evictedScope = "\u{1}evicted"

  /// The names of the collections, sorted (the order a first sync walks them in).
  public var collectionNames: [String] { collections.keys.sorted() }

  /// The index keys a body of `collection` would be stored under (empty for an unknown collection
  /// or a body its extractor refuses).
  public func indexKeys(_ collection: String, body: [UInt8]) -> [(index: String, key: String)] {
    guard let definition = collections[collection] else { return [] }
    return (try? definition.extract(body))?.keys ?? []
  }

  /// The store's latest change sequence, read in `db`.
  public func lastSequence(in db: Database) throws -> Int64 {
    try Int64.fetchOne(db.cachedStatement(sql: "SELECT value FROM store_meta WHERE name = 'sequence'")) ?? 0
  }

  // MARK: Metadata and conflicts

  /// A value the store keeps for its owner (the replica's clock, cursors), read in `db`.
  public func meta(_ name: String, in db: Database) throws -> [UInt8]? {
    try value(name, in: "store_meta", db)
  }

  /// Sets a metadata value in the caller's transaction.
  public func setMeta(_ name: String, _ value: [UInt8], in db: Database) throws {
    try setValue(name, value, in: "store_meta", db)
  }

  /// A large value the store keeps for its owner (megabytes; read rarely), read in `db`.
  public func blob(_ name: String, in db: Database) throws -> [UInt8]? {
    try value(name, in: "store_blob", db)
  }

  /// Sets a large value in the caller's transaction.
  public func setBlob(_ name: String, _ value: [UInt8], in db: Database) throws {
    try setValue(name, value, in: "store_blob", db)
  }

  /// `table` is one of the store's own two names, never input. Statements are cached: every
  /// replica write saves its clock in `store_meta`.
  private func value(_ name: String, in table: String, _ db: Database) throws -> [UInt8]? {
    try Data.fetchOne(db.cachedStatement(sql: "SELECT value FROM \(table) WHERE name = ?"), arguments: [name]).map { [UInt8]($0) }
  }

  private func setValue(_ name: String, _ value: [UInt8], in table: String, _ db: Database) throws {
    try db.cachedStatement(
      sql: "INSERT INTO \(table) (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
    ).execute(arguments: [name, Data(value)])
  }

  /// A field value that lost a merge, with both versions' vectors: kept so nothing disappears unseen.
  public struct Conflict: Sendable, Hashable {
    public var collection: String
    public var recordID: String
    public var field: Int
    public var losingValue: [UInt8]
    public var losingStamp: [UInt8]
    public var winningStamp: [UInt8]
    public var localVersion: [UInt8]
    public var remoteVersion: [UInt8]
    /// The store's change sequence when it was logged.
    public var sequence: Int64

    public init(
      collection: String, recordID: String, field: Int, losingValue: [UInt8], losingStamp: [UInt8],
      winningStamp: [UInt8], localVersion: [UInt8], remoteVersion: [UInt8], sequence: Int64
    ) {
      self.collection = collection
      self.recordID = recordID
      self.field = field
      self.losingValue = losingValue
      self.losingStamp = losingStamp
      self.winningStamp = winningStamp
      self.localVersion = localVersion
      self.remoteVersion = remoteVersion
      self.sequence = sequence
    }
  }

  /// Logs a conflict in the caller's transaction.
  public func logConflict(_ conflict: Conflict, in db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO conflict (collection, record_id, field, losing_value, losing_stamp, winning_stamp,
          local_version, remote_version, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [
        conflict.collection, conflict.recordID, conflict.field, Data(conflict.losingValue), Data(conflict.losingStamp),
        Data(conflict.winningStamp), Data(conflict.localVersion), Data(conflict.remoteVersion), conflict.sequence,
      ])
  }

  /// Logged conflicts, oldest first.
  public func conflicts(limit: Int = 1000) throws -> [Conflict] {
    try database.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT collection, record_id, field, losing_value, losing_stamp, winning_stamp, local_version,
            remote_version, sequence FROM conflict ORDER BY id LIMIT ?
          """, arguments: [limit]
      ).map { row in
        Conflict(
          collection: row[0], recordID: row[1], field: row[2], losingValue: [UInt8](row[3] as Data),
          losingStamp: [UInt8](row[4] as Data), winningStamp: [UInt8](row[5] as Data),
          localVersion: [UInt8](row[6] as Data), remoteVersion: [UInt8](row[7] as Data), sequence: row[8])
      }
    }
  }

  /// Logged conflicts of records in the subtree `scope`, newest first, with each record's scope.
  /// Conflicts logged after the one with id `after`, oldest first, with their ids and the scope of
  /// their record (nil when it is gone).
  public func conflicts(afterID after: Int64, limit: Int, in db: Database) throws -> [(id: Int64, conflict: Conflict, scope: String?)] {
    try Row.fetchAll(
      db,
      sql: """
        SELECT conflict.id, conflict.collection, conflict.record_id, conflict.field, conflict.losing_value,
          conflict.losing_stamp, conflict.winning_stamp, conflict.local_version, conflict.remote_version,
          conflict.sequence, record.scope
        FROM conflict LEFT JOIN record ON record.collection = conflict.collection AND record.id = conflict.record_id
        WHERE conflict.id > ? ORDER BY conflict.id LIMIT ?
        """, arguments: [after, limit]
    ).map { row in
      (
        row[0],
        Conflict(
          collection: row[1], recordID: row[2], field: row[3], losingValue: [UInt8](row[4] as Data),
          losingStamp: [UInt8](row[5] as Data), winningStamp: [UInt8](row[6] as Data),
          localVersion: [UInt8](row[7] as Data), remoteVersion: [UInt8](row[8] as Data), sequence: row[9]),
        row[10]
      )
    }
  }

  public func conflicts(inScope scope: String, limit: Int, in db: Database) throws -> [(conflict: Conflict, scope: String)] {
    let condition = Self.scopeCondition("record.scope", scope)
    var arguments: [any DatabaseValueConvertible] = condition.arguments.map { $0 as any DatabaseValueConvertible }
    arguments.append(limit)
    return try Row.fetchAll(
      db,
      sql: """
        SELECT conflict.collection, conflict.record_id, conflict.field, conflict.losing_value, conflict.losing_stamp,
          conflict.winning_stamp, conflict.local_version, conflict.remote_version, conflict.sequence, record.scope
        FROM conflict JOIN record ON record.collection = conflict.collection AND record.id = conflict.record_id
        WHERE \(condition.sql) ORDER BY conflict.id DESC LIMIT ?
        """, arguments: StatementArguments(arguments)
    ).map { row in
      (
        Conflict(
          collection: row[0], recordID: row[1], field: row[2], losingValue: [UInt8](row[3] as Data),
          losingStamp: [UInt8](row[4] as Data), winningStamp: [UInt8](row[5] as Data),
          localVersion: [UInt8](row[6] as Data), remoteVersion: [UInt8](row[7] as Data), sequence: row[8]),
        row[9]
      )
    }
  }

  /// The store's latest change sequence.
  public func lastSequence() throws -> Int64 {
    try database.read { db in try lastSequence(in: db) }
  }

  /// Live records of a searchable `collection` whose text has every term of `query` (Chinese terms
  /// of one or two characters included), best matches first.
  public func search(_ collection: String, query: String, limit: Int = 100) throws -> [StoredRecord] {
    try database.read { db in try search(collection, query: query, limit: limit, in: db) }
  }

  /// `search` inside the caller's read.
  public func search(_ collection: String, query: String, limit: Int = 100, in db: Database) throws -> [StoredRecord] {
    guard let match = SearchText.matchExpression(query) else { return [] }
    return try {
      try Row.fetchAll(
        db.cachedStatement(
          sql: """
            SELECT \(Self.columns) FROM record_text JOIN record ON record.rowid = record_text.rowid
            WHERE record_text MATCH ? AND record.collection = ? AND NOT record.deleted
            ORDER BY rank LIMIT ?
            """),
        arguments: [match, collection, limit]
      ).map(Self.record)
    }()
  }
}
