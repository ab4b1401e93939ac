import CEduHubSQLiteVFS
import EduHubCrypto
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// A node's database: one SQLite file (and its WAL) encrypted page by page by the "eduhub" VFS,
/// opened as a GRDB `DatabasePool` (WAL mode: one writer, concurrent readers).
public final class EncryptedDatabase: Sendable {
  /// The fixed page size of encrypted files (the VFS must know it before it can read page 1).
  public static let pageSize = 4096

  /// The database's full path.
  public let path: String
  /// The pool; every access but point reads goes through it.
  public let pool: DatabasePool
  /// Per-thread connections for point reads on hot paths (see `PointReader`).
  let pointReader: PointReader
  /// Run by `close()` before the pool closes (a backup shipping the last frames).
  private let closeHooks = Mutex<[@Sendable () -> Void]>([])

  private init(path: String, pool: DatabasePool) {
    self.path = path
    self.pool = pool
    self.pointReader = PointReader(path: path)
  }

  /// Opens (or, with `create`, creates) the database at `path` with the key from `source`.
  /// - Parameter passphraseLimits: Argon2id work factors for a new database keyed by passphrase.
  /// - Throws: ``StorageError``: `.wrongKey`, `.notOurs`, `.corrupted`, `.notFound` or `.io`.
  public static func open(
    path: String, key source: DatabaseKeySource, create: Bool = false,
    passphraseLimits: PasswordHash.Limits = .moderate, configuration: Configuration = Configuration()
  ) throws -> EncryptedDatabase {
    let path = try canonicalPath(path)
    try registerVFS()
    let metadataPath = KeyMetadata.path(for: path)
    let exists = FileManager.default.fileExists(atPath: path)
    let key: SecretBytes
    if exists || FileManager.default.fileExists(atPath: metadataPath) {
      let metadata = try KeyMetadata.read(from: metadataPath)
      key = try metadata.key(from: source)
      guard ConstantTime.equals(try KeyMetadata.check(for: key), metadata.keyCheck) else {
        throw StorageError(.wrongKey, "the key does not open \(path)")
      }
      guard metadata.pageSize == pageSize else {
        throw StorageError(.notOurs, "\(path) has page size \(metadata.pageSize); EduHub uses \(pageSize)")
      }
    } else {
      guard create else { throw StorageError(.notFound, "no database at \(path)") }
      let (metadata, newKey) = try KeyMetadata.make(for: source, pageSize: pageSize, limits: passphraseLimits)
      try metadata.write(to: metadataPath)
      key = newKey
    }
    let rc = key.withUnsafeBytes {
      eduhub_vfs_set_key(path, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(pageSize))
    }
    guard rc == SQLITE_OK else { throw StorageError(.io, "cannot register the key of \(path)") }
    do {
      let pool = try DatabasePool(path: path, configuration: encryptedConfiguration(configuration))
      // Read page 1 now, so a damaged file fails here with a clear error rather than later.
      _ = try pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM sqlite_master") }
      return EncryptedDatabase(path: path, pool: pool)
    } catch {
      throw mapError(error, path: path)
    }
  }

  /// Opens (or creates) an UNENCRYPTED database with the same layout and settings but no key: for
  /// the storage benchmark's baseline only. Never use it for node data.
  public static func openUnencryptedForBenchmark(path: String) throws -> EncryptedDatabase {
    let path = try canonicalPath(path)
    var configuration = Configuration()
    configuration.maximumReaderCount = readerCount(Configuration())
    configuration.prepareDatabase { db in try db.execute(sql: pragmas) }
    return EncryptedDatabase(path: path, pool: try DatabasePool(path: path, configuration: configuration))
  }

