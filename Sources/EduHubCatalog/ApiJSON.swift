import EduHubAPI

/// The JSON of the shared API gateway (`POST /v1/apis/{code}`), and of the examples in the catalog's
/// manuals (so an example is exactly what the gateway answers): JSON text (RFC 8259) of strings,
/// values and whole answers.
package enum ApiJSON {
  private static let hex = Array("0123456789abcdef".utf8)

  /// `text` as a JSON string: quotes, backslashes and control characters escaped; the rest as UTF-8.
  package static func appendString(_ text: String, to out: inout [UInt8]) {
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
  package static func appendValue(_ value: Eduhub_Catalog_V1_Value, to out: inout [UInt8]) {
    switch value.kind {
    case .integer(let number): out += Array(String(number).utf8)
    case .timestampMs(let ms): out += Array(String(ms).utf8)
    case .boolean(let flag): out += Array((flag ? "true" : "false").utf8)
    case .text(let text), .decimal(let text), .date(let text): appendString(text, to: &out)
    case .null, .none: out += Array("null".utf8)
    }
  }

  /// The JSON form of an answer: each row an object by column, in column order.
  ///
  /// Written by hand: Foundation's JSONSerialization bridges every value through NSDictionary and a
  /// dynamic cast, which was half of a call's CPU. The grammar is RFC 8259's; strings are escaped by
  /// `appendString`.
  package static func answer(_ response: Eduhub_Sharing_V1_CallApiResponse) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(64 + response.rows.count * 32 * max(1, response.columns.count))
    let columns = response.columns.map { name -> [UInt8] in
      var quoted: [UInt8] = []
      Self.appendString(name, to: &quoted)
      return quoted
    }
    out += Array(#"{"columns":["#.utf8)
    for (index, column) in columns.enumerated() {
      if index > 0 { out.append(UInt8(ascii: ",")) }
      out += column
    }
    out += Array(#"],"rows":["#.utf8)
    for (rowIndex, row) in response.rows.enumerated() {
      if rowIndex > 0 { out.append(UInt8(ascii: ",")) }
      out.append(UInt8(ascii: "{"))
      for (index, (column, value)) in zip(columns, row.values).enumerated() {
        if index > 0 { out.append(UInt8(ascii: ",")) }
        out += column
        out.append(UInt8(ascii: ":"))
        Self.appendValue(value, to: &out)
      }
      out.append(UInt8(ascii: "}"))
    }
    out += Array(#"],"suppressed_groups":\#(response.suppressedGroups),"truncated":\#(response.truncated)}"#.utf8)
    return out
  }
}
