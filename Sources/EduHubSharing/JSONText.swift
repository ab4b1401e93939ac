import EduHubAPI

/// JSON text (RFC 8259) of strings and catalog values, for the HTTPS/JSON endpoints' answers.
enum JSONText {
  private static let hex = Array("0123456789abcdef".utf8)

  /// `text` as a JSON string: quotes, backslashes and control characters escaped; the rest as UTF-8.
  static func appendString(_ text: String, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
      case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
      case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
      case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
      case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
      case 0..<0x20, 0x7F:
        out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
      default: out.append(byte)
      }
    }
    out.append(UInt8(ascii: "\""))
  }

  /// A value as the JSON endpoints give it: integers and timestamps as numbers, booleans, null;
  /// decimals and dates as strings (no binary rounding), text as strings.
  static func appendValue(_ value: Eduhub_Catalog_V1_Value, to out: inout [UInt8]) {
    switch value.kind {
    case .integer(let number): out += Array(String(number).utf8)
    case .timestampMs(let ms): out += Array(String(ms).utf8)
    case .boolean(let flag): out += Array((flag ? "true" : "false").utf8)
    case .text(let text), .decimal(let text), .date(let text): appendString(text, to: &out)
    case .null, .none: out += Array("null".utf8)
    }
  }
}
