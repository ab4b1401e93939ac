import EduHubCrypto
import Foundation

/// A backup target: a directory (a mounted off-site volume) laid out so an object store can hold the
/// same files, each written once under its final name:
///
///     backup.json                 what it is, the key check, the drill-signing public key (plaintext)
///     index                       sealed log: generations begun and pruned
///     drills                      signed restore-drill records (see `BackupDrill`)
///     <generation>/manifest       sealed log: the snapshot, then every segment, checkpoint and stop
///     <generation>/snapshot       the database as of the generation's start, pages encrypted
///     <generation>/bundle         the node's own files (manifest, keys), sealed
///     <generation>/<n>.segment    WAL frames shipped after it, sealed
///
/// A generation is a snapshot and the unbroken run of transactions after it; a new one starts when
/// the run cannot be proven unbroken, and on a schedule, so old ones can be pruned whole.
final class BackupTarget {
  let directory: String
  let keys: BackupKeys
  let info: BackupTargetInfo
  private(set) var index: SealedLog<BackupIndexEntry>

  /// Opens the target at `directory`, creating it (with `create`) if it does not exist.
  /// - Throws: `StorageError`: `.notFound`, `.wrongKey` (another backup key), `.notOurs`, `.corrupted`.
  init(directory: String, key: SecretBytes, create: Bool) throws {
    self.directory = directory
    keys = try BackupKeys(key)
    let infoPath = directory + "/backup.json"
    if let data = try TargetFiles.read(infoPath, limit: 1 << 20) {
      guard let info = try? JSONDecoder().decode(BackupTargetInfo.self, from: Data(data)), info.magic == BackupTargetInfo.magic else {
        throw StorageError(.notOurs, "\(directory) is not an EduHub backup target (backup.json unreadable)")
      }
      guard info.version == BackupTargetInfo.currentVersion else {
        throw StorageError(.notOurs, "\(directory) has backup format \(info.version); this EduHub reads \(BackupTargetInfo.currentVersion)")
      }
      guard ConstantTime.equals(Hex.decode(info.keyCheck) ?? [], keys.check) else {
        throw StorageError(.wrongKey, "the backup key does not open \(directory)")
      }
      guard ConstantTime.equals(Array(try info.computedMAC(keys).utf8), Array(info.mac.utf8)) else {
        throw StorageError(.corrupted, "\(infoPath) was changed (its MAC does not verify)")
      }
      guard info.pageSize == EncryptedDatabase.pageSize else {
        throw StorageError(.notOurs, "\(directory) holds pages of \(info.pageSize) bytes; EduHub uses \(EncryptedDatabase.pageSize)")
      }
      self.info = info
    } else {
      guard create else { throw StorageError(.notFound, "no backup at \(directory)") }
      try TargetFiles.makeDirectory(directory, parents: true)
      var info = BackupTargetInfo(
        magic: BackupTargetInfo.magic, version: BackupTargetInfo.currentVersion, pageSize: EncryptedDatabase.pageSize,
        keyCheck: Hex.encode(keys.check), drillPublicKey: Hex.encode(keys.drills.publicKey), createdMs: BackupClock.nowMs())
      info.mac = try info.computedMAC(keys)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      try Self.writeFile(infoPath, bytes: [UInt8](try encoder.encode(info)))
      self.info = info
    }
    index = try SealedLog(path: directory + "/index", name: "index", key: keys.log)
  }

