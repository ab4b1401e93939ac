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
  /// stays a few tens of MiB and the records are not long out of `find`'s sight.
  public static let deferredLimit = 250_000

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
    guard staged.withLock({ $0 }) > 0 else { return }
    var entries: [StagedEntry] = []
    var arena: [UInt8] = []
    var rows = 0
    let select = try db.makeStatement(sql: "SELECT record, keys, text FROM record_staged ORDER BY record")
    let handle = select.sqliteStatement
    // Texts go in as they are read (record order); writing another table while this one is read
    // is fine in SQLite.
    let insertText = try db.cachedStatement(sql: "INSERT INTO record_text (rowid, text) VALUES (?, ?)").sqliteStatement
    while true {
      let step = sqlite3_step(handle)
      if step == SQLITE_DONE { break }
      guard step == SQLITE_ROW else { throw stepError(db, handle) }
      rows += 1
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
    try db.execute(sql: "DELETE FROM record_staged")
    // The count drops only with the commit (rolled back, the rows are still there), and only by
    // the rows built: one that stays high costs a lookup, one too low would skip unstaging.
    let built = rows
    db.afterNextTransaction(onCommit: { [self] _ in staged.withLock { $0 = max(0, $0 - built) } })
  }

  /// ``buildDeferredIndexes(in:)`` in a transaction of its own.
  public func buildDeferredIndexes() throws {
    guard staged.withLock({ $0 }) > 0 else { return }
    try database.write { db in try buildDeferredIndexes(in: db) }
  }
}
