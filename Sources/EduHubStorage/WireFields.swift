/// A protobuf message split by field number, straight from the wire format: no schema needed.
///
/// Each field number maps to the bytes of all its occurrences (tag included), in their order, so
/// a repeated field moves as one unit. Joining writes the fields in ascending number order, which
/// parsers accept (the wire format allows any order) and which makes the result deterministic.
public struct WireFields: Sendable, Hashable {
  public private(set) var fields: [Int: [UInt8]]

  public init() { fields = [:] }

  /// Splits `bytes`.
  /// - Throws: ``WireFieldsError`` for bytes that are not a well-formed protobuf message.
  public init(parsing bytes: [UInt8]) throws(WireFieldsError) {
    var fields: [Int: [UInt8]] = [:]
    var index = 0
    while index < bytes.count {
      let start = index
      let field = try Self.nextField(bytes, &index)
      guard field.number > 0, field.number <= 536_870_911 else {
        throw WireFieldsError(offset: start, reason: "field number \(field.number)")
      }
      fields[field.number, default: []].append(contentsOf: bytes[field.raw])
    }
    self.fields = fields
  }

  /// The field numbers present.
  public var numbers: [Int] { fields.keys.sorted() }

  /// The value of field `number` as bytes, for a length-delimited field (its last occurrence's,
  /// without tag and length); nil when absent or of another wire type.
  public func bytes(_ number: Int) -> ArraySlice<UInt8>? {
    guard let raw = fields[number] else { return nil }
    var index = 0
    var last: ArraySlice<UInt8>?
    while index < raw.count, let field = try? Self.nextField(raw, &index) {
      last = field.wireType == 2 ? raw[field.value] : nil
    }
    return last
  }

  /// The value of field `number` as UTF-8 text (see `bytes`).
  public func text(_ number: Int) -> String? { bytes(number).map { String(decoding: $0, as: UTF8.self) } }

  /// The value of field `number` as an unsigned varint (its last occurrence's); nil when absent or
  /// of another wire type.
  public func varint(_ number: Int) -> UInt64? {
    guard let raw = fields[number] else { return nil }
    var index = 0
    var last: UInt64?
    while index < raw.count, let field = try? Self.nextField(raw, &index) {
      var at = field.value.lowerBound
      last = field.wireType == 0 ? try? Self.varint(raw, &at) : nil
    }
    return last
  }

  public subscript(number: Int) -> [UInt8]? {
    get { fields[number] }
    set { fields[number] = newValue }
  }

  /// The message bytes, fields in ascending number order.
  public func joined() -> [UInt8] {
    var out: [UInt8] = []
    for number in numbers { out += fields[number]! }
    return out
  }

  /// Appends `value` as a protobuf varint.
  @inline(__always)
  public static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
    var value = value
    while value >= 0x80 {
      out.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    out.append(UInt8(value))
  }

  /// Reads a varint at `index`, advancing it.
  public static func varint(_ bytes: [UInt8], _ index: inout Int) throws(WireFieldsError) -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    let start = index
    while index < bytes.count, shift < 64 {
      let byte = bytes[index]
      index += 1
      result |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
    }
    throw WireFieldsError(offset: start, reason: "truncated varint")
  }
}

/// Bytes that are not a protobuf message.
public struct WireFieldsError: Error, Sendable, Hashable, CustomStringConvertible {
  public let offset: Int
  public let reason: String

  public init(offset: Int, reason: String) {
    self.offset = offset
    self.reason = reason
  }
  public var description: String { "malformed protobuf at byte \(offset): \(reason)" }
}

extension WireFields {
  /// The last value of each length-delimited field in `numbers` (as UTF-8 text), read in one pass
  /// without splitting the whole message: what index extractors need, at a fraction of a decode.
  /// - Throws: ``WireFieldsError`` for bytes that are not a protobuf message.
  public static func strings(_ bytes: [UInt8], _ numbers: [Int]) throws(WireFieldsError) -> [Int: String] {
    var found: [Int: String] = [:]
    var index = 0
    while index < bytes.count {
      let field = try nextField(bytes, &index)
      if field.wireType == 2, numbers.contains(field.number) {
        found[field.number] = String(decoding: bytes[field.value], as: UTF8.self)
      }
    }
    return found
  }

}

extension WireFields {
  /// One field as the wire has it.
  public struct Field {
    public let number: Int
    public let wireType: UInt64
    /// The whole field, tag included.
    public let raw: Range<Int>
    /// The value's bytes (for length-delimited fields, without the length).
    public let value: Range<Int>
  }

  /// The field starting at `index` (which moves past it).
  /// - Throws: ``WireFieldsError`` for bytes that are not a protobuf message.
  @inline(__always)
  public static func nextField(_ bytes: [UInt8], _ index: inout Int) throws(WireFieldsError) -> Field {
    let start = index
    let key = try varint(bytes, &index)
    let number = Int(truncatingIfNeeded: key >> 3)
    var valueStart = index
    switch key & 7 {
    case 0: _ = try varint(bytes, &index)
    case 1: index += 8
    case 2:
      let length = try varint(bytes, &index)
      guard length <= UInt64(bytes.count - index) else { throw WireFieldsError(offset: start, reason: "length past the end") }
      valueStart = index
      index += Int(length)
    case 5: index += 4
    default: throw WireFieldsError(offset: start, reason: "wire type \(key & 7)")
    }
    guard index <= bytes.count else { throw WireFieldsError(offset: start, reason: "field past the end") }
    return Field(number: number, wireType: key & 7, raw: start..<index, value: valueStart..<index)
  }
}
