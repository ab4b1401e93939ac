import SwiftProtobuf
import EduHubCrypto
import Foundation

/// PASETO version 4, purpose `public`: a JSON payload signed with Ed25519, one fixed algorithm and
/// no header field an attacker could use to pick another (https://github.com/paseto-standard).
///
/// `v4.public.` + base64url(message ‖ signature) [+ `.` + base64url(footer)], where the signature
/// covers PAE("v4.public.", message, footer, implicit assertion).
public enum PasetoV4Public {
  static let header = "v4.public."

  /// Signs `message` (the claims, JSON) with `key`; `footer` travels unencrypted and signed.
  public static func sign(message: [UInt8], footer: [UInt8] = [], key: SigningKey) -> String {
    let signature = key.sign(preAuthenticationEncoding([Array(header.utf8), message, footer, []]))
    var token = header + Base64URL.encode(message + signature)
    if !footer.isEmpty { token += "." + Base64URL.encode(footer) }
    return token
  }

  /// The footer of a token, unverified (it names the key to verify with).
  public static func footer(of token: String) -> [UInt8]? {
    let parts = token.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == "v4", parts[1] == "public" else { return parts.count == 3 ? [] : nil }
    return Base64URL.decode(parts[3])
  }

  /// The verified message of `token`; nil for anything that is not a v4.public token signed by
  /// `publicKey` with exactly this footer.
  public static func verify(_ token: String, publicKey: [UInt8]) -> (message: [UInt8], footer: [UInt8])? {
    guard token.hasPrefix(header) else { return nil }
    let parts = token.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3 || parts.count == 4, let body = Base64URL.decode(parts[2]),
      body.count > SigningKey.signatureBytes
    else { return nil }
    let footer: [UInt8]
    if parts.count == 4 {
      guard let decoded = Base64URL.decode(parts[3]), !decoded.isEmpty else { return nil }
      footer = decoded
    } else {
      footer = []
    }
    let message = Array(body.dropLast(SigningKey.signatureBytes))
    let signature = Array(body.suffix(SigningKey.signatureBytes))
    let signed = preAuthenticationEncoding([Array(header.utf8), message, footer, []])
    guard SigningKey.verify(signature: signature, of: signed, publicKey: publicKey) else { return nil }
    return (message, footer)
  }

  /// PAE: the count of pieces, then each piece's length and bytes, lengths as 64-bit little-endian
  /// with the top bit cleared.
  static func preAuthenticationEncoding(_ pieces: [[UInt8]]) -> [UInt8] {
    var out = le64(UInt64(pieces.count))
    for piece in pieces {
      out += le64(UInt64(piece.count))
      out += piece
    }
    return out
  }

  private static func le64(_ value: UInt64) -> [UInt8] {
    (0..<8).map { index in
      var byte = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))
      if index == 7 { byte &= 0x7F }
      return byte
    }
  }
}

/// Unpadded base64url (RFC 4648 §5), as PASETO writes it.
public enum Base64URL {
  public static func encode(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString()
      .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  /// Nil for text with characters outside the alphabet, padding, or an impossible length.
  public static func decode(_ text: some StringProtocol) -> [UInt8]? {
    guard text.utf8.allSatisfy({ byte in
      (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
        || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }), text.utf8.count % 4 != 1 else { return nil }
    var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
    return Data(base64Encoded: standard).map { [UInt8]($0) }
  }
}
