/// The `grpc-timeout` header: at most eight ASCII digits and a unit (H, M, S, m, u, n).
enum GRPCTimeout {
  /// Parses a header value into nanoseconds; nil if it is malformed.
  static func parse(_ bytes: UnsafeRawBufferPointer) -> Int64? {
    guard bytes.count >= 2, bytes.count <= 9 else { return nil }
    var value: Int64 = 0
    for index in 0..<(bytes.count - 1) {
      let c = bytes[index]
      guard c >= 0x30, c <= 0x39 else { return nil }
      value = value * 10 + Int64(c - 0x30)
    }
    let nanosPerUnit: Int64
    switch bytes[bytes.count - 1] {
    case UInt8(ascii: "H"): nanosPerUnit = 3_600_000_000_000
    case UInt8(ascii: "M"): nanosPerUnit = 60_000_000_000
    case UInt8(ascii: "S"): nanosPerUnit = 1_000_000_000
    case UInt8(ascii: "m"): nanosPerUnit = 1_000_000
    case UInt8(ascii: "u"): nanosPerUnit = 1_000
    case UInt8(ascii: "n"): nanosPerUnit = 1
    default: return nil
    }
    let (product, overflow) = value.multipliedReportingOverflow(by: nanosPerUnit)
    return overflow ? Int64.max : product
  }

  /// Formats a positive duration with the finest unit whose value fits in eight digits.
  static func format(nanoseconds: Int64) -> String {
    let nanos = max(nanoseconds, 1)
    let units: [(Int64, Character)] = [
      (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"),
      (3_600_000_000_000, "H"),
    ]
    for (size, unit) in units {
      let value = (nanos + size - 1) / size
      if value <= 99_999_999 { return "\(value)\(unit)" }
    }
    return "99999999H"
  }
}
