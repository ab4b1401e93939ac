import CEduHubSQLiteVFS
import EduHubCrypto
import Foundation

/// The header of a WAL file (SQLite's format: https://www.sqlite.org/fileformat.html#the_write_ahead_log).
/// One incarnation of the WAL is told by its salts: a restart after a full checkpoint adds one to
/// the first salt and to the checkpoint sequence, draws a new second salt, and writes frames from
/// the start again.
struct WALHeader: Equatable, Sendable {
  static let size = 32
  static let frameHeaderSize = 24

  var pageSize: Int
  var checkpoint: UInt32
  var salt1: UInt32
  var salt2: UInt32
  /// The checksum the first frame's chains from.
  var sum1: UInt32
  var sum2: UInt32
  /// Whether checksum words are big-endian (the magic's low bit).
  var bigEndian: Bool

  /// Parses and checks a header; nil if it is not a valid one (an empty or fresh file).
  init?(_ bytes: UnsafeRawBufferPointer) {
    guard bytes.count >= Self.size else { return nil }
    let magic = bytes.bigEndianWord(at: 0)
    guard magic & 0xFFFF_FFFE == 0x377F_0682 else { return nil }
    bigEndian = magic & 1 == 1
    pageSize = Int(bytes.bigEndianWord(at: 8))
    checkpoint = bytes.bigEndianWord(at: 12)
    salt1 = bytes.bigEndianWord(at: 16)
    salt2 = bytes.bigEndianWord(at: 20)
    sum1 = bytes.bigEndianWord(at: 24)
    sum2 = bytes.bigEndianWord(at: 28)
    var check = (UInt32(0), UInt32(0))
    WALChecksum.add(UnsafeRawBufferPointer(rebasing: bytes[0..<24]), bigEndian: bigEndian, to: &check)
    guard check == (sum1, sum2) else { return nil }
  }
}

/// Where shipping stands in a WAL: the incarnation (salts and checkpoint sequence), how many of
/// its frames are shipped, and the running checksum after the last of them, which the next frame
/// must chain from. Kept in every manifest entry, so a shipper killed at any point resumes exactly.
struct WALCursor: Codable, Equatable, Sendable {
  var salt1: UInt32
  var salt2: UInt32
  var checkpoint: UInt32
  /// Frames of this incarnation already shipped (the next is frame `frames + 1`).
  var frames: Int
  var sum1: UInt32
  var sum2: UInt32
  /// The shipper backfilled every frame into the database after shipping them all, so the next
  /// write may restart the WAL: an incarnation one later, starting from its first frame, follows on.
  var restartAllowed = false
  /// No incarnation is pinned yet (a node stopped cleanly, its WAL gone): the first one found is
  /// adopted from its first frame.
  var adopt = false

  /// The start of the incarnation `header` describes.
  init(start header: WALHeader) {
    salt1 = header.salt1
    salt2 = header.salt2
    checkpoint = header.checkpoint
    frames = 0
    sum1 = header.sum1
    sum2 = header.sum2
  }

  /// A cursor that adopts whatever incarnation comes next.
  static var adoptNext: WALCursor {
    var cursor = WALCursor(salt1: 0, salt2: 0, checkpoint: 0, frames: 0, sum1: 0, sum2: 0)
    cursor.adopt = true
    return cursor
  }

  init(salt1: UInt32, salt2: UInt32, checkpoint: UInt32, frames: Int, sum1: UInt32, sum2: UInt32) {
    self.salt1 = salt1
    self.salt2 = salt2
    self.checkpoint = checkpoint
    self.frames = frames
    self.sum1 = sum1
    self.sum2 = sum2
  }

  /// Whether `header` is this cursor's incarnation, or one that may follow it without a gap.
  func continues(into header: WALHeader) -> WALCursor? {
    if adopt { return WALCursor(start: header) }
    if header.salt1 == salt1 && header.salt2 == salt2 && header.checkpoint == checkpoint { return self }
    if restartAllowed && header.checkpoint == checkpoint &+ 1 && header.salt1 == salt1 &+ 1 {
      return WALCursor(start: header)
    }
    return nil
  }
}

