import EduHubCore
import EduHubCrypto
import EduHubPrivacy
import Foundation

/// The claims of an access token (PASETO v4.public payload).
public struct AccessClaims: Sendable, Hashable {
  /// The node that issued the token (also the footer's key id).
  public var issuer: String
  /// The account id.
  public var subject: String
  public var audience: String
  /// Seconds since 1970.
  public var issuedAt: Int64
  public var expiresAt: Int64
  public var tokenID: String
  /// The login session (refresh token family) the token belongs to.
  public var sessionID: String

  func json() -> [UInt8] {
    let object: [String: String] = [
      "iss": issuer, "sub": subject, "aud": audience, "iat": UTCTime.format(issuedAt),
      "exp": UTCTime.format(expiresAt), "jti": tokenID, "sid": sessionID,
    ]
    // Sorted keys: the same claims always sign the same bytes.
    return (try? [UInt8](JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))) ?? []
  }

  init(issuer: String, subject: String, audience: String, issuedAt: Int64, expiresAt: Int64, tokenID: String, sessionID: String) {
    self.issuer = issuer
    self.subject = subject
    self.audience = audience
    self.issuedAt = issuedAt
    self.expiresAt = expiresAt
    self.tokenID = tokenID
    self.sessionID = sessionID
  }

  init?(json: [UInt8]) {
    guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any],
      let issuer = object["iss"] as? String, let subject = object["sub"] as? String,
      let audience = object["aud"] as? String, let iat = (object["iat"] as? String).flatMap(UTCTime.parse),
      let exp = (object["exp"] as? String).flatMap(UTCTime.parse), let tokenID = object["jti"] as? String,
      let sessionID = object["sid"] as? String
    else { return nil }
    self.init(
      issuer: issuer, subject: subject, audience: audience, issuedAt: iat, expiresAt: exp, tokenID: tokenID,
      sessionID: sessionID)
  }
}

/// Why a token was refused. The message is safe to show the caller.
public typealias TokenError = Failure<TokenRefused>
public enum TokenRefused {}

/// Issues access tokens signed with this node's key and verifies tokens of every node whose public
/// key it holds.
public struct AccessTokens: Sendable {
  /// The longest life a token may claim (nodes issue 15 minutes by default; an hour at most).
  public static let longestLifetime: Int64 = 3600
  public let nodeID: String
  let signingKey: SigningKey
  /// Public keys by node id (this node's own included).
  let publicKeys: @Sendable (String) -> [UInt8]?
  public let lifetime: Int64
  public let audience: String
  /// This node's public key (what other nodes verify its tokens with).
  public var publicKey: [UInt8] { signingKey.publicKey }

  /// - Parameter audience: the audience this node accepts and issues by default: the node's own id
  ///   unless given. A token names the one node it is for, so a token a client shows to another
  ///   node (an owned school PC, say) is refused there and is worth nothing anywhere else it might
  ///   be replayed.
  public init(
    nodeID: String, signingKey: SigningKey, lifetimeSeconds: Int64 = 900, audience: String? = nil,
    publicKeys: @escaping @Sendable (String) -> [UInt8]?
  ) {
    self.nodeID = nodeID
    self.signingKey = signingKey
    self.lifetime = lifetimeSeconds
    self.audience = audience ?? nodeID
    let own = signingKey.publicKey
    self.publicKeys = { id in id == nodeID ? own : publicKeys(id) }
  }

  public func issue(subject: String, sessionID: String, audience: String? = nil, now: Int64) -> (token: String, claims: AccessClaims) {
    let claims = AccessClaims(
      issuer: nodeID, subject: subject, audience: audience ?? self.audience, issuedAt: now,
      expiresAt: now + lifetime, tokenID: Base64URL.encode(Random.bytes(12)), sessionID: sessionID)
    let footer = (try? JSONSerialization.data(withJSONObject: ["kid": nodeID])).map { [UInt8]($0) } ?? []
    return (PasetoV4Public.sign(message: claims.json(), footer: footer, key: signingKey), claims)
  }

  /// The claims of a valid token for this audience at `now`.
  public func verify(_ token: String, now: Int64) throws(TokenError) -> AccessClaims {
    guard token.utf8.count <= 4096, let footer = PasetoV4Public.footer(of: token),
      let object = try? JSONSerialization.jsonObject(with: Data(footer)) as? [String: Any],
      let kid = object["kid"] as? String
    else { throw TokenError("the access token is malformed") }
    guard let key = publicKeys(kid) else { throw TokenError("the access token was issued by an unknown node") }
    guard let verified = PasetoV4Public.verify(token, publicKey: key) else {
      throw TokenError("the access token's signature is not valid")
    }
    guard let claims = AccessClaims(json: verified.message), claims.issuer == kid else {
      throw TokenError("the access token's claims are malformed")
    }
    guard claims.audience == audience else { throw TokenError("the access token is for another node: log in here") }
    guard claims.expiresAt > now else { throw TokenError("the access token has expired") }
    guard claims.issuedAt <= now + 300 else { throw TokenError("the access token is issued in the future") }
    // Every node issues tokens for minutes; one that claims a longer life was not made by EduHub.
    guard claims.expiresAt - claims.issuedAt <= Self.longestLifetime else {
      throw TokenError("the access token claims a lifetime longer than any node issues")
    }
    return claims
  }
}

/// `2026-11-30T14:00:00Z` (RFC 3339, UTC, whole seconds) to and from seconds since 1970.
enum UTCTime {
  static func format(_ seconds: Int64) -> String {
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let rest = Int(seconds - days * 86_400)
    // CivilDate counts days in China time (UTC+8).
    let date = CivilDate(chinaTimeAt: seconds - 8 * 3600)
    func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(date)T\(two(rest / 3600)):\(two(rest / 60 % 60)):\(two(rest % 60))Z"
  }

  static func parse(_ text: String) -> Int64? {
    let bytes = Array(text.utf8)
    guard bytes.count == 20, bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54, bytes[13] == 0x3A,
      bytes[16] == 0x3A, bytes[19] == 0x5A
    else { return nil }
    func number(_ range: Range<Int>) -> Int? {
      var value = 0
      for index in range {
        guard bytes[index] >= 0x30, bytes[index] <= 0x39 else { return nil }
        value = value * 10 + Int(bytes[index] - 0x30)
      }
      return value
    }
    guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
      let minute = number(14..<16), let second = number(17..<19), (1...12).contains(month), (1...31).contains(day),
      hour < 24, minute < 60, second < 60
    else { return nil }
    return Int64(days(fromCivil: year, month, day)) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
  }

  // Howard Hinnant's days-from-civil.
  static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
  }
}
