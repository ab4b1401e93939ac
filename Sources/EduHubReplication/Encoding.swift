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

  // Field stamps. Most fields of a record share a stamp (a new record's all do, an edit's several
  // fields one), so each distinct stamp is written once and each field refers to it:
  //   0x00 0x01, the distinct stamps (count, then time, node, counter each) in the order the fields
  //   first use them, then the fields (count, then number delta and stamp index each), ascending.
  // A stamp repeated per field made stamps half of a person's stored bytes. The older form (count,
  // then number, time, node, counter per field) still decodes: its empty map is the single byte 0x00,
  // so the two-byte mark cannot begin one.

  public static func encode(_ stamps: [Int: FieldStamp]) -> [UInt8] {
    encode(stamps.keys.sorted().map { ($0, stamps[$0]!) })
  }

  /// `encode` for a record whose fields all carry one stamp (a new record): no dictionary.
  public static func encode(_ stamp: FieldStamp, forFields numbers: [Int]) -> [UInt8] {
    var out: [UInt8] = [0, 1, 1]
    out.reserveCapacity(16 + stamp.node.utf8.count + numbers.count * 2)
    appendStamp(stamp, to: &out)
    let sorted = numbers.sorted()
    appendVarint(UInt64(sorted.count), to: &out)
    var previous = 0
    for number in sorted {
      appendVarint(UInt64(truncatingIfNeeded: number &- previous), to: &out)
      out.append(0)
      previous = number
    }
    return out
  }

  /// Fields (ascending) and their stamps, in the compact form.
  static func encode(_ fields: [(number: Int, stamp: FieldStamp)]) -> [UInt8] {
    var distinct: [FieldStamp] = []
    var positions: [FieldStamp: Int] = [:]
    var indexes: [Int] = []
    indexes.reserveCapacity(fields.count)
    for field in fields {
      if let at = positions[field.stamp] {
        indexes.append(at)
      } else {
        positions[field.stamp] = distinct.count
        indexes.append(distinct.count)
        distinct.append(field.stamp)
      }
    }
    var out: [UInt8] = [0, 1]
    appendVarint(UInt64(distinct.count), to: &out)
    for stamp in distinct { appendStamp(stamp, to: &out) }
    appendVarint(UInt64(fields.count), to: &out)
    var previous = 0
    for (field, index) in zip(fields, indexes) {
      appendVarint(UInt64(truncatingIfNeeded: field.number &- previous), to: &out)
      appendVarint(UInt64(index), to: &out)
      previous = field.number
    }
    return out
  }

  public static func decodeStamps(_ bytes: [UInt8]) throws(WireFieldsError) -> [Int: FieldStamp] {
    var stamps: [Int: FieldStamp] = [:]
    try forEachStamp(bytes) { number, stamp in stamps[number] = stamp }
    return stamps
  }

  /// The newest of the stamps in `bytes`, read without building the map (a pulled record that is
  /// new here needs only this, for the clock); nil for none. Throws as `decodeStamps` does.
  public static func newestStamp(_ bytes: [UInt8]) throws(WireFieldsError) -> FieldStamp? {
    var newest: FieldStamp?
    try forEachDistinctStamp(bytes) { stamp in
      if newest.map({ $0 < stamp }) ?? true { newest = stamp }
    }
    return newest
  }

  /// Calls `body` with each field number and its stamp, checking the whole encoding.
  static func forEachStamp(_ bytes: [UInt8], _ body: (Int, FieldStamp) -> Void) throws(WireFieldsError) {
    if isCompact(bytes) {
      let (distinct, fields) = try readCompact(bytes)
      for field in fields { body(field.number, distinct[field.stamp]) }
      return
    }
    var index = 0
    let count = try readVarint(bytes, &index)
    guard count <= 100_000 else { throw WireFieldsError(offset: 0, reason: "\(count) stamps") }
    for _ in 0..<count {
      let number = try readVarint(bytes, &index)
      guard number <= fieldLimit else { throw WireFieldsError(offset: index, reason: "field number \(number) out of range") }
      body(Int(number), try readStamp(bytes, &index))
    }
    guard index == bytes.count else { throw WireFieldsError(offset: index, reason: "trailing bytes") }
  }

  /// Calls `body` with each distinct stamp (the older form: each field's), checking the encoding.
  static func forEachDistinctStamp(_ bytes: [UInt8], _ body: (FieldStamp) -> Void) throws(WireFieldsError) {
    guard isCompact(bytes) else {
      try forEachStamp(bytes) { _, stamp in body(stamp) }
      return
    }
    try readCompact(bytes).stamps.forEach(body)
  }

  /// The compact form's stamps and fields (number, index of its stamp), checked to be the one
  /// encoding `encode` gives their map: fields ascending, every stamp used and listed once, in the
  /// order the fields first use them. (Otherwise a stamp no field carries, in another node's name,
  /// could ride along where only the fields' stamps are checked.)
  private static func readCompact(_ bytes: [UInt8]) throws(WireFieldsError) -> (stamps: [FieldStamp], fields: [(number: Int, stamp: Int)]) {
    var index = 2
    let stampCount = try readVarint(bytes, &index)
    guard stampCount <= 100_000 else { throw WireFieldsError(offset: index, reason: "\(stampCount) distinct stamps") }
    var stamps: [FieldStamp] = []
    // Each stamp takes at least three bytes: no reservation past what the bytes can hold.
    stamps.reserveCapacity(min(Int(stampCount), bytes.count / 3))
    var listed = Set<FieldStamp>()
    for _ in 0..<stampCount {
      let stamp = try readStamp(bytes, &index)
      guard listed.insert(stamp).inserted else { throw WireFieldsError(offset: index, reason: "a stamp listed twice") }
      stamps.append(stamp)
    }
    let count = try readVarint(bytes, &index)
    guard count <= 100_000 else { throw WireFieldsError(offset: index, reason: "\(count) stamps") }
    var fields: [(number: Int, stamp: Int)] = []
    fields.reserveCapacity(min(Int(count), bytes.count / 2))
    var number: UInt64 = 0
    var used = 0
    for position in 0..<count {
      let delta = try readVarint(bytes, &index)
      guard position == 0 || delta > 0, delta <= fieldLimit - number else {
        throw WireFieldsError(offset: index, reason: "field numbers out of order")
      }
      number += delta
      let at = try readVarint(bytes, &index)
      guard at < UInt64(stamps.count) else { throw WireFieldsError(offset: index, reason: "stamp \(at) of \(stamps.count)") }
      guard at <= UInt64(used) else { throw WireFieldsError(offset: index, reason: "stamps not in the order fields first use them") }
      if at == UInt64(used) { used += 1 }
      fields.append((Int(number), Int(at)))
    }
    guard used == stamps.count else { throw WireFieldsError(offset: index, reason: "a stamp no field carries") }
    guard index == bytes.count else { throw WireFieldsError(offset: index, reason: "trailing bytes") }
    return (stamps, fields)
  }

  /// The largest protobuf field number (0 stands for the deletion).
  private static let fieldLimit: UInt64 = 536_870_911

  private static func isCompact(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0 && bytes[1] == 1 }

  private static func appendStamp(_ stamp: FieldStamp, to out: inout [UInt8]) {
    appendVarint(stamp.time.rawValue, to: &out)
    appendString(stamp.node, to: &out)
    appendVarint(stamp.counter, to: &out)
  }

  private static func readStamp(_ bytes: [UInt8], _ index: inout Int) throws(WireFieldsError) -> FieldStamp {
    let time = HLCTimestamp(rawValue: try readVarint(bytes, &index))
    let node = try readString(bytes, &index)
    let counter = try readVarint(bytes, &index)
    guard counter <= VersionVector.counterLimit else {
      throw WireFieldsError(offset: index, reason: "stamp counter \(counter) over the limit")
    }
    return FieldStamp(time: time, node: node, counter: counter)
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
