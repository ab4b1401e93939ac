import EduHubCrypto
import Foundation

/// The keys a backup target is written with, each derived from the one backup key (a 32-byte key
/// file kept away from the node and the target; distinct from the database key, so neither a copy
/// of the node's disk nor of the target opens the other).
struct BackupKeys: Sendable {
  /// Seals the target's logs (generation index and manifests).
  let log: SecretBytes
  /// Seals WAL segments.
  let segment: SecretBytes
  /// Encrypts snapshot pages (the VFS's page format, under this key).
  let snapshot: SecretBytes
  /// Seals the node's bundle (its manifest and keys).
  let bundle: SecretBytes
  /// Signs restore-drill records: an assessor checks them with the public half alone.
  let drills: SigningKey
  /// A value that tells a wrong backup key from a damaged target.
  let check: [UInt8]

  init(_ key: SecretBytes) throws {
    func derive(_ label: String) throws -> SecretBytes {
      SecretBytes(try KeyedHash.hash(Array("eduhub.backup.\(label).v1".utf8), key: key))
    }
    log = try derive("log")
    segment = try derive("segment")
    snapshot = try derive("snapshot")
    bundle = try derive("bundle")
    drills = try SigningKey(seed: try derive("drill-signing"))
    check = try KeyedHash.hash(Array("eduhub.backup.key-check.v1".utf8), key: key)
  }
}

/// `backup.json`, the target's only plaintext file: what it is, how to tell the right key, and the
/// public key that checks restore-drill records. No data, no secret.
struct BackupTargetInfo: Codable, Equatable {
  static let magic = "eduhub-backup"
  static let currentVersion = 1

  var magic: String
  var version: Int
  var pageSize: Int
  /// Hex of the key check value.
  var keyCheck: String
  /// Hex of the Ed25519 public key drill records are signed with.
  var drillPublicKey: String
  var createdMs: Int64
  /// Keyed BLAKE2b (hex, the log key) of the rest: a changed page size or drill key is refused.
  var mac: String = ""

  /// The MAC of this info's other fields under `keys`.
  func computedMAC(_ keys: BackupKeys) throws -> String {
    var unsigned = self
    unsigned.mac = ""
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Hex.encode(try KeyedHash.hash([UInt8](try encoder.encode(unsigned)), key: keys.log))
  }
}
