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

  /// Takes the claim. Checkers hold a shared lock for a moment only, so a few tries get it unless
  /// another shipper has it.
  /// - Throws: ``StorageError`` `.io` if the file cannot be opened, `.rejected` if another process
  ///   ships this database.
  static func take(databasePath: String) throws -> CheckpointClaim {
    let path = path(for: databasePath)
    let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else {
      throw StorageError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
    }
    for _ in 0..<500 {
      if flock(descriptor, LOCK_EX | LOCK_NB) == 0 { return CheckpointClaim(descriptor: descriptor) }
      guard errno == EWOULDBLOCK || errno == EINTR else { break }
      usleep(10_000)
    }
    close(descriptor)
    throw StorageError(.rejected, "another process ships the backup of \(databasePath) (it holds \(path))")
  }

  /// Lets the claim go: other connections checkpoint again.
  func release() {
    close(descriptor)
  }

  /// Marks (or unmarks) the database file of connection `db` as the shipper's writer, whose
  /// checkpoints pass while the claim is held.
  static func markOwner(_ db: Database, _ owner: Bool) {
    var flag: Int32 = owner ? 1 : 0
    _ = sqlite3_file_control(db.sqliteConnection, "main", EDUHUB_FCNTL_CHECKPOINT_OWNER, &flag)
  }
}
