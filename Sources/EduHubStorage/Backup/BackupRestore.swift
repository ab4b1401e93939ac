import CEduHubSQLiteVFS
import EduHubCrypto
import Foundation
import GRDB

/// A point a node can be restored to.
public enum BackupPoint: Sendable, Equatable, CustomStringConvertible {
  /// The last transaction shipped.
  case latest
  /// Every transaction the shipper had seen committed by this time (ms since the epoch). The shipper
  /// looks every 0.2 s, so a commit's time is at most that (or, while a snapshot is taken, the
  /// snapshot's duration) after it really committed.
  case time(Int64)
  /// Right after transaction number N (as `eduhub backup verify` lists them).
  case transaction(Int64)

  public var description: String {
    switch self {
    case .latest: "the latest point"
    case .time(let ms): "time \(BackupPoint.format(ms))"
    case .transaction(let n): "transaction \(n)"
    }
  }

  /// `ms` as an ISO 8601 UTC time with milliseconds.
  public static func format(_ ms: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
  }
}

/// What a restore rebuilt.
public struct RestoreReport: Sendable {
  public var generation: String
  /// The last transaction in the restored node.
  public var transaction: Int64
  /// When the shipper saw that transaction (or the snapshot was taken).
  public var timeMs: Int64
  public var pages: Int
  public var segments: Int
  /// The restored record store's change sequence and record count (what sync and people see).
  public var changeSequence: Int64
  public var records: Int
  public var seconds: Double
  /// The last transaction the target holds: those after `transaction` are not in the restored node
  /// (nor anything they did, revocations included).
  public var targetLastTransaction: Int64
}

/// One generation of a target, as `verify` found it.
public struct BackupGenerationSummary: Sendable {
  public var generation: String
  public var firstTransaction: Int64
  public var lastTransaction: Int64
  public var firstTimeMs: Int64
  public var lastTimeMs: Int64
  public var segments: Int
  public var bytes: Int64
  /// Whether a node ships to it still (false: a snapshot taken by `eduhub backup`, or stopped).
  public var continuable: Bool
}

