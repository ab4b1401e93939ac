import EduHubCrypto
import Foundation
import Synchronization

/// Challenges handed to nodes that want to authenticate: each valid once, for a minute, for the
/// node it was issued to. Kept in memory: a node answers the upstream that asked.
final class NodeChallenges: Sendable {
  struct Outstanding {
    let nodeID: String
    let expiresMs: Int64
  }

  static let lifetimeMs: Int64 = 60_000
  static let limit = 10_000
  private let outstanding = Mutex<[Data: Outstanding]>([:])

  /// A fresh challenge for `nodeID`, or nil when too many are outstanding (a flood).
  func issue(for nodeID: String, now: Int64) -> (challenge: [UInt8], expiresMs: Int64)? {
    let challenge = Random.bytes(32)
    let expires = now + Self.lifetimeMs
    let issued = outstanding.withLock { map -> Bool in
      if map.count >= Self.limit { map = map.filter { $0.value.expiresMs > now } }
      guard map.count < Self.limit else { return false }
      map[Data(challenge)] = Outstanding(nodeID: nodeID, expiresMs: expires)
      return true
    }
    return issued ? (challenge, expires) : nil
  }

  /// Takes `challenge` back (it is valid once): true if it was issued to `nodeID` and is unexpired.
  func redeem(_ challenge: [UInt8], for nodeID: String, now: Int64) -> Bool {
    guard let found = outstanding.withLock({ $0.removeValue(forKey: Data(challenge)) }) else { return false }
    return found.nodeID == nodeID && found.expiresMs > now
  }

  /// What a node signs: a context string, then the challenge.
  static func signedBytes(_ challenge: [UInt8]) -> [UInt8] { Array("eduhub-node-auth:".utf8) + challenge }
}
