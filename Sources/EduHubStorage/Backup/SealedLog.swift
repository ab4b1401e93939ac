import EduHubCrypto
import Foundation

/// An append-only file of entries, one line each: the entry as JSON, sealed (XChaCha20-Poly1305 under
/// the target's log key, the log's name and the line's number bound in), base64. Each entry names the
/// BLAKE2b of the line before it, so a line changed, removed, reordered or moved to another log fails
/// to read. A last line cut short (a crash while appending) is no entry: readers skip it and the
/// next append replaces it.
struct SealedLog<Entry: Codable> {
  let path: String
  let name: String
  private let key: SecretBytes
  private(set) var entries: [Entry] = []
  private var lastLineHash: [UInt8] = Array(repeating: 0, count: 32)
  /// Bytes of complete lines: where the next one goes.
  private var validLength = 0

  private struct Line<Body: Codable>: Codable {
    var previous: String
    var entry: Body
  }

  /// Reads the log at `path` (none yet is an empty log).
  /// - Throws: `StorageError.corrupted` naming the first line that does not verify.
  init(path: String, name: String, key: SecretBytes) throws {
    self.path = path
    self.name = name
    self.key = key
    guard let bytes = try TargetFiles.read(path) else { return }
    var start = 0
    var number = 0
    while let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
      number += 1
      let line = Array(bytes[start..<end])
      guard let decoded = Data(base64Encoded: Data(line)),
        let plain = try? AEAD.open([UInt8](decoded), associatedData: Self.associatedData(name, number), key: key),
        let parsed = try? JSONDecoder().decode(Line<Entry>.self, from: Data(plain)),
        parsed.previous == Hex.encode(lastLineHash)
      else {
        throw StorageError(.corrupted, "\(path): line \(number) does not verify (tampered, reordered or from another target)")
      }
      entries.append(parsed.entry)
      lastLineHash = KeyedHash.digest(line)
      start = end + 1
    }
    validLength = start
  }

  /// Appends `entry` and makes it durable before returning.
  mutating func append(_ entry: Entry) throws {
    let number = entries.count + 1
    let plain = try JSONEncoder().encode(Line(previous: Hex.encode(lastLineHash), entry: entry))
    let sealed = try AEAD.seal([UInt8](plain), associatedData: Self.associatedData(name, number), key: key)
    let line = Array(Data(sealed).base64EncodedString().utf8)
    let fd = try TargetFiles.openForWriting(path)
    defer { close(fd) }
    // Whatever follows the last complete line is a torn append: it goes.
    guard ftruncate(fd, off_t(validLength)) == 0 else { throw StorageError(.io, "cannot write \(path)") }
    let written = (line + [UInt8(ascii: "\n")]).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(validLength)) }
    guard written == line.count + 1, fsync(fd) == 0 else { throw StorageError(.io, "cannot write \(path)") }
    if validLength == 0 { TargetFiles.syncDirectory(of: path) }
    validLength += line.count + 1
    lastLineHash = KeyedHash.digest(line)
    entries.append(entry)
  }

  private static func associatedData(_ name: String, _ number: Int) -> [UInt8] {
    Array("eduhub.backup.\(name):\(number)".utf8)
  }
}
