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
  /// stays a few tens of MiB and the records are not long out of `find`'s sight.
  public static let deferredLimit = 100_000

  /// One staged index entry, ordered as `record_key`'s primary key orders it (BINARY collation
  /// compares the UTF-8 bytes).
  private struct StagedEntry: Comparable {
    var indexID: Int64
    var key: [UInt8]
    var record: Int64

    static func < (a: Self, b: Self) -> Bool {
      if a.indexID != b.indexID { return a.indexID < b.indexID }
      if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) }
      return a.record < b.record
    }
  }

  /// Moves every staged record's index keys and search text into `record_key` and `record_text`
  /// inside the caller's transaction: keys in key order, so each leaf page is written once per
  /// pass, and texts in record order. A no-op when nothing waits.
  public func buildDeferredIndexes(in db: Database) throws {
    guard staged.withLock({ $0 }) > 0 else { return }
    var entries: [StagedEntry] = []
    var texts: [(record: Int64, text: String)] = []
    var rows = 0
    let select = try db.makeStatement(sql: "SELECT record, keys, text FROM record_staged ORDER BY record")
    let handle = select.sqliteStatement
    while true {
      let step = sqlite3_step(handle)
      if step == SQLITE_DONE { break }
      guard step == SQLITE_ROW else { throw stepError(db, handle) }
      rows += 1
      let record = sqlite3_column_int64(handle, 0)
      do {
        try StagedKeys.forEach(columnBlob(handle, 1)) { indexID, key in
          entries.append(StagedEntry(indexID: indexID, key: Array(key), record: record))
        }
      } catch {
        throw StorageError(.corrupted, "staged index keys of record \(record) are damaged")
      }
      if sqlite3_column_type(handle, 2) != SQLITE_NULL { texts.append((record, columnText(handle, 2))) }
    }
    entries.sort()
    let insertKey = try db.cachedStatement(sql: "INSERT OR IGNORE INTO record_key (index_id, key, record) VALUES (?, ?, ?)")
    let keyHandle = insertKey.sqliteStatement
    for entry in entries {
      sqlite3_reset(keyHandle)
      sqlite3_bind_int64(keyHandle, 1, entry.indexID)
      bindText(keyHandle, 2, entry.key)
      sqlite3_bind_int64(keyHandle, 3, entry.record)
      guard sqlite3_step(keyHandle) == SQLITE_DONE else { throw stepError(db, keyHandle) }
    }
    let insertText = try db.cachedStatement(sql: "INSERT INTO record_text (rowid, text) VALUES (?, ?)")
    for (record, text) in texts { try insertText.execute(arguments: [record, text]) }
    try db.execute(sql: "DELETE FROM record_staged")
    // The count drops only with the commit: rolled back, the rows are still there.
    let built = rows
    db.afterNextTransaction(onCommit: { [self] _ in staged.withLock { $0 = max(0, $0 - built) } })
    if rows == 0 { staged.withLock { $0 = 0 } }
  }

  /// ``buildDeferredIndexes(in:)`` in a transaction of its own.
  public func buildDeferredIndexes() throws {
    guard staged.withLock({ $0 }) > 0 else { return }
    try database.write { db in try buildDeferredIndexes(in: db) }
  }
}