  /// The configuration every connection gets: 40 reserved bytes per page for the nonce and tag
  /// (set before the first page is written), temporary data in memory, no memory mapping. It
  /// replaces any `prepareDatabase` of `base`.
  static func encryptedConfiguration(_ base: Configuration) -> Configuration {
    var configuration = base
    // Each reader has a page cache of its own, and every page a cold cache reads costs a decryption:
    // a few warm readers beat many cold ones (GRDB's default is five).
    configuration.maximumReaderCount = readerCount(base)
    configuration.prepareDatabase { db in
      var reserve = Int32(EDUHUB_VFS_RESERVE)
      _ = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve)
      try db.execute(sql: pragmas)
    }
    return configuration
  }

  /// Readers: one per core, at least two, at most what `base` allows.
  static func readerCount(_ base: Configuration) -> Int {
    max(2, min(base.maximumReaderCount, ProcessInfo.processInfo.activeProcessorCount))
  }

  /// Maps SQLite's errors for damaged pages to a clear `StorageError`; others pass through.
  public static func mapError(_ error: any Error, path: String) -> any Error {
    guard let database = error as? DatabaseError else { return error }
    if database.extendedResultCode.rawValue == SQLITE_IOERR_DATA_CODE {
      let page = eduhub_vfs_last_bad_page(path)
      return StorageError(.corrupted, "\(path) is corrupted: page \(page) does not authenticate")
    }
    if database.resultCode == .SQLITE_NOTADB || database.resultCode == .SQLITE_CORRUPT {
      return StorageError(.corrupted, "\(path) is corrupted: \(database.resultCode)")
    }
    if database.resultCode == .SQLITE_IOERR {
      return StorageError(
        .corrupted,
        "\(path) cannot be read or written (\(database.extendedResultCode)): it is damaged or not laid out for encryption")
    }
    return error
  }

  /// Runs `body` on the writer, mapping damaged-page errors to `StorageError`.
  public func write<T>(_ body: (Database) throws -> T) throws -> T {
    do { return try pool.write(body) } catch { throw Self.mapError(error, path: path) }
  }

  /// Runs `body` on the writer outside a transaction (pragmas, checkpoints).
  public func writeWithoutTransaction<T>(_ body: (Database) throws -> T) throws -> T {
    do { return try pool.writeWithoutTransaction(body) } catch { throw Self.mapError(error, path: path) }
  }

  /// Runs `body` on a reader, mapping damaged-page errors to `StorageError`.
  public func read<T>(_ body: (Database) throws -> T) throws -> T {
    do { return try pool.read(body) } catch { throw Self.mapError(error, path: path) }
  }

  /// Runs `body` when the database closes, before its connections do.
  public func beforeClose(_ body: @escaping @Sendable () -> Void) {
    closeHooks.withLock { $0.append(body) }
  }

  /// Closes the pool; afterwards the files can be moved or deleted.
  public func close() throws {
    for hook in closeHooks.withLock({ hooks in defer { hooks = [] }; return hooks }) { hook() }
    pointReader.close()
    try pool.close()
  }

  static func registerVFS() throws {
    guard eduhub_vfs_register() == SQLITE_OK else {
      throw StorageError(.io, "cannot register the encrypting SQLite VFS")
    }
  }

  /// The absolute path SQLite will use for `path` (directory resolved, symlinks included).
  static func canonicalPath(_ path: String) throws -> String {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    guard let resolved = realpath(directory, nil) else {
      throw StorageError(.io, "the directory of \(path) does not exist")
    }
    defer { free(resolved) }
    let base = String(cString: resolved)
    return (base == "/" ? "" : base) + "/" + url.lastPathComponent
  }
}

/// Every connection's settings: temporary data in memory (never in a plaintext temp file), no
/// memory mapping, a 32 MiB page cache (every page read from the file costs a decryption), and
/// synchronous=NORMAL, which in WAL mode keeps every commit across a process crash (SIGKILL) and
/// loses at most the last ones on power failure, never integrity; and a checkpoint every 4,000
/// WAL pages (16 MiB) rather than 1,000, so a page rewritten by many transactions is copied (and
/// re-encrypted) into the database once.
let pragmas =
  "PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 0; PRAGMA cache_size = -32768; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = \(autocheckpointPages)"

/// WAL pages after which a commit checkpoints (unless a backup shipper owns checkpointing).
let autocheckpointPages = 4000

extension EncryptedDatabase {
  /// Hands checkpointing to the caller (`false`: a backup shipper checkpoints after shipping) or
  /// back to SQLite, on the writer connection.
  func autocheckpoint(_ on: Bool) throws {
    try writeWithoutTransaction { db in try Self.autocheckpoint(on, db) }
  }

  /// `autocheckpoint(_:)` with the writer already held.
  static func autocheckpoint(_ on: Bool, _ db: Database) throws {
    try db.execute(sql: "PRAGMA wal_autocheckpoint = \(on ? autocheckpointPages : 0)")
  }
}

extension EncryptedDatabase {
  /// Runs `body`, a bulk load (millions of records in large transactions), with the writer's page
  /// cache raised to `cacheMiB` and its checkpoints handed to a ``BackgroundCheckpointer`` (the WAL
  /// kept under about `checkpointMiB`), then puts both back. A large transaction whose dirty pages
  /// outgrow the cache spills them into the WAL and writes them again at its commit; checkpoints
  /// on the writer's own thread were an eighth of its time. Both bounds are fixed: memory and the
  /// WAL stay bounded. Checkpoints a backup shipper owns (turned off) stay its own.
  public func bulkLoad<T>(cacheMiB: Int = 256, checkpointMiB: Int = 1024, _ body: () throws -> T) throws -> T {
    let load = try beginBulkLoad(cacheMiB: cacheMiB, checkpointMiB: checkpointMiB)
    defer { load.end() }
    return try body()
  }