/// Restores and verifies backups (see `BackupTarget` for the layout).
public enum BackupRestore {
  /// Rebuilds a node's directory at `node` (new or empty) as of `point`: the generation's bundle (the
  /// node's manifest and keys), then its snapshot, then every transaction up to the point, each
  /// segment checked against the manifest and the chain of transactions checked unbroken; then the
  /// database's own integrity check.
  /// - Parameters:
  ///   - databaseFile: the database's path inside the node's directory.
  ///   - databaseKeyFile: the path of the database's key file inside the node's directory (from the
  ///     bundle).
  /// - Throws: `StorageError` naming what is missing, changed or out of range; nothing is left at
  ///   `node` then.
  ///   - keepBundle: whether the node's own files (its manifest and keys) are written out; a drill
  ///     checks them in memory and writes no key to its scratch directory.
  public static func restore(
    from directory: String, key: SecretBytes, to point: BackupPoint, into node: String, databaseFile: String,
    databaseKeyFile: String, keepBundle: Bool = true
  ) throws -> RestoreReport {
    let started = Date()
    // Only ever into a new or empty directory, and on failure only what the restore made goes.
    let existed = FileManager.default.fileExists(atPath: node)
    if existed {
      guard (try? FileManager.default.contentsOfDirectory(atPath: node))?.isEmpty == true else {
        throw StorageError(.rejected, "\(node) exists and is not empty: restore into a new directory")
      }
    }
    let target = try BackupTarget(directory: directory, key: key, create: false)
    let (generation, manifest) = try choose(point, in: target)
    let (snapshot, digest, bundleDigest, snapshotBytes) = try snapshotEntry(of: manifest, generation: generation)
    do {
      try FileManager.default.createDirectory(atPath: node, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      var databaseKey: SecretBytes?
      for file in try target.bundle(generation, digest: bundleDigest) {
        guard !file.path.hasPrefix("/"), !file.path.split(separator: "/").contains(".."), !file.path.contains("\0") else {
          throw StorageError(.corrupted, "the bundle of generation \(generation) names a path outside the node: \(file.path)")
        }
        if file.path == databaseKeyFile { databaseKey = SecretBytes(file.contents) }
        // The key metadata is no secret and the database needs it; the rest only a real restore keeps.
        guard keepBundle || file.path == databaseFile + ".eduhub-key" else { continue }
        let path = node + "/" + file.path
        try FileManager.default.createDirectory(
          atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try BackupTarget.writeFile(path, bytes: file.contents)
      }
      let databasePath = node + "/" + databaseFile
      guard let databaseKey, databaseKey.count == AEAD.keyBytes else {
        throw StorageError(.corrupted, "the bundle of generation \(generation) has no database key at \(databaseKeyFile)")
      }
      // A bundle kept without the key metadata (a tool's, not a node's) gets it made for its key file.
      if !FileManager.default.fileExists(atPath: KeyMetadata.path(for: databasePath)) {
        let (metadata, _) = try KeyMetadata.make(for: .key(databaseKey), pageSize: target.info.pageSize, limits: .moderate)
        try metadata.write(to: KeyMetadata.path(for: databasePath))
      }
      let writer = try PageWriter(path: databasePath, key: databaseKey, pageSize: target.info.pageSize)
      let pages = try copySnapshot(target.path(generation, "snapshot"), digest: digest, bytes: snapshotBytes, target: target, into: writer)
      var (transaction, timeMs) = (snapshot.transaction, snapshot.firstTimeMs ?? snapshot.timeMs)
      var segments = 0
      let wanted: (BackupManifestEntry) -> Bool = { entry in
        switch point {
        case .latest: true
        case .transaction(let n): (entry.firstTransaction ?? .max) <= n
        case .time(let t): (entry.firstTimeMs ?? .max) <= t
        }
      }
      try forEachSegment(of: manifest, generation: generation, in: target, while: wanted) { entry, segment in
        var pending: [BackupSegment.Frame] = []
        for frame in segment.frames {
          pending.append(frame)
          guard frame.commitSize != 0 else { continue }
          if case .time(let t) = point, frame.timeMs > t { return false }
          for page in pending { try writer.write(page) }
          try writer.truncate(pages: Int(frame.commitSize))
          pending.removeAll(keepingCapacity: true)
          transaction += 1
          timeMs = frame.timeMs
          if case .transaction(let n) = point, transaction >= n { break }
        }
        segments += 1
        return true
      }
      try writer.finish()
      let (sequence, records) = try check(databasePath, key: databaseKey)
      return RestoreReport(
        generation: generation, transaction: transaction, timeMs: timeMs, pages: pages, segments: segments, changeSequence: sequence,
        records: records, seconds: Date().timeIntervalSince(started), targetLastTransaction: (try? target.lastTransaction()) ?? transaction)
    } catch {
      if existed {
        for child in (try? FileManager.default.contentsOfDirectory(atPath: node)) ?? [] {
          try? FileManager.default.removeItem(atPath: node + "/" + child)
        }
      } else {
        try? FileManager.default.removeItem(atPath: node)
      }
      throw error
    }
  }

  /// Checks every generation of the target without restoring: the index's and each manifest's chain,
  /// every file against its digest, every snapshot page and segment authenticated, the transactions
  /// unbroken from the snapshot to the last segment.
  /// - Throws: `StorageError` naming the first missing or changed file.
  public static func verify(from directory: String, key: SecretBytes) throws -> [BackupGenerationSummary] {
    let target = try BackupTarget(directory: directory, key: key, create: false)
    var summaries: [BackupGenerationSummary] = []
    for generation in target.generations {
      let manifest = try target.manifest(generation)
      let (snapshot, digest, bundleDigest, snapshotBytes) = try snapshotEntry(of: manifest, generation: generation)
      _ = try target.bundle(generation, digest: bundleDigest)
      _ = try copySnapshot(target.path(generation, "snapshot"), digest: digest, bytes: snapshotBytes, target: target, into: nil)
      var bytes = snapshot.bytes ?? 0
      var segments = 0
      var lastTimeMs = snapshot.timeMs
      try forEachSegment(of: manifest, generation: generation, in: target) { entry, _ in
        segments += 1
        bytes += entry.bytes ?? 0
        lastTimeMs = entry.timeMs
        return true
      }
      summaries.append(
        BackupGenerationSummary(
          generation: generation, firstTransaction: snapshot.transaction, lastTransaction: manifest.entries.last?.transaction ?? snapshot.transaction,
          firstTimeMs: snapshot.firstTimeMs ?? snapshot.timeMs, lastTimeMs: lastTimeMs, segments: segments, bytes: bytes,
          continuable: manifest.entries.last?.cursor != nil))
    }
    return summaries
  }

  /// A generation's first entry, which must be its snapshot's, with what every reader of it needs.
  static func snapshotEntry(of manifest: SealedLog<BackupManifestEntry>, generation: String) throws
    -> (entry: BackupManifestEntry, digest: String, bundleDigest: String, bytes: Int64)
  {
    guard let entry = manifest.entries.first, entry.kind == .snapshot, let digest = entry.digest, let bundleDigest = entry.bundleDigest,
      let bytes = entry.bytes
    else { throw StorageError(.corrupted, "generation \(generation): its manifest is missing or has no snapshot entry") }
    return (entry, digest, bundleDigest, bytes)
  }

  /// The generation holding `point`.
  static func choose(_ point: BackupPoint, in target: BackupTarget) throws -> (String, SealedLog<BackupManifestEntry>) {
    var ranges: [String] = []
    var damaged: StorageError?
    for generation in target.generations.reversed() {
      // A generation the index lists must be readable: a lost or changed manifest is never skipped
      // in silence. A point in an older, intact generation still restores.
      let manifest: SealedLog<BackupManifestEntry>
      do {
        manifest = try target.manifest(generation)
        _ = try snapshotEntry(of: manifest, generation: generation)
      } catch let error as StorageError {
        if point == .latest { throw error }
        damaged = damaged ?? error
        continue
      }
      guard let first = manifest.entries.first, let last = manifest.entries.last else { continue }
      let start = first.firstTimeMs ?? first.timeMs
      ranges.append("\(first.transaction)–\(last.transaction) (\(BackupPoint.format(start)) – \(BackupPoint.format(last.timeMs)))")
      switch point {
      case .latest: return (generation, manifest)
      case .transaction(let n): if first.transaction <= n && n <= last.transaction { return (generation, manifest) }
      case .time(let t): if start <= t { return (generation, manifest) }
      }
    }
    if let damaged { throw damaged }
    throw StorageError(
      .notFound,
      ranges.isEmpty ? "\(target.directory) holds no backup yet" : "no generation holds \(point); the target holds transactions \(ranges.reversed().joined(separator: ", "))")
  }

  /// Calls `body` with each segment of `manifest` in order, opened and checked: present, matching its
  /// digest and header, and following on from the one before (no index or transaction skipped),
  /// while `wanted` says the next one is needed; `body` returns false to stop.
  static func forEachSegment(
    of manifest: SealedLog<BackupManifestEntry>, generation: String, in target: BackupTarget,
    while wanted: (BackupManifestEntry) -> Bool = { _ in true }, _ body: (BackupManifestEntry, BackupSegment) throws -> Bool
  ) throws {
    var expectedIndex = 1
    var transaction = manifest.entries.first?.transaction ?? 0
    for entry in manifest.entries where entry.kind == .segment {
      guard let index = entry.index, let file = entry.file, let digest = entry.digest, let frames = entry.frames,
        let first = entry.firstTransaction
      else { throw StorageError(.corrupted, "generation \(generation): a segment entry is incomplete") }
      let name = "\(generation)/\(file)"
      guard wanted(entry) else { return }
      guard index == expectedIndex, first == transaction + 1 else {
        throw StorageError(
          .corrupted, "generation \(generation): segment \(BackupSegment.fileName(expectedIndex)) is missing from the manifest (found \(file) next)")
      }
      let bytes = try target.readVerified(target.path(generation, file), digest: digest, bytes: entry.bytes, name: "segment \(name)")
      let segment = try BackupSegment.open(
        bytes, expected: BackupSegment.Header(generation: generation, index: index, firstTransaction: first, frames: frames),
        key: target.keys.segment, pageSize: target.info.pageSize, name: name)
      let commits = segment.frames.filter { $0.commitSize != 0 }.count
      guard Int64(commits) == entry.transaction - first + 1 else {
        throw StorageError(.corrupted, "segment \(name) holds \(commits) transactions, not what the manifest says")
      }
      guard try body(entry, segment) else { return }
      expectedIndex += 1
      transaction = entry.transaction
    }
  }

  /// Reads the snapshot at `path`, checking its digest and every page; with `writer`, writes each page
  /// re-encrypted under the database key.
  /// - Returns: the number of pages.
  static func copySnapshot(_ path: String, digest: String, bytes: Int64, target: BackupTarget, into writer: PageWriter?) throws -> Int {
    let pageSize = target.info.pageSize
    guard let (fd, size) = try TargetFiles.openForReading(path) else { throw StorageError(.notFound, "the snapshot \(path) is missing") }
    defer { close(fd) }
    guard size == bytes else { throw StorageError(.corrupted, "the snapshot \(path) has \(size) bytes, not the manifest's \(bytes)") }
    // SQLite never writes the page holding the lock byte at 1 GiB: it stays a hole of zeros.
    let lockPage = 0x4000_0000 / pageSize + 1
    var hasher = StreamingDigest()
    let pagesPerRead = 256
    var buffer = [UInt8](repeating: 0, count: pageSize * pagesPerRead)
    var pageNumber = 0
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      guard n >= 0 else { throw StorageError(.io, "cannot read \(path)") }
      if n == 0 { break }
      guard n % pageSize == 0 else { throw StorageError(.corrupted, "the snapshot \(path) is cut short") }
      try buffer.withUnsafeMutableBytes { buffer in
        hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        for offset in stride(from: 0, to: n, by: pageSize) {
          pageNumber += 1
          let page = buffer.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self)
          if pageNumber == lockPage && UnsafeBufferPointer(start: page, count: pageSize).allSatisfy({ $0 == 0 }) { continue }
          let opened = target.keys.snapshot.withUnsafeBytes {
            eduhub_page_open($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(UInt8(ascii: "D")), Int64(pageNumber), page, Int32(pageSize))
          }
          guard opened == 0 else {
            throw StorageError(.corrupted, "snapshot page \(pageNumber) of \(path) does not authenticate (tampered or another key)")
          }
          try writer?.write(pageNumber: UInt32(pageNumber), page: UnsafeRawBufferPointer(start: page, count: pageSize))
        }
      }
    }
    guard ConstantTime.equals(Array(Hex.encode(hasher.finish()).utf8), Array(digest.utf8)) else {
      throw StorageError(.corrupted, "the snapshot \(path) does not match the manifest")
    }
    return pageNumber
  }

