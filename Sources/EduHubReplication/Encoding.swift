import EduHubStorage

/// Compact binary forms of vectors and stamps for the record store (varints and length-prefixed
/// UTF-8, in canonical order, so equal values encode to equal bytes).
public enum ReplicationEncoding {
  public static func encode(_ vector: VersionVector) -> [UInt8] {
    var out: [UInt8] = []
    appendVarint(UInt64(vector.entries.count), to: &out)
    for entry in vector.entries {
      appendString(entry.node, to: &out)
      appendVarint(entry.counter, to: &out)
    }
    return out
  }

  public static func decodeVector(_ bytes: [UInt8]) throws(WireFieldsError) -> VersionVector {
    var index = 0
    let count = try readVarint(bytes, &index)
    guard count <= 100_000 else { throw WireFieldsError(offset: 0, reason: "vector of \(count) entries") }
    var counters: [String: UInt64] = [:]
    for _ in 0..<count {
      let node = try readString(bytes, &index)
      let counter = try readVarint(bytes, &index)
      guard counter <= VersionVector.counterLimit else {
        throw WireFieldsError(offset: index, reason: "version counter \(counter) over the limit")
      }
      counters[node] = counter
    }
    guard index == bytes.count else { throw WireFieldsError(offset: index, reason: "trailing bytes") }
    return VersionVector(counters)
  }

  public static func encode(_ stamps: [Int: FieldStamp]) -> [UInt8] {
    var out: [UInt8] = []
    appendVarint(UInt64(stamps.count), to: &out)
    for number in stamps.keys.sorted() {
      let stamp = stamps[number]!
      appendVarint(UInt64(number), to: &out)
      appendVarint(stamp.time.rawValue, to: &out)
      appendString(stamp.node, to: &out)
      appendVarint(stamp.counter, to: &out)
    }
    return out
  }

  /// `encode` for a record whose fields all carry one stamp (a new record): no dictionary.
  public static func encode(_ stamp: FieldStamp, forFields numbers: [Int]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(numbers.count * (12 + stamp.node.utf8.count))
    appendVarint(UInt64(numbers.count), to: &out)
    for number in numbers.sorted() {
      appendVarint(UInt64(number), to: &out)
      appendVarint(stamp.time.rawValue, to: &out)
      appendString(stamp.node, to: &out)
      appendVarint(stamp.counter, to: &out)
    }
    return out
  }

  public static func decodeStamps(_ bytes: [UInt8]) throws(WireFieldsError) -> [Int: FieldStamp] {
    var index = 0
    let count = try readVarint(bytes, &index)
    guard count <= 100_000 else { throw WireFieldsError(offset: 0, reason: "\(count) stamps") }
    var stamps: [Int: FieldStamp] = [:]
    for _ in 0..<count {
      let number = Int(truncatingIfNeeded: try readVarint(bytes, &index))
      let time = HLCTimestamp(rawValue: try readVarint(bytes, &index))
      let node = try readString(bytes, &index)
      let counter = try readVarint(bytes, &index)
      guard counter <= VersionVector.counterLimit else {
        throw WireFieldsError(offset: index, reason: "stamp counter \(counter) over the limit")
      }
      stamps[number] = FieldStamp(time: time, node: node, counter: counter)
    }
    guard index == bytes.count else { throw WireFieldsError(offset: index, reason: "trailing bytes") }
    return stamps
  }

  static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
    WireFields.appendVarint(value, to: &out)
  }

  static func appendString(_ string: String, to out: inout [UInt8]) {
    let utf8 = Array(string.utf8)
    appendVarint(UInt64(utf8.count), to: &out)
    out += utf8
  }

  static func readVarint(_ bytes: [UInt8], _ index: inout Int) throws(WireFieldsError) -> UInt64 {
    try WireFields.varint(bytes, &index)
  }

  static func readString(_ bytes: [UInt8], _ index: inout Int) throws(WireFieldsError) -> String {
    let length = try readVarint(bytes, &index)
    guard length <= UInt64(bytes.count - index) else { throw WireFieldsError(offset: index, reason: "string past the end") }
    let string = String(decoding: bytes[index..<(index + Int(length))], as: UTF8.self)
    index += Int(length)
    return string
  }
}
