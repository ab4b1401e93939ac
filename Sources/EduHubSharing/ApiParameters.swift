/// A shared-API call's JSON parameters read without Foundation's JSONDecoder for the common shape:
/// one flat object whose members are plain strings (no escapes), integers, booleans or null. A body
/// of any other shape (escapes, fractions, exponents, nesting, a repeated member, bad JSON) gets nil
/// and is read by `ApiGateway.parameters`' JSONDecoder, so both give the same answer.
///
/// Written by hand: JSONDecoder's generic decoding was a fifth of a point lookup's CPU on the
/// gateway, and a point lookup's body is `{"id": "S0004242"}`.
enum ApiParameters {
  static func flat(_ body: [UInt8]) -> [String: String]? {
    var index = 0
    func skipSpace() {
      while index < body.count, body[index] == 0x20 || body[index] == 0x0A || body[index] == 0x0D || body[index] == 0x09 { index += 1 }
    }
    /// A string with no backslash and no control character, as UTF-8 checked by String.
    func string() -> String? {
      guard index < body.count, body[index] == UInt8(ascii: "\"") else { return nil }
      let start = index + 1
      var end = start
      while end < body.count, body[end] != UInt8(ascii: "\"") {
        if body[end] == UInt8(ascii: "\\") || body[end] < 0x20 { return nil }
        end += 1
      }
      guard end < body.count else { return nil }
      index = end + 1
      return String(validating: body[start..<end], as: UTF8.self)
    }
    func literal(_ word: String) -> Bool {
      let bytes = Array(word.utf8)
      guard index + bytes.count <= body.count, body[index..<(index + bytes.count)].elementsEqual(bytes) else { return false }
      index += bytes.count
      return true
    }
    /// An integer as JSON writes it (no leading zero, no fraction or exponent) that fits Int64.
    func integer() -> String? {
      let start = index
      if index < body.count, body[index] == UInt8(ascii: "-") { index += 1 }
      let digits = index
      while index < body.count, body[index] >= UInt8(ascii: "0"), body[index] <= UInt8(ascii: "9") { index += 1 }
      guard index > digits, index - digits == 1 || body[digits] != UInt8(ascii: "0") else { return nil }
      if index < body.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(body[index]) { return nil }
      guard let number = Int64(String(decoding: body[start..<index], as: UTF8.self)) else { return nil }
      return String(number)
    }
    var result: [String: String] = [:]
    var seen: Set<String> = []
    skipSpace()
    guard index < body.count, body[index] == UInt8(ascii: "{") else { return nil }
    index += 1
    skipSpace()
    if index < body.count, body[index] == UInt8(ascii: "}") {
      index += 1
    } else {
      while true {
        skipSpace()
        guard let name = string(), seen.insert(name).inserted else { return nil }
        skipSpace()
        guard index < body.count, body[index] == UInt8(ascii: ":") else { return nil }
        index += 1
        skipSpace()
        guard index < body.count else { return nil }
        switch body[index] {
        case UInt8(ascii: "\""):
          guard let value = string() else { return nil }
          result[name] = value
        case UInt8(ascii: "t"):
          guard literal("true") else { return nil }
          result[name] = "true"
        case UInt8(ascii: "f"):
          guard literal("false") else { return nil }
          result[name] = "false"
        case UInt8(ascii: "n"):
          guard literal("null") else { return nil }
        default:
          guard let value = integer() else { return nil }
          result[name] = value
        }
        skipSpace()
        guard index < body.count else { return nil }
        if body[index] == UInt8(ascii: ",") {
          index += 1
          continue
        }
        guard body[index] == UInt8(ascii: "}") else { return nil }
        index += 1
        break
      }
    }
    skipSpace()
    return index == body.count ? result : nil
  }
}
