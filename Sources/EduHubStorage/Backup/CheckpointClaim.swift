import CEduHubSQLiteVFS
import Foundation
import GRDB
import GRDBSQLite

/// A backup shipper's claim on its database's checkpoints, across processes: an exclusive flock on
/// `<database>-shipper`, held while the shipper owns checkpointing.
///
/// Other processes open the same node (the operator's `eduhub sync`, `seed`, `node create`,
/// `catalog publish` beside a serving node). Their connections checkpoint on their own, and a
/// checkpoint there could copy WAL frames the shipper has not shipped; the WAL could then restart
/// over them, and the backup would never see those transactions. While the claim is held, the
/// encrypting VFS refuses the checkpoint lock to every connection but the shipper's writer (see
/// `EDUHUB_FCNTL_CHECKPOINT_OWNER`): their checkpoints fail busy, which SQLite's own treat as
/// "later". The kernel drops the lock with the process, so a killed shipper leaves no claim.
final class CheckpointClaim: Sendable {
  private let descriptor: Int32

  private init(descriptor: Int32) {
    self.descriptor = descriptor
  }

  /// The claim file of the database at `databasePath`.
  static func path(for databasePath: String) -> String {
    databasePath + EDUHUB_CHECKPOINT_CLAIM_SUFFIX
  }

  /// Takes the claim. Checkers hold a shared lock for a moment only, so a few tries over at most
  /// 50 ms get it unless another shipper has it (the caller holds the node's writer meanwhile).
  /// - Throws: ``StorageError`` `.io` if the file cannot be opened or is not a regular file,
  ///   `.rejected` if another process ships this database.
  static func take(databasePath: String) throws -> CheckpointClaim {
    let path = path(for: databasePath)
    // Never through a link, never blocking on a FIFO planted there.
    let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
    guard descriptor >= 0 else {
      throw StorageError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
    }
    var info = stat()
    guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      close(descriptor)
      throw StorageError(.io, "\(path) is not a regular file")
    }
    // Readable by whoever may open the database: a process that cannot read the claim counts it
    // as held and never checkpoints.
    var database = stat()
    if stat(databasePath, &database) == 0 { _ = fchmod(descriptor, database.st_mode & 0o666) }
    for _ in 0..<50 {
      if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return CheckpointClaim(descriptor: descriptor) }
      guard errno == EWOULDBLOCK || errno == EINTR else { break }
      usleep(1000)
    }
    close(descriptor)
    throw StorageError(.rejected, "another process ships the backup of \(databasePath) (it holds \(path))")
  }

  /// Whether the claim file still stands at `path(for: databasePath)` as the file this claim
  /// locks: removed or replaced, other processes no longer see the claim.
  func isInPlace(databasePath: String) -> Bool {
    var held = stat()
    var named = stat()
    guard fstat(descriptor, &held) == 0, lstat(Self.path(for: databasePath), &named) == 0 else { return false }
    return held.st_nlink > 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev
  }

  /// Lets the claim go: other connections checkpoint again.
  func release() {
    close(descriptor)
  }

  /// Marks the database file of connection `db` as the shipper's writer, whose checkpoints pass
  /// while the claim is held, and waits for any checkpoint another connection began before the
  /// claim: from then on only `db` checkpoints.
  /// - Throws: ``StorageError`` `.io` if the file is not the encrypting VFS's (the mark would not
  ///   hold, and the shipper's own checkpoints would be refused), `.rejected` if a checkpoint
  ///   elsewhere does not end within about ten seconds.
  static func becomeOwner(_ db: Database) throws {
    var flag: Int32 = 1
    guard sqlite3_file_control(db.sqliteConnection, "main", EDUHUB_FCNTL_CHECKPOINT_OWNER, &flag) == SQLITE_OK else {
      throw StorageError(.io, "the database is not opened through the encrypting VFS: its checkpoints cannot be claimed")
    }
    // The WAL index must be open for its lock to be waited on.
    _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master")
    let waited = sqlite3_file_control(db.sqliteConnection, "main", EDUHUB_FCNTL_AWAIT_CHECKPOINTS, nil)
    guard waited == SQLITE_OK else {
      throw StorageError(.rejected, "a checkpoint in another process did not end (SQLite code \(waited))")
    }
  }
}
