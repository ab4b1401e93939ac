/// Percent-encoding of `grpc-message` values (gRPC over HTTP/2, "Responses").
package enum PercentEncoding {
  /// Encodes every byte outside printable ASCII, and `%` itself, as `%XX`.
  static func encode(_ string: String) -> String {
    var needs = false
    for c in string.utf8 where c < 0x20 || c > 0x7E || c == 0x25 {
      needs = true
      break
    }
    guard needs else { return string }
    let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(string.utf8.count * 3)
    for c in string.utf8 {
      if c < 0x20 || c > 0x7E || c == 0x25 {
        out.append(0x25)
        out.append(hex[Int(c >> 4)])
        out.append(hex[Int(c & 0xF)])
      } else {
        out.append(c)
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes `%XX` sequences; a malformed sequence is kept as it is (the spec asks for leniency).
  package static func decode(_ bytes: some Collection<UInt8>) -> String {
    let input = Array(bytes)
    guard input.contains(0x25) else { return String(decoding: input, as: UTF8.self) }
    var out: [UInt8] = []
    out.reserveCapacity(input.count)
    var index = 0
    while index < input.count {
      if input[index] == 0x25, index + 2 < input.count,
        let high = hexValue(input[index + 1]), let low = hexValue(input[index + 2])
      {
        out.append(high << 4 | low)
        index += 3
      } else {
        out.append(input[index])
        index += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  private static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
  }
}
