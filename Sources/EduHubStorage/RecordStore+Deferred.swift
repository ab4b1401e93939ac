import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// The index keys of one staged record, as `record_staged.keys` holds them: for each key its index
/// id (a varint), then its length (a varint) and its UTF-8 bytes.
enum StagedKeys {
  static func append(_ indexID: Int64, _ key: String, to encoded: inout [UInt8]) {
    WireFields.appendVarint(UInt64(bitPattern: indexID), to: &encoded)
    let utf8 = Array(key.utf8)
    WireFields.appendVarint(UInt64(utf8.count), to: &encoded)
    encoded += utf8
  }

  /// Calls `body` with each key's index id and bytes. Throws when the encoding is cut short (the
  /// staging table is the store's own, but a damaged row must not crash the node).
  static func forEach(_ encoded: [UInt8], _ body: (Int64, ArraySlice<UInt8>) -> Void) throws(WireFieldsError) {
    var index = 0
    while index < encoded.count {
      let indexID = try WireFields.varint(encoded, &index)
      let length = try WireFields.varint(encoded, &index)
      guard length <= UInt64(encoded.count - index) else { throw WireFieldsError(offset: index, reason: "key past the end") }
      body(Int64(bitPattern: indexID), encoded[index..<index + Int(length)])
      index += Int(length)
    }
  }
}

extension RecordStore {
  /// Records a bulk load stages before their keys and text go into the index b-trees: enough that
  /// each pass touches a leaf page about once for many records, few enough that the pass's sort
  /// and the staging table stay a few tens of MiB and the records are not long out of `find`'s sight.
  public static let deferredLimit = 250_000

  /// The prefix of `store_meta` entries holding a change sequence after which records may wait
  /// unindexed: each store (process) has its own (``stagingMark``), set by its first staging write
  /// after its last build, in that write's transaction, and cleared by its next build. Two
  /// processes may load one node at once (a serving node's first sync, the operator's `eduhub
  /// seed`); one's build must not clear the other's mark.
  static let deferredSince = "deferred_since"

  /// The staging table, on the writer's connection only: a TEMP table (kept in memory, as every
  /// connection's temporary data is) so staging costs no encrypted page, WAL frame or checkpoint.
  /// Before, a table in the database took one more b-tree insert per record, written to the WAL,
  /// checkpointed and freed again: a large share of a seed's page writes. What it loses at a crash
  /// or a close before the build, ``recoverDeferredIndexes(in:)`` rebuilds from the records.
  ///
  /// Each row keeps the sequence of the write it stages: another process may replace, delete or
  /// evict the record meanwhile (it cannot see this table to unstage it), and the build then
  /// skips the row, as the record is no longer the one staged.
  static let createStagingTable = """
    CREATE TEMP TABLE IF NOT EXISTS staged_index (
      record INTEGER PRIMARY KEY,
      sequence INTEGER NOT NULL,
      keys BLOB NOT NULL,
      text TEXT
    )
    """

  /// Stages the index keys and search text `entries` of the record at `rowid` (a row of
  /// `collection`, written at `sequence`). Returns false when it has neither.
  func stage(
    _ rowid: Int64, _ sequence: Int64, _ collection: String, _ entries: IndexEntries, in db: Database, indexIDs: inout [String: Int64]
  ) throws -> Bool {
    let (keys, text) = (entries.keys, entries.text)
    guard !keys.isEmpty || text != nil else { return false }
    var encoded: [UInt8] = []
    for key in keys {
      StagedKeys.append(try indexID(collection, key.index, in: db, cache: &indexIDs), key.key, to: &encoded)
    }
    let insert = try db.cachedStatement(sql: "INSERT OR REPLACE INTO temp.staged_index (record, sequence, keys, text) VALUES (?, ?, ?, ?)")
    try run(insert.sqliteStatement, db) { statement in
      sqlite3_bind_int64(statement, 1, rowid)
      sqlite3_bind_int64(statement, 2, sequence)
      bind(statement, 3, encoded)
      if let text { bind(statement, 4, text) } else { sqlite3_bind_null(statement, 4) }
    }
    return true
  }

