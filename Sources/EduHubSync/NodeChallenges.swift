import EduHubCrypto
import Foundation
import Synchronization

/// Challenges handed to nodes that want to authenticate: each valid once, for a minute, for the
/// node it was issued to.
///
/// Issuing keeps nothing: a challenge carries its node, expiry and nonce under a MAC keyed with a
/// key that lives only in this process, so anonymous callers asking for challenges (for any id,
/// as many as they like) cannot fill a table and lock real nodes out. Only a challenge a node has
/// answered with a good signature is remembered, until it expires, so it cannot be replayed.
final class NodeChallenges: Sendable {
  static let lifetimeMs: Int64 = 60_000
  static let nonceBytes = 16
  static let macBytes = 32
  /// nonce ‖ expiry (8 bytes, big-endian) ‖ MAC.
  static let challengeBytes = nonceBytes + 8 + macBytes

  private let key = SecretBytes(randomCount: 32)
  /// Challenges already answered, with their expiry: filled only by valid signatures.
  private let spent = Mutex<[Data: Int64]>([:])

  /// A fresh challenge for `nodeID`.
  func issue(for nodeID: String, now: Int64) -> (challenge: [UInt8], expiresMs: Int64) {
    let expires = now + Self.lifetimeMs
    let body = Random.bytes(Self.nonceBytes) + Self.bigEndian(expires)
    return (body + mac(body, nodeID: nodeID), expires)
  }

  /// Whether `challenge` was issued by this process to `nodeID` and is unexpired (it may still
  /// have been spent: `spend` after the signature is checked).
  func isValid(_ challenge: [UInt8], for nodeID: String, now: Int64) -> Bool {
    guard challenge.count == Self.challengeBytes else { return false }
    let body = Array(challenge[..<(Self.nonceBytes + 8)])
    guard ConstantTime.equals(mac(body, nodeID: nodeID), Array(challenge[(Self.nonceBytes + 8)...])) else { return false }
    return Self.expiry(of: challenge) > now
  }

  /// Marks a valid, answered `challenge` used: false if it already was (a replay).
  func spend(_ challenge: [UInt8], now: Int64) -> Bool {
    spent.withLock { spent in
      if spent.count >= 1024 { spent = spent.filter { $0.value > now } }
      return spent.updateValue(Self.expiry(of: challenge), forKey: Data(challenge)) == nil
    }
  }

  private func mac(_ body: [UInt8], nodeID: String) -> [UInt8] {
    // The key is 32 bytes and the length fixed: hashing cannot fail.
    (try? KeyedHash.hash(Array("eduhub-challenge:\(nodeID):".utf8) + body, key: key, length: Self.macBytes)) ?? []
  }

  private static func expiry(of challenge: [UInt8]) -> Int64 {
    challenge[nonceBytes..<(nonceBytes + 8)].reduce(Int64(0)) { $0 << 8 | Int64($1) }
  }

  private static func bigEndian(_ value: Int64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) } }

  /// What a node signs: a context string, then the challenge.
  static func signedBytes(_ challenge: [UInt8]) -> [UInt8] { Array("eduhub-node-auth:".utf8) + challenge }
}
