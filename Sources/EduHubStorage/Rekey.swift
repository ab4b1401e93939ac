import CEduHubSQLiteVFS
import EduHubCrypto
import Foundation
import GRDB
import GRDBSQLite

extension EncryptedDatabase {
  /// Rewrites the database at `path` under a new key: every page is copied (VACUUM INTO) into a new
  /// file encrypted with the new key, checked, then moved over the old one. Nothing is lost: the
  /// old file stays until the new one is complete and verified.
  /// - Throws: ``StorageError`` (`.wrongKey` if `old` does not open it).
  public static func rekey(
    path: String, from old: DatabaseKeySource, to new: DatabaseKeySource,
    passphraseLimits: PasswordHash.Limits = .moderate
  ) throws {
    let database = try open(path: path, key: old)
    let path = database.path
    let staging = path + ".rekey"
    let stagingMetadata = KeyMetadata.path(for: staging)
    for file in [staging, staging + "-wal", staging + "-shm", stagingMetadata] { unlink(file) }
    let (metadata, key) = try KeyMetadata.make(for: new, pageSize: pageSize, limits: passphraseLimits)
    let rc = key.withUnsafeBytes {
      eduhub_vfs_set_key(staging, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(pageSize))
    }
    guard rc == SQLITE_OK else { throw StorageError(.io, "cannot register the new key") }
    defer { eduhub_vfs_clear_key(staging) }
    do {
      try database.pool.writeWithoutTransaction { db in
        try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        try db.execute(sql: "VACUUM INTO ?", arguments: [staging])
      }
      try database.close()
    } catch {
      unlink(staging)
      throw mapError(error, path: path)
    }
    // Verify the copy before it replaces anything.
    try metadata.write(to: stagingMetadata)
    do {
      let copy = try DatabaseQueue(path: staging, configuration: encryptedConfiguration(Configuration()))
      let result = try copy.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") }
      try copy.close()
      guard result == "ok" else { throw StorageError(.corrupted, "the rekeyed copy of \(path) failed its check") }
    } catch {
      unlink(staging)
      unlink(stagingMetadata)
      throw mapError(error, path: staging)
    }
    // The metadata first, then the file: a crash in between leaves the old file with new metadata,
    // which the old key no longer opens but the copy, still at its staging path, does.
    let metadataPath = KeyMetadata.path(for: path)
    guard rename(stagingMetadata, metadataPath) == 0, rename(staging, path) == 0 else {
      throw StorageError(.io, "cannot move the rekeyed database into place at \(path)")
    }
    unlink(path + "-wal")
    unlink(path + "-shm")
    eduhub_vfs_clear_key(path)
  }
}
