import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Point reads by (collection, id) for hot paths that run on event loops.
///
/// GRDB's pool hands each read to a reader's dispatch queue, and under load that hand-off parks the
/// calling thread on a futex: a context switch per read, which costs more than the read. Here each
/// thread that reads gets a connection of its own (kept in thread-local storage), with one prepared
/// statement: no queue, no lock, no switch. Each read is its own short read transaction, so it sees
/// every committed write. The connections go through the same encrypting VFS with the same key.
final class PointReader: @unchecked Sendable {
  /// One thread's connection and statement.
  final class Connection: @unchecked Sendable {
    let db: OpaquePointer
    let statement: OpaquePointer

    init(db: OpaquePointer, statement: OpaquePointer) {
      self.db = db
      self.statement = statement
    }

    func close() {
      sqlite3_finalize(statement)
      sqlite3_close_v2(db)
    }
  }

  private let path: String
  /// Unique for the process's lifetime (never reused, unlike an object's address), so a thread's
  /// connection to a closed database is never taken for one to a new database.
  private let id: Int
  /// Every connection opened, so `close` can close them; nil once closed.
  private let connections = Mutex<[Connection]?>([])

  private static let nextID = Atomic<Int>(0)

  init(path: String) {
    self.path = path
    self.id = Self.nextID.add(1, ordering: .relaxed).newValue
  }

  /// The record `collection`/`id` (tombstones included), read on the calling thread.
  func get(_ collection: String, _ id: String) throws -> StoredRecord? {
    let connection = try current()
    let statement = connection.statement
    sqlite3_reset(statement)
    defer {
      sqlite3_reset(statement)
      sqlite3_clear_bindings(statement)
    }
    bind(statement, 1, collection)
    bind(statement, 2, id)
    switch sqlite3_step(statement) {
    case SQLITE_ROW:
      return storedRecord(statement, collection: collection, id: id)
    case SQLITE_DONE:
      return nil
    default:
      let code = sqlite3_extended_errcode(connection.db)
      let message = String(cString: sqlite3_errmsg(connection.db))
      throw EncryptedDatabase.mapError(DatabaseError(resultCode: ResultCode(rawValue: code), message: message), path: path)
    }
  }

  private func current() throws -> Connection {
    let slots = ThreadConnections.current
    if let connection = slots.byReader[id] { return connection }
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db else {
      if let db { sqlite3_close_v2(db) }
      throw StorageError(.io, "cannot open \(path) for reading")
    }
    sqlite3_busy_timeout(db, 5000)
    // A small cache: point reads of hot records; the pool's readers hold the big ones.
    sqlite3_exec(db, "PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 0; PRAGMA cache_size = -8192", nil, nil, nil)
    var statement: OpaquePointer?
    let sql = "SELECT scope, body, version, stamps, deleted, sequence FROM record WHERE collection = ? AND id = ?"
    guard sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK,
      let statement
    else {
      sqlite3_close_v2(db)
      throw StorageError(.io, "cannot prepare a point read of \(path)")
    }
    let connection = Connection(db: db, statement: statement)
    let registered = connections.withLock { list -> Bool in
      guard list != nil else { return false }
      list!.append(connection)
      return true
    }
    guard registered else {
      connection.close()
      throw StorageError(.io, "\(path) is closed")
    }
    slots.byReader[id] = connection
    return connection
  }

  /// Closes every thread's connection. Call when no thread reads any more (the node has stopped).
  func close() {
    let all = connections.withLock { list -> [Connection] in
      defer { list = nil }
      return list ?? []
    }
    for connection in all { connection.close() }
    // This thread's entry goes now; other threads' entries for this reader are never looked up
    // again (ids are not reused) and are dropped with their thread.
    ThreadConnections.current.byReader[id] = nil
  }
}

/// A thread's point-read connections, by reader id, in one process-wide thread-local slot (a key
/// per database would run out of pthread keys in a process that opens many databases).
final class ThreadConnections {
  var byReader: [Int: PointReader.Connection] = [:]

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    let result = pthread_key_create(&key) { raw in
      #if canImport(Glibc)
        guard let raw else { return }
      #endif
      Unmanaged<ThreadConnections>.fromOpaque(raw).release()
    }
    precondition(result == 0, "no thread-local storage key for point reads")
    return key
  }()

  static var current: ThreadConnections {
    if let raw = pthread_getspecific(key) { return Unmanaged<ThreadConnections>.fromOpaque(raw).takeUnretainedValue() }
    let slots = ThreadConnections()
    pthread_setspecific(key, Unmanaged.passRetained(slots).toOpaque())
    return slots
  }
}