  /// The restored database's integrity check, change sequence and record count.
  static func check(_ path: String, key: SecretBytes) throws -> (Int64, Int) {
    let database = try EncryptedDatabase.open(path: path, key: .key(key))
    defer { try? database.close() }
    return try database.read { db in
      let result = try String.fetchOne(db, sql: "PRAGMA integrity_check")
      guard result == "ok" else {
        throw StorageError(.corrupted, "the restored database failed its integrity check: \(result ?? "no answer")")
      }
      guard try db.tableExists("store_meta"), try db.tableExists("record") else { return (0, 0) }
      let sequence = try Int64.fetchOne(db, sql: "SELECT value FROM store_meta WHERE name = 'sequence'") ?? 0
      let records = try Int.fetchOne(db, sql: "SELECT count(*) FROM record") ?? 0
      return (sequence, records)
    }
  }
}

/// Writes a database file page by page outside SQLite, each page encrypted as the VFS would.
final class PageWriter {
  let path: String
  private let fd: Int32
  private let key: SecretBytes
  private let pageSize: Int
  private var scratch: [UInt8]
  private var sealed: [UInt8]

  init(path: String, key: SecretBytes, pageSize: Int) throws {
    self.path = path
    self.key = key
    self.pageSize = pageSize
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw StorageError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
    scratch = [UInt8](repeating: 0, count: pageSize)
    sealed = [UInt8](repeating: 0, count: pageSize)
  }

