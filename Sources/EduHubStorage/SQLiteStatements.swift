import GRDBSQLite

// Binding and reading SQLite statements directly, for the store's hot loops (put, get, point
// reads), where GRDB's argument arrays and row decoding cost more than SQLite's own work.

nonisolated(unsafe) let emptyText: UnsafeMutablePointer<CChar> = {
  let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
  pointer.initialize(to: 0)
  return pointer
}()

/// SQLite copies the bytes (SQLITE_TRANSIENT): Swift's buffers only live for the call.
nonisolated(unsafe) let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

@inline(__always)
func bind(_ statement: OpaquePointer, _ index: Int32, _ text: String) {
  var text = text
  text.withUTF8 { utf8 in
    // An empty string still needs a non-null pointer, or SQLite would bind NULL.
    let base = UnsafeRawPointer(utf8.baseAddress) ?? UnsafeRawPointer(emptyText)
    _ = sqlite3_bind_text(statement, index, base.assumingMemoryBound(to: CChar.self), Int32(utf8.count), transient)
  }
}

@inline(__always)
func bind(_ statement: OpaquePointer, _ index: Int32, _ bytes: [UInt8]) {
  bytes.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count), transient) }
}

/// A text column; empty for NULL.
@inline(__always)
func columnText(_ statement: OpaquePointer, _ index: Int32) -> String {
  guard let text = sqlite3_column_text(statement, index) else { return "" }
  let count = Int(sqlite3_column_bytes(statement, index))
  return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
}

/// A blob column; empty for NULL.
@inline(__always)
func columnBlob(_ statement: OpaquePointer, _ index: Int32) -> [UInt8] {
  let count = Int(sqlite3_column_bytes(statement, index))
  guard count > 0, let blob = sqlite3_column_blob(statement, index) else { return [] }
  return [UInt8](UnsafeRawBufferPointer(start: blob, count: count))
}

/// The record on a row of `SELECT scope, body, version, stamps, deleted, sequence`.
func storedRecord(_ statement: OpaquePointer, collection: String, id: String) -> StoredRecord {
  StoredRecord(
    collection: collection, id: id, scope: columnText(statement, 0), body: columnBlob(statement, 1),
    version: columnBlob(statement, 2), stamps: columnBlob(statement, 3), deleted: sqlite3_column_int64(statement, 4) != 0,
    sequence: sqlite3_column_int64(statement, 5))
}
