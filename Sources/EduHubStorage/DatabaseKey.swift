import EduHubCrypto
import Foundation

/// Where a database's key comes from.
public enum DatabaseKeySource: Sendable {
  /// A 32-byte key file (mode 0600).
  case keyFile(String)
  /// A passphrase, stretched with Argon2id and the salt kept in the key metadata.
  case passphrase(String)
  /// A key already in memory (tests, rekeying).
  case key(SecretBytes)
}

/// What is stored next to a database (`<db>.eduhub-key`) to open it: no secret, only how to derive
/// the key and a check value that tells a wrong key from a damaged file.
struct KeyMetadata: Codable, Equatable {
  static let magic = "eduhub-encrypted-sqlite"
  static let currentVersion = 1

  var magic: String
  var version: Int
  /// "file", "passphrase" or "raw": how the key was given when the database was made.
  var source: String
  /// Argon2id salt and limits, for passphrases.
  var salt: [UInt8]
  var opsLimit: UInt64
  var memLimit: Int
  /// Keyed BLAKE2b of a constant under the database key.
  var keyCheck: [UInt8]
  var pageSize: Int

  static func path(for database: String) -> String { database + ".eduhub-key" }

  /// The key check value of `key`.
  static func check(for key: SecretBytes) throws -> [UInt8] {
    try KeyedHash.hash(Array("eduhub.database.key-check.v1".utf8), key: key)
  }

  func write(to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    let temporary = path + ".tmp"
    guard FileManager.default.createFile(atPath: temporary, contents: data) else {
      throw StorageError(.io, "cannot write key metadata \(path)")
    }
    // Atomic replace, so a crash never leaves a database without readable metadata.
    guard rename(temporary, path) == 0 else { throw StorageError(.io, "cannot write key metadata \(path)") }
  }

  static func read(from path: String) throws -> KeyMetadata {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw StorageError(.notOurs, "not an EduHub database: key metadata \(path) is missing")
    }
    guard let metadata = try? JSONDecoder().decode(KeyMetadata.self, from: data), metadata.magic == magic else {
      throw StorageError(.notOurs, "not an EduHub database: \(path) is not EduHub key metadata")
    }
    guard metadata.version == currentVersion else {
      throw StorageError(.notOurs, "key metadata \(path) has version \(metadata.version); this EduHub reads \(currentVersion)")
    }
    return metadata
  }

  /// The key `source` gives for this database.
  func key(from source: DatabaseKeySource) throws -> SecretBytes {
    switch source {
    case .keyFile(let path):
      do { return try KeyFile.read(from: path) } catch { throw StorageError(.io, error.message) }
    case .passphrase(let passphrase):
      return try PasswordHash.deriveKey(
        from: passphrase, salt: salt, limits: PasswordHash.Limits(opsLimit: opsLimit, memLimit: memLimit))
    case .key(let key):
      return key
    }
  }

  /// New metadata for a database to be keyed by `source`, and its key.
  static func make(for source: DatabaseKeySource, pageSize: Int, limits: PasswordHash.Limits) throws
    -> (KeyMetadata, SecretBytes)
  {
    var metadata = KeyMetadata(
      magic: magic, version: currentVersion, source: "raw", salt: [], opsLimit: 0, memLimit: 0, keyCheck: [],
      pageSize: pageSize)
    switch source {
    case .keyFile: metadata.source = "file"
    case .passphrase:
      metadata.source = "passphrase"
      metadata.salt = Random.bytes(PasswordHash.saltBytes)
      metadata.opsLimit = limits.opsLimit
      metadata.memLimit = limits.memLimit
    case .key: metadata.source = "raw"
    }
    let key = try metadata.key(from: source)
    metadata.keyCheck = try check(for: key)
    return (metadata, key)
  }
}
