import CEduHubSQLiteVFS
import EduHubCrypto
import Foundation
import GRDB
import GRDBSQLite

/// A file of the node's own kept with each snapshot (its manifest, keys, key metadata), so a restore
/// needs nothing but the target and the backup key.
public struct BackupBundleFile: Codable, Sendable {
  /// The path inside the node's directory.
  public var path: String
  public var contents: [UInt8]

  public init(path: String, contents: [UInt8]) {
    self.path = path
    self.contents = contents
  }
}

extension BackupTarget {
  /// Starts generation `generation` with a snapshot of what `source` reads (a GRDB snapshot: one read
  /// transaction), copied page for page by SQLite's backup API into a file whose pages the VFS
  /// encrypts under the target's snapshot key: the same page numbers as the database, so WAL frames
  /// shipped after it apply to it page by page. Nothing in plaintext ever reaches the target.
  /// - Parameter pointMs: when the snapshot's read transaction began (the point it restores to).
  /// - Returns: the generation's manifest, holding its snapshot entry.
  func beginGeneration(
    _ generation: String, from source: some DatabaseReader, bundle: [BackupBundleFile], transaction: Int64,
    cursor: WALCursor?, pointMs: Int64
  ) throws -> SealedLog<BackupManifestEntry> {
    let folder = directory + "/" + generation
    try TargetFiles.makeDirectory(folder)
    let temporary = try EncryptedDatabase.canonicalPath(folder + "/snapshot.tmp")
    for file in [temporary, temporary + "-journal"] { unlink(file) }
    let registered = keys.snapshot.withUnsafeBytes {
      eduhub_vfs_set_key(temporary, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(info.pageSize))
    }
    guard registered == SQLITE_OK else { throw StorageError(.io, "cannot register the snapshot key") }
    defer { eduhub_vfs_clear_key(temporary) }
    do {
      var configuration = EncryptedDatabase.encryptedConfiguration(Configuration())
      configuration.prepareDatabase { db in
        // Written once and checked by digest: no journal, one fsync at the end.
        try db.execute(sql: "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
      }
      let destination = try DatabaseQueue(path: temporary, configuration: configuration)
      try source.backup(to: destination)
      try destination.close()
    } catch {
      unlink(temporary)
      throw EncryptedDatabase.mapError(error, path: temporary)
    }
    let final = folder + "/snapshot"
    let fd = open(temporary, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    // SQLite made the file with the umask's mode; like every file of a target it is the owner's alone.
    guard fd >= 0, fchmod(fd, 0o600) == 0, fsync(fd) == 0, close(fd) == 0, rename(temporary, final) == 0 else {
      throw StorageError(.io, "cannot store the snapshot at \(final)")
    }
    TargetFiles.syncDirectory(of: final)
    let (digest, bytes) = try Self.digest(ofFile: final)

    let sealedBundle = try AEAD.seal(
      [UInt8](try JSONEncoder().encode(bundle)), associatedData: Array("eduhub.backup.bundle:\(generation)".utf8), key: keys.bundle)
    try Self.writeFile(folder + "/bundle", bytes: sealedBundle)

    var manifest = try self.manifest(generation)
    try manifest.append(
      BackupManifestEntry(
        kind: .snapshot, timeMs: BackupClock.nowMs(), transaction: transaction, cursor: cursor, file: "snapshot", digest: digest,
        bytes: bytes, bundleDigest: Hex.encode(KeyedHash.digest(sealedBundle)), pages: Int(bytes) / info.pageSize,
        firstTimeMs: pointMs))
    try recordGeneration(generation)
    return manifest
  }

  /// The bundle of `generation`, checked against its manifest.
  func bundle(_ generation: String, digest: String) throws -> [BackupBundleFile] {
    let sealed = try readVerified(path(generation, "bundle"), digest: digest, bytes: nil, name: "the bundle of generation \(generation)")
    guard let plain = try? AEAD.open(sealed, associatedData: Array("eduhub.backup.bundle:\(generation)".utf8), key: keys.bundle),
      let files = try? JSONDecoder().decode([BackupBundleFile].self, from: Data(plain))
    else { throw StorageError(.corrupted, "the bundle of generation \(generation) does not authenticate") }
    return files
  }

  /// The last transaction number any generation reached (-1 if none).
  func lastTransaction() throws -> Int64 {
    var last: Int64 = -1
    for generation in generations {
      if let entry = try manifest(generation).entries.last { last = max(last, entry.transaction) }
    }
    return last
  }
}

extension EncryptedDatabase {
  /// Takes a backup of this database now, while it serves: a new generation in the target at
  /// `directory` holding a consistent snapshot and `bundle` (from another process than the node's,
  /// it cannot be continued by WAL shipping; `serve --backup-to` starts its own).
  /// - Returns: the generation's name and the snapshot's size in bytes.
  public func backUp(to directory: String, key: SecretBytes, bundle: [BackupBundleFile]) throws -> (generation: String, bytes: Int64) {
    let target = try BackupTarget(directory: directory, key: key, create: true)
    let lock = try target.lock()
    defer { Glibc.close(lock) }
    let pointMs = BackupClock.nowMs()
    let snapshot = try pool.makeSnapshot()
    let generation = BackupTarget.newGenerationName()
    let manifest = try target.beginGeneration(
      generation, from: snapshot, bundle: bundle, transaction: try target.lastTransaction() + 1, cursor: nil, pointMs: pointMs)
    return (generation, manifest.entries.first?.bytes ?? 0)
  }
}
