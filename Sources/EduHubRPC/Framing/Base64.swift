import Foundation

/// Base64 for `-bin` metadata: padded on the way out, padded or not on the way in.
enum Base64 {
  static func encode(_ bytes: [UInt8]) -> [UInt8] {
    Array(Data(bytes).base64EncodedString().utf8)
  }

  static func decode(_ bytes: some Collection<UInt8>) -> [UInt8]? {
    var text = String(decoding: bytes, as: UTF8.self)
    let remainder = text.utf8.count % 4
    if remainder == 1 { return nil }
    if remainder > 0 { text += String(repeating: "=", count: 4 - remainder) }
    return Data(base64Encoded: text).map { Array($0) }
  }
}
