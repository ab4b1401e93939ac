import EduHubCrypto
import Foundation

/// A segment file: the WAL frames one shipping round found, in order. The file is a plaintext header
/// line (what it is and where it goes: no data) and the frames sealed under the segment key with the
/// header as associated data, so a segment renamed into another place or generation fails to open.
///
/// Sealed body, per frame: page number (u32), database size after the frame if it commits a
/// transaction else 0 (u32), the time the shipper saw the transaction committed (ms, i64, commit frames
/// only), and the page image without its reserved bytes. All integers big-endian.
struct BackupSegment: Sendable {
  struct Header: Codable, Equatable {
    var generation: String
    var index: Int
    /// The transaction number the first commit in this segment gets (see `BackupManifestEntry`).
    var firstTransaction: Int64
    var frames: Int
  }

  struct Frame: Sendable {
    var pageNumber: UInt32
    var commitSize: UInt32
    var timeMs: Int64
    /// The page's first `pageSize - reserve` bytes.
    var body: ArraySlice<UInt8>
  }

  static let magic = Array("EDUHUB-SEGMENT 1\n".utf8)
  static let reserve = 40

  var header: Header
  var frames: [Frame]

  /// The segment's file bytes.
  func sealed(key: SecretBytes, pageSize: Int) throws -> [UInt8] {
    let headerLine = Self.magic + Array(try JSONEncoder().encode(header)) + [UInt8(ascii: "\n")]
    let bodySize = pageSize - Self.reserve
    var plain = [UInt8]()
    plain.reserveCapacity(frames.count * (16 + bodySize))
    for frame in frames {
      plain.appendBigEndian(frame.pageNumber)
      plain.appendBigEndian(frame.commitSize)
      plain.appendBigEndian(UInt64(bitPattern: frame.timeMs))
      precondition(frame.body.count == bodySize, "a frame's body is a page without its reserved bytes")
      plain += frame.body
    }
    return headerLine + (try AEAD.seal(plain, associatedData: headerLine, key: key))
  }

  /// Opens a segment file's bytes.
  /// - Throws: `StorageError.corrupted` if it is not a segment, does not authenticate, or is not the
  ///   one `expected` describes.
  static func open(_ bytes: [UInt8], expected: Header, key: SecretBytes, pageSize: Int, name: String) throws -> BackupSegment {
    guard bytes.starts(with: magic), let end = bytes[magic.count...].firstIndex(of: UInt8(ascii: "\n")),
      let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[magic.count..<end])), header == expected
    else { throw StorageError(.corrupted, "segment \(name) is not the one the manifest lists") }
    let headerLine = Array(bytes[0...end])
    guard let plain = try? AEAD.open(Array(bytes[(end + 1)...]), associatedData: headerLine, key: key) else {
      throw StorageError(.corrupted, "segment \(name) does not authenticate (tampered or another key)")
    }
    let bodySize = pageSize - reserve
    let stride = 16 + bodySize
    guard header.frames >= 0, header.frames <= plain.count / stride, plain.count == header.frames * stride else {
      throw StorageError(.corrupted, "segment \(name) holds \(plain.count / max(stride, 1)) frames, not \(header.frames)")
    }
    var frames: [Frame] = []
    frames.reserveCapacity(header.frames)
    var offset = 0
    while offset < plain.count {
      // A page number SQLite could write (1 ... 2^31-2) and a database size it could have.
      let pageNumber = plain.bigEndianWord(at: offset)
      let commitSize = plain.bigEndianWord(at: offset + 4)
      guard pageNumber >= 1, pageNumber < 0x7FFF_FFFF, commitSize < 0x7FFF_FFFF else {
        throw StorageError(.corrupted, "segment \(name) names page \(pageNumber) or size \(commitSize), which no database has")
      }
      frames.append(
        Frame(
          pageNumber: plain.bigEndianWord(at: offset), commitSize: plain.bigEndianWord(at: offset + 4),
          timeMs: Int64(bitPattern: UInt64(plain.bigEndianWord(at: offset + 8)) << 32 | UInt64(plain.bigEndianWord(at: offset + 12))),
          body: plain[(offset + 16)..<(offset + stride)]))
      offset += stride
    }
    return BackupSegment(header: header, frames: frames)
  }
}

extension BackupSegment {
  /// A segment's file name: its index, zero-padded so names sort.
  static func fileName(_ index: Int) -> String {
    let digits = String(index)
    return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".segment"
  }
}

extension Array where Element == UInt8 {
  mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
    Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
  }

  func bigEndianWord(at offset: Int) -> UInt32 {
    withUnsafeBytes { $0.bigEndianWord(at: offset) }
  }
}