  /// Indexes what a bulk load cut short left unindexed, on the writer inside the caller's
  /// transaction, at open: rows of the old staging table in the database, and every live record
  /// written since the earliest staging mark (their staged keys were in a process's memory).
  /// Records among them that were indexed directly get the same keys again (`INSERT OR IGNORE`)
  /// and their text replaced, not doubled.
  ///
  /// A mark may be a live process's, mid-load (this store opened beside a serving node in its
  /// first sync): its records are indexed here, a little early, and its next staging write marks
  /// again; its own build then finds its rows indexed already and changes nothing.
  func recoverDeferredIndexes(in db: Database) throws {
    var waiting = try Int.fetchOne(db, sql: "SELECT count(*) FROM main.record_staged") ?? 0
    if waiting > 0 {
      try db.execute(
        sql: """
          INSERT OR REPLACE INTO temp.staged_index (record, sequence, keys, text)
          SELECT staged.record, record.sequence, staged.keys, staged.text FROM main.record_staged AS staged
          JOIN main.record ON record.rowid = staged.record
          """)
      try db.execute(sql: "DELETE FROM main.record_staged")
    }
    let marks = "name >= '\(Self.deferredSince)' AND name < '\(Self.deferredSince)~'"
    let since = try Int64.fetchOne(db, sql: "SELECT min(value) FROM store_meta WHERE \(marks)")
    guard waiting > 0 || since != nil else { return }
    if let since {
      try db.execute(sql: "DELETE FROM store_meta WHERE \(marks)")
      var indexIDs: [String: Int64] = [:]
      let rows = try Row.fetchCursor(
        db, sql: "SELECT rowid, collection, body, sequence FROM record WHERE sequence > ? AND NOT deleted ORDER BY sequence",
        arguments: [since])
      while let row = try rows.next() {
        let collection: String = row[1]
        guard let definition = collections[collection], !definition.indexes.isEmpty || definition.searchable,
          // Accepted when it was written; a body that no longer parses keeps no entries, as `put` treats it.
          let extracted = try? definition.extract([UInt8](row[2] as Data? ?? Data())),
          let entries = try? Self.indexEntries(extracted, definition)
        else { continue }
        let rowid: Int64 = row[0]
        if definition.searchable { try db.execute(sql: "DELETE FROM record_text WHERE rowid = ?", arguments: [rowid]) }
        if try stage(rowid, row[3], collection, entries, in: db, indexIDs: &indexIDs) { waiting += 1 }
      }
    }
    staged.withLock { $0 = waiting }
    try buildDeferredIndexes(in: db, force: true)
  }

  /// One staged index entry: its key's bytes lie in a shared arena, and the first eight of them,
  /// big-endian in `prefix`, settle most comparisons without reading it.
  private struct StagedEntry {
    var indexID: Int64
    var prefix: UInt64
    var start: Int
    var count: Int
    var record: Int64
  }

  /// Moves every staged record's index keys and search text into `record_key` and `record_text`
  /// inside the caller's transaction: keys in key order (as `record_key`'s primary key orders them:
  /// BINARY collation compares the UTF-8 bytes), so each leaf page is written once per pass, and
  /// texts in record order. A no-op when nothing waits.
  public func buildDeferredIndexes(in db: Database) throws {
    try buildDeferredIndexes(in: db, force: false)
  }