  /// `bulkLoad` for a load that spans awaits (a first sync's walk): call ``BulkLoad/end()`` when
  /// it is over, whatever happens. `cacheMiB` nil keeps the writer's cache (and memory) as it is.
  ///
  /// Only for a process in which no backup shipper can start meanwhile: a shipper takes
  /// checkpoints over by turning the writer's off and hooking its WAL, as this does.
  public func beginBulkLoad(cacheMiB: Int?, checkpointMiB: Int = 1024) throws -> BulkLoad {
    try writeWithoutTransaction { db in
      let cache = try Int.fetchOne(db, sql: "PRAGMA cache_size") ?? -32768
      let checkpoint = try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") ?? 0
      // Everything that can fail comes before the first setting changes.
      let checkpointer =
        checkpoint > 0 ? try BackgroundCheckpointer(path: path, startMiB: min(128, checkpointMiB), limitMiB: checkpointMiB) : nil
      if let checkpointer {
        // SQLite's own checkpoints are a WAL hook too: turning them off unhooks them, then this
        // hook takes their place (neither call can fail).
        _ = sqlite3_wal_autocheckpoint(db.sqliteConnection, 0)
        checkpointer.install(db)
      }
      if let cacheMiB { try? db.execute(sql: "PRAGMA cache_size = \(-cacheMiB * 1024)") }
      return BulkLoad(database: self, cache: cache, checkpoint: checkpoint, checkpointer: checkpointer)
    }
  }

  /// A bulk load under way (see ``EncryptedDatabase/beginBulkLoad(cacheMiB:checkpointMiB:)``).
  public final class BulkLoad: Sendable {
    private let database: EncryptedDatabase
    private let cache: Int
    private let checkpoint: Int
    private let checkpointer: BackgroundCheckpointer?
    private let ended = Mutex(false)

    fileprivate init(database: EncryptedDatabase, cache: Int, checkpoint: Int, checkpointer: BackgroundCheckpointer?) {
      self.database = database
      self.cache = cache
      self.checkpoint = checkpoint
      self.checkpointer = checkpointer
    }

    /// Puts the writer's cache and checkpoints back (once; later calls do nothing). What the
    /// background checkpoints left in the WAL is copied now and the WAL truncated: left there, it
    /// would be read again (and decrypted) by the next process to open the file, and copied by the
    /// next commit.
    public func end() {
      guard ended.withLock({ ended in defer { ended = true }; return !ended }) else { return }
      // Each setting is put back on its own, whatever another one does. (If the writer cannot be
      // had at all, the hook keeps its checkpointer alive and checkpointing.)
      try? database.writeWithoutTransaction { db in
        if let checkpointer {
          checkpointer.uninstall(db)
          checkpointer.stop()
          // Busy (a reader still in an old snapshot): the writer's own checkpoints take it later.
          _ = sqlite3_wal_checkpoint_v2(db.sqliteConnection, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        }
        if checkpoint > 0 { _ = sqlite3_wal_autocheckpoint(db.sqliteConnection, Int32(clamping: checkpoint)) }
        try? db.execute(sql: "PRAGMA cache_size = \(cache)")
      }
    }
  }
}

extension EncryptedDatabase {
  /// A plain SQLite connection to the open database at `path` (its key registered), outside the
  /// pool, for work beside the node's own connections: through the encrypting VFS by name (it finds
  /// the key by path), with every connection's settings, and the schema read (so its WAL is open).
  /// Close it with `sqlite3_close_v2`.
  static func openRawConnection(path: String, purpose: String) throws -> OpaquePointer {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, "eduhub") == SQLITE_OK, let db,
      sqlite3_exec(db, pragmas + "; SELECT count(*) FROM sqlite_master", nil, nil, nil) == SQLITE_OK
    else {
      if let db { sqlite3_close_v2(db) }
      throw StorageError(.io, "cannot open \(path) to \(purpose)")
    }
    return db
  }

  /// Runs `body` while SQLite's WAL write lock is held by a connection of its own: no connection,
  /// in this process or another, commits meanwhile (the pool's writer only excludes this
  /// process's). Waits up to `timeout` seconds for a transaction under way elsewhere.
  /// - Throws: ``StorageError`` `.rejected` if the lock cannot be had in time.
  func withWriteLockHeld<T>(timeout: Double = 2, _ body: () throws -> T) throws -> T {
    let connection = try Self.openRawConnection(path: path, purpose: "hold its write lock")
    defer { sqlite3_close_v2(connection) }
    sqlite3_busy_timeout(connection, Int32(timeout * 1000))
    guard sqlite3_exec(connection, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK else {
      throw StorageError(.rejected, "another connection holds \(path)'s write lock")
    }
    defer { sqlite3_exec(connection, "ROLLBACK", nil, nil, nil) }
    return try body()
  }
}

/// SQLITE_IOERR_DATA, the code the VFS returns for a page that does not authenticate.
let SQLITE_IOERR_DATA_CODE: Int32 = 10 | (32 << 8)