  /// Takes the target's lock (`flock` on `lock`): a node's shipper holds it while it runs; a
  /// snapshot or a prune from the command line takes it too, so no two processes append to the same
  /// logs. Released when the returned descriptor is closed.
  /// - Throws: `StorageError.rejected` if another process holds it.
  func lock() throws -> Int32 {
    let fd = try TargetFiles.openForWriting(directory + "/lock")
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      close(fd)
      throw StorageError(.rejected, "another process (a node shipping to it) holds \(directory): it snapshots and prunes on its own")
    }
    return fd
  }

  /// Generations begun and not pruned, oldest first.
  var generations: [String] {
    let pruned = Set(index.entries.filter { $0.kind == .pruned }.map(\.generation))
    return index.entries.filter { $0.kind == .generation && !pruned.contains($0.generation) }.map(\.generation)
  }

  func path(_ generation: String, _ file: String) -> String { directory + "/" + generation + "/" + file }

  /// The manifest of `generation`.
  func manifest(_ generation: String) throws -> SealedLog<BackupManifestEntry> {
    try SealedLog(path: path(generation, "manifest"), name: "manifest:" + generation, key: keys.log)
  }

  /// Records that `generation` begins (its directory must hold its snapshot and manifest first).
  func recordGeneration(_ generation: String) throws {
    try index.append(BackupIndexEntry(kind: .generation, generation: generation, timeMs: BackupClock.nowMs()))
  }

  /// Removes `generation`: recorded in the index first, so a crash part way leaves it pruned, never
  /// half there and still listed.
  func prune(_ generation: String) throws {
    try index.append(BackupIndexEntry(kind: .pruned, generation: generation, timeMs: BackupClock.nowMs()))
    try? FileManager.default.removeItem(atPath: directory + "/" + generation)
  }

  /// A new generation's name: its start time (sortable) and a random suffix.
  static func newGenerationName() -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
    return formatter.string(from: Date()) + "-" + Hex.encode(Random.bytes(3))
  }

  /// Writes `bytes` to `path` durably and atomically: a temporary file, fsync, rename, fsync of the
  /// directory. Mode 0600.
  static func writeFile(_ path: String, bytes: [UInt8]) throws {
    let temporary = path + ".tmp"
    // A new file, never one found there (a symlink planted on the target would redirect the write).
    unlink(temporary)
    let fd = try TargetFiles.openForWriting(temporary, flags: O_EXCL)
    var done = 0
    let ok = bytes.withUnsafeBytes { buffer -> Bool in
      while done < buffer.count {
        let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
        if n <= 0 { return false }
        done += n
      }
      return fsync(fd) == 0
    }
    close(fd)
    guard ok, rename(temporary, path) == 0 else {
      unlink(temporary)
      throw StorageError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
    }
    TargetFiles.syncDirectory(of: path)
  }

  /// The BLAKE2b and size of the file at `path`, read in 1 MiB pieces.
  static func digest(ofFile path: String) throws -> (digest: String, bytes: Int64) {
    guard let (fd, _) = try TargetFiles.openForReading(path) else { throw StorageError(.notFound, "\(path) is missing") }
    defer { close(fd) }
    var hasher = StreamingDigest()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var total: Int64 = 0
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      guard n >= 0 else { throw StorageError(.io, "cannot read \(path)") }
      if n == 0 { break }
      buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
      total += Int64(n)
    }
    return (Hex.encode(hasher.finish()), total)
  }

  /// Reads a whole (small) file, checking it against the digest the manifest gives.
  func readVerified(_ path: String, digest: String, bytes expected: Int64?, name: String) throws -> [UInt8] {
    guard let bytes = try TargetFiles.read(path, size: expected) else {
      throw StorageError(.notFound, "\(name) is missing (\(path))")
    }
    guard ConstantTime.equals(Array(Hex.encode(KeyedHash.digest(bytes)).utf8), Array(digest.utf8)) else {
      throw StorageError(.corrupted, "\(name) does not match the manifest (\(path) was changed)")
    }
    return bytes
  }
}

extension BackupTarget {
  /// Prunes every generation older than the newest one that began at or before the retention
  /// window's start: every point inside the window is restorable from that one or later ones.
  /// - Returns: the generations pruned.
  func pruneBeyond(retentionDays: Int, nowMs: Int64) throws -> [String] {
    let windowStart = nowMs - Int64(min(max(retentionDays, 1), 36_500)) * 86_400_000
    let live = generations
    var starts: [(String, Int64)] = []
    for generation in live {
      guard let first = try? manifest(generation).entries.first else { continue }
      starts.append((generation, first.firstTimeMs ?? first.timeMs))
    }
    guard let keepFrom = starts.lastIndex(where: { $0.1 <= windowStart }) else { return [] }
    let doomed = starts[..<keepFrom].map(\.0)
    for generation in doomed { try prune(generation) }
    return doomed
  }
}

/// An entry of the target's index.
struct BackupIndexEntry: Codable {
  enum Kind: String, Codable { case generation, pruned }
  var kind: Kind
  var generation: String
  var timeMs: Int64
}

/// An entry of a generation's manifest. Transactions are numbered across the whole target: the
/// snapshot is the point its `transaction` names, each commit shipped after it the next number.
struct BackupManifestEntry: Codable {
  enum Kind: String, Codable {
    /// The generation's start: its snapshot and bundle.
    case snapshot
    /// Frames shipped.
    case segment
    /// Every frame shipped was backfilled into the database: the WAL may restart.
    case checkpoint
    /// The node stopped with every frame shipped and backfilled, its WAL emptied.
    case stop
  }

  var kind: Kind
  var timeMs: Int64
  /// The last transaction this entry covers.
  var transaction: Int64
  /// Where shipping stands after this entry (nil: the generation cannot be continued, e.g. a
  /// snapshot taken by another process).
  var cursor: WALCursor?
  /// The file this entry adds (snapshot or segment), its digest and size.
  var file: String? = nil
  var digest: String? = nil
  var bytes: Int64? = nil
  // Snapshot
  var bundleDigest: String? = nil
  var pages: Int? = nil
  // Segment
  var index: Int? = nil
  var frames: Int? = nil
  var firstTransaction: Int64? = nil
  var firstTimeMs: Int64? = nil
  // Stop: the database file as it was left, to tell whether anything changed it before the node
  // came back.
  var databaseBytes: Int64? = nil
  var databaseModifiedNs: Int64? = nil
}

/// Wall-clock milliseconds.
enum BackupClock {
  static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