  private func buildDeferredIndexes(in db: Database, force: Bool) throws {
    guard force || staged.withLock({ $0 }) > 0 else { return }
    var entries: [StagedEntry] = []
    var arena: [UInt8] = []
    // Only rows whose record is still the write they staged (see `createStagingTable`): every
    // write, a deletion too, gives a record a new sequence. Read from the sequence index alone
    // (it holds the rowid), not from the table's rows and their bodies; and only when a write
    // other than this store's may have come since (its own replacements unstage), as a lookup
    // per staged record costs seconds in a city seed.
    let select = try db.makeStatement(
      sql: try othersMayHaveWritten(db)
        ? """
        SELECT staged.record, staged.keys, staged.text FROM temp.staged_index AS staged
        JOIN main.record INDEXED BY record_sequence ON record.sequence = staged.sequence AND record.rowid = staged.record
        ORDER BY staged.record
        """
        : "SELECT record, keys, text FROM temp.staged_index ORDER BY record")
    let handle = select.sqliteStatement
    // Texts go in as they are read (record order); writing another table while this one is read
    // is fine in SQLite. Replacing: a recovery in another process may have indexed it already.
    let insertText = try db.cachedStatement(sql: "INSERT OR REPLACE INTO record_text (rowid, text) VALUES (?, ?)").sqliteStatement
    while true {
      let step = sqlite3_step(handle)
      if step == SQLITE_DONE { break }
      guard step == SQLITE_ROW else { throw stepError(db, handle) }
      let record = sqlite3_column_int64(handle, 0)
      do {
        try StagedKeys.forEach(columnBlob(handle, 1)) { indexID, key in
          var prefix: UInt64 = 0
          for (position, byte) in key.prefix(8).enumerated() { prefix |= UInt64(byte) << (56 - 8 * position) }
          entries.append(StagedEntry(indexID: indexID, prefix: prefix, start: arena.count, count: key.count, record: record))
          arena += key
        }
      } catch {
        throw StorageError(.corrupted, "staged index keys of record \(record) are damaged")
      }
      if sqlite3_column_type(handle, 2) != SQLITE_NULL, let text = sqlite3_column_text(handle, 2) {
        sqlite3_reset(insertText)
        sqlite3_bind_int64(insertText, 1, record)
        sqlite3_bind_text(insertText, 2, UnsafeRawPointer(text).assumingMemoryBound(to: CChar.self), sqlite3_column_bytes(handle, 2), transient)
        guard sqlite3_step(insertText) == SQLITE_DONE else { throw stepError(db, insertText) }
      }
    }
    arena.withUnsafeBytes { bytes in
      entries.sort { a, b in
        if a.indexID != b.indexID { return a.indexID < b.indexID }
        if a.prefix != b.prefix { return a.prefix < b.prefix }
        let order = memcmp(bytes.baseAddress! + a.start, bytes.baseAddress! + b.start, min(a.count, b.count))
        if order != 0 { return order < 0 }
        if a.count != b.count { return a.count < b.count }
        return a.record < b.record
      }
    }
    let insertKey = try db.cachedStatement(sql: "INSERT OR IGNORE INTO record_key (index_id, key, record) VALUES (?, ?, ?)").sqliteStatement
    try arena.withUnsafeBytes { bytes in
      for entry in entries {
        sqlite3_reset(insertKey)
        sqlite3_bind_int64(insertKey, 1, entry.indexID)
        sqlite3_bind_text(
          insertKey, 2, (bytes.baseAddress ?? UnsafeRawPointer(emptyText)).advanced(by: entry.start).assumingMemoryBound(to: CChar.self),
          Int32(entry.count), transient)
        sqlite3_bind_int64(insertKey, 3, entry.record)
        guard sqlite3_step(insertKey) == SQLITE_DONE else { throw stepError(db, insertKey) }
      }
    }
    try db.execute(sql: "DELETE FROM temp.staged_index")
    // The count drops only with the commit (rolled back, the rows are still there), and only by
    // the rows taken out: one that stays high costs a lookup, one too low would skip unstaging.
    let built = db.changesCount
    try db.cachedStatement(sql: "DELETE FROM store_meta WHERE name = ?").execute(arguments: [stagingMark])
    db.afterNextTransaction(onCommit: { [self] _ in
      staged.withLock { $0 = max(0, $0 - built) }
      // What others wrote before now is judged; what they write next sets the flag again.
      sequenceTrail.withLock { $0.othersWrote = false }
    })
  }

  /// ``buildDeferredIndexes(in:)`` in a transaction of its own.
  public func buildDeferredIndexes() throws {
    guard staged.withLock({ $0 }) > 0 else { return }
    try database.write { db in try buildDeferredIndexes(in: db) }
  }
}