/// One WAL frame: a page image as SQLite wrote it (plaintext, reserved bytes zero) and, for the
/// last frame of a transaction, the database's size in pages after it.
struct WALFrame: Sendable {
  var pageNumber: UInt32
  /// Non-zero only on a commit frame.
  var commitSize: UInt32
  var page: [UInt8]
}

/// SQLite's WAL checksum: two 32-bit sums over 32-bit words, each adding the other.
enum WALChecksum {
  static func add(_ bytes: UnsafeRawBufferPointer, bigEndian: Bool, to sums: inout (UInt32, UInt32)) {
    var (s1, s2) = sums
    var offset = 0
    while offset + 8 <= bytes.count {
      let x0 = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
      let x1 = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
      let w0 = bigEndian ? UInt32(bigEndian: x0) : UInt32(littleEndian: x0)
      let w1 = bigEndian ? UInt32(bigEndian: x1) : UInt32(littleEndian: x1)
      s1 = s1 &+ w0 &+ s2
      s2 = s2 &+ w1 &+ s1
      offset += 8
    }
    sums = (s1, s2)
  }
}

/// Reads the committed frames of a node's WAL, outside SQLite: each frame's header checked against
/// the incarnation's salts and the checksum chain, its page decrypted with the database key (a
/// torn or stale frame ends the valid part, as in SQLite's own recovery).
final class WALReader {
  let path: String
  let pageSize: Int
  private let key: SecretBytes
  private var scratch: [UInt8]

  /// - Parameters:
  ///   - databasePath: the database's path; the WAL is beside it.
  ///   - key: the database key (pages in the WAL are encrypted with it).
  init(databasePath: String, key: SecretBytes, pageSize: Int = EncryptedDatabase.pageSize) {
    path = databasePath + "-wal"
    self.pageSize = pageSize
    self.key = key
    scratch = [UInt8](repeating: 0, count: WALHeader.frameHeaderSize + pageSize)
  }

  /// The WAL's header, or nil if there is no valid one (no WAL, or an empty one).
  func header() throws -> WALHeader? {
    try Self.header(at: path)
  }