  deinit { close(fd) }

  /// Writes a page image (plaintext; its reserved bytes are ignored).
  func write(pageNumber: UInt32, page: UnsafeRawBufferPointer) throws {
    let size = pageSize
    let rc = key.withUnsafeBytes { key in
      sealed.withUnsafeMutableBytes { out in
        eduhub_page_seal(
          key.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(UInt8(ascii: "D")), Int64(pageNumber),
          page.baseAddress!.assumingMemoryBound(to: UInt8.self), out.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(size))
      }
    }
    guard rc == 0 else { throw StorageError(.io, "cannot encrypt page \(pageNumber)") }
    let written = sealed.withUnsafeBytes { pwrite(fd, $0.baseAddress, size, off_t(Int(pageNumber - 1) * size)) }
    guard written == size else { throw StorageError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
  }

  /// Writes a segment's frame.
  func write(_ frame: BackupSegment.Frame) throws {
    scratch.withUnsafeMutableBytes { out in
      frame.body.withUnsafeBytes { out.copyMemory(from: $0) }
    }
    try scratch.withUnsafeBytes { try write(pageNumber: frame.pageNumber, page: $0) }
  }

  /// Sets the database's size after a commit.
  func truncate(pages: Int) throws {
    guard ftruncate(fd, off_t(pages * pageSize)) == 0 else { throw StorageError(.io, "cannot size \(path)") }
  }

  func finish() throws {
    guard fsync(fd) == 0 else { throw StorageError(.io, "cannot sync \(path)") }
  }
}

extension BackupRestore {
  /// Makes a new, empty backup target at `directory` (`eduhub backup init`): a node ships only to
  /// a target that exists, so an off-site volume that failed to mount is an error, not a backup on
  /// the node's own disk.
  /// - Returns: the public half of the target's drill-signing key (hex), for assessors to pin.
  public static func createTarget(at directory: String, key: SecretBytes) throws -> String {
    if FileManager.default.fileExists(atPath: directory + "/backup.json") {
      throw StorageError(.rejected, "\(directory) already holds a backup target")
    }
    return try BackupTarget(directory: directory, key: key, create: true).info.drillPublicKey
  }

  /// Prunes the target at `directory` to `retentionDays` (see `BackupTarget.pruneBeyond`).
  /// - Returns: the generations pruned.
  /// - Parameter nowMs: the time the window ends (now, unless a test says otherwise).
  public static func prune(from directory: String, key: SecretBytes, retentionDays: Int, nowMs: Int64? = nil) throws -> [String] {
    let target = try BackupTarget(directory: directory, key: key, create: false)
    let lock = try target.lock()
    defer { close(lock) }
    return try target.pruneBeyond(retentionDays: retentionDays, nowMs: nowMs ?? BackupClock.nowMs())
  }
}