  /// The header of the WAL at `path`, or nil if there is no valid one.
  static func header(at path: String) throws -> WALHeader? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      if errno == ENOENT { return nil }
      throw StorageError(.io, "cannot open \(path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: WALHeader.size)
    let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, WALHeader.size, 0) }
    guard n == WALHeader.size else { return nil }
    return bytes.withUnsafeBytes { WALHeader($0) }
  }

  /// The committed frames after `cursor` in the WAL's current incarnation, which `cursor` must be
  /// in (see `WALCursor.continues`), up to `limit` transactions' worth of frames: frames of a
  /// transaction whose commit frame is not (yet) there are not returned.
  /// - Returns: the frames, and the cursor after the last of them.
  /// - Parameter keep: false to only find where the committed frames end (no page is kept).
  func committedFrames(after cursor: WALCursor, limit: Int = .max, keep: Bool = true) throws -> (frames: [WALFrame], cursor: WALCursor) {
    guard let header = try header(), header.salt1 == cursor.salt1, header.salt2 == cursor.salt2 else {
      return ([], cursor)
    }
    guard header.pageSize == pageSize else {
      throw StorageError(.notOurs, "\(path) has page size \(header.pageSize), not \(pageSize)")
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return ([], cursor) }
    defer { close(fd) }
    // The node commits with synchronous=NORMAL: its WAL reaches the disk at checkpoints. What is
    // shipped must not be lost by the node in a power cut (a target holding transactions the node
    // forgot would mix two histories), so the WAL is made durable before frames to ship are read.
    // Only finding the end needs no sync (and is done with the node's writer held).
    if keep { fdatasync(fd) }
    let frameSize = WALHeader.frameHeaderSize + pageSize
    var frames: [WALFrame] = []
    var pending: [WALFrame] = []
    var committed = cursor
    var sums = (cursor.sum1, cursor.sum2)
    var index = cursor.frames
    var found = 0
    while found < limit {
      let offset = off_t(WALHeader.size + index * frameSize)
      let n = scratch.withUnsafeMutableBytes { pread(fd, $0.baseAddress, frameSize, offset) }
      guard n == frameSize else { break }
      guard let frame = try decode(index: index, header: header, sums: &sums) else { break }
      index += 1
      if keep { pending.append(frame) }
      if frame.commitSize != 0 {
        frames += pending
        found = index - cursor.frames
        pending.removeAll(keepingCapacity: true)
        committed.frames = index
        committed.sum1 = sums.0
        committed.sum2 = sums.1
        committed.restartAllowed = false
      }
    }
    return (frames, committed)
  }

  /// Whether the WAL still holds, where `cursor` says shipping stands, the frame shipped last (its
  /// salts and running checksum): false when the node lost frames already shipped (a power cut
  /// before its WAL reached the disk) or the WAL was rewritten behind the shipper.
  func stillHolds(_ cursor: WALCursor) throws -> Bool {
    guard !cursor.adopt, let header = try header(), header.salt1 == cursor.salt1, header.salt2 == cursor.salt2 else { return true }
    guard cursor.frames > 0 else { return (header.sum1, header.sum2) == (cursor.sum1, cursor.sum2) }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var frameHeader = [UInt8](repeating: 0, count: WALHeader.frameHeaderSize)
    let offset = off_t(WALHeader.size + (cursor.frames - 1) * (WALHeader.frameHeaderSize + pageSize))
    guard frameHeader.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, offset) }) == WALHeader.frameHeaderSize else { return false }
    return frameHeader.withUnsafeBytes { bytes in
      bytes.bigEndianWord(at: 8) == cursor.salt1 && bytes.bigEndianWord(at: 12) == cursor.salt2
        && bytes.bigEndianWord(at: 16) == cursor.sum1 && bytes.bigEndianWord(at: 20) == cursor.sum2
    }
  }

  /// The WAL file's size in frames (0 if there is none).
  func sizeInFrames() -> Int {
    var info = stat()
    guard stat(path, &info) == 0, info.st_size > WALHeader.size else { return 0 }
    return (Int(info.st_size) - WALHeader.size) / (WALHeader.frameHeaderSize + pageSize)
  }

  /// The frame in `scratch` at `index` (from 0), if it belongs to the incarnation and chains from
  /// `sums` (updated); nil where the valid part of the WAL ends.
  private func decode(index: Int, header: WALHeader, sums: inout (UInt32, UInt32)) throws -> WALFrame? {
    try scratch.withUnsafeMutableBytes { frame -> WALFrame? in
      let pageNumber = UnsafeRawBufferPointer(frame).bigEndianWord(at: 0)
      let commitSize = UnsafeRawBufferPointer(frame).bigEndianWord(at: 4)
      guard pageNumber != 0, UnsafeRawBufferPointer(frame).bigEndianWord(at: 8) == header.salt1,
        UnsafeRawBufferPointer(frame).bigEndianWord(at: 12) == header.salt2
      else { return nil }
      let page = UnsafeMutableRawBufferPointer(rebasing: frame[WALHeader.frameHeaderSize...])
      let opened = key.withUnsafeBytes { key in
        eduhub_page_open(
          key.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(UInt8(ascii: "W")), Int64(index),
          page.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(pageSize))
      }
      guard opened == 0 else { return nil }
      var next = sums
      WALChecksum.add(UnsafeRawBufferPointer(rebasing: frame[0..<8]), bigEndian: header.bigEndian, to: &next)
      WALChecksum.add(UnsafeRawBufferPointer(page), bigEndian: header.bigEndian, to: &next)
      guard next == (UnsafeRawBufferPointer(frame).bigEndianWord(at: 16), UnsafeRawBufferPointer(frame).bigEndianWord(at: 20))
      else { return nil }
      sums = next
      return WALFrame(pageNumber: pageNumber, commitSize: commitSize, page: Array(page))
    }
  }
}

extension UnsafeRawBufferPointer {
  /// The big-endian 32-bit word at `offset`.
  func bigEndianWord(at offset: Int) -> UInt32 {
    UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
  }
}
