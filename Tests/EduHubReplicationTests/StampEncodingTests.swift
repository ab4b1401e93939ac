import EduHubReplication
import EduHubStorage
import PropertyBased
import Testing

/// The compact stamp form (each distinct stamp once, fields referring to it) and the older one
/// (a stamp per field) that stores and peers may still hold.
@Suite("Field stamp encoding")
struct StampEncodingTests {
  /// The older form, written here as earlier builds wrote it.
  static func olderForm(_ stamps: [Int: FieldStamp]) -> [UInt8] {
    var out: [UInt8] = []
    WireFields.appendVarint(UInt64(stamps.count), to: &out)
    for number in stamps.keys.sorted() {
      let stamp = stamps[number]!
      WireFields.appendVarint(UInt64(number), to: &out)
      WireFields.appendVarint(stamp.time.rawValue, to: &out)
      WireFields.appendVarint(UInt64(stamp.node.utf8.count), to: &out)
      out += Array(stamp.node.utf8)
      WireFields.appendVarint(stamp.counter, to: &out)
    }
    return out
  }

  @Test("stamps round-trip in the compact form, the older form still decodes, and the newest is found without the map")
  func roundTrip() async {
    await propertyCheck(count: 500, input: versionGen) { version in
      let stamps = version.stamps
      let compact = ReplicationEncoding.encode(stamps)
      let decoded = try ReplicationEncoding.decodeStamps(compact)
      #expect(decoded == stamps)
      let older = try ReplicationEncoding.decodeStamps(Self.olderForm(stamps))
      #expect(older == stamps)
      let newest = try ReplicationEncoding.newestStamp(compact)
      let olderNewest = try ReplicationEncoding.newestStamp(Self.olderForm(stamps))
      #expect(newest == stamps.values.max() && olderNewest == newest)
      // Canonical: the same map always gives the same bytes (a copy built in another order too).
      #expect(ReplicationEncoding.encode(Dictionary(uniqueKeysWithValues: stamps.reversed())) == compact)
    }
  }

  @Test("a new record's one stamp for all its fields is written once: a fifth of the older form's bytes")
  func newRecord() throws {
    let stamp = FieldStamp(time: HLCTimestamp(milliseconds: 1_765_000_000_000, counter: 3), node: "county-511702", counter: 1)
    let fields = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15]
    let compact = ReplicationEncoding.encode(stamp, forFields: fields)
    let map = Dictionary(uniqueKeysWithValues: fields.map { ($0, stamp) })
    #expect(compact == ReplicationEncoding.encode(map))
    #expect(try ReplicationEncoding.decodeStamps(compact) == map)
    #expect(compact.count * 5 <= Self.olderForm(map).count)
  }

  @Test("malformed stamps are refused with a reason, never read past their end")
  func malformed() throws {
    let stamp = FieldStamp(time: HLCTimestamp(milliseconds: 1_000, counter: 0), node: "n", counter: 1)
    let good = ReplicationEncoding.encode([1: stamp, 4: stamp])
    let cases: [(String, [UInt8])] = [
      ("truncated", Array(good.dropLast())),
      ("trailing bytes", good + [0]),
      ("stamp index past the stamps", Array(good.dropLast()) + [1]),
      ("field numbers not ascending", [0, 1, 1] + Array(good[3..<(good.count - 5)]) + [2, 3, 0, 0, 0]),
      ("field number out of range", [1, 0x80, 0x80, 0x80, 0x80, 0x10] + Array(good[3..<(good.count - 5)])),
      ("a counter over the limit", [0, 1, 1, 1, 1, 0x6E] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01] + [1, 0, 0]),
    ]
    // Two stamps, and fields using them: a stamp no field carries, one listed twice, or listed
    // out of the order the fields first use them, would be a second encoding of some map.
    let other = FieldStamp(time: HLCTimestamp(milliseconds: 2_000, counter: 0), node: "m", counter: 1)
    let one = ReplicationEncoding.encode([1: stamp])
    let first = Array(one[3..<(one.count - 3)])
    let second = Array(ReplicationEncoding.encode([1: other])[3..<(one.count - 3)])
    let canonical: [(String, [UInt8])] = [
      ("a stamp no field carries", [0, 1, 2] + first + second + [1, 1, 0]),
      ("a stamp listed twice", [0, 1, 2] + first + first + [2, 1, 0, 1, 1]),
      ("stamps out of first use", [0, 1, 2] + first + second + [2, 1, 1, 1, 0]),
    ]
    let two = try ReplicationEncoding.decodeStamps([0, 1, 2] + first + second + [2, 1, 0, 1, 1])
    #expect(two == [1: stamp, 2: other])
    for (reason, bytes) in cases + canonical {
      #expect(throws: WireFieldsError.self, "\(reason)") { try ReplicationEncoding.decodeStamps(bytes) }
      #expect(throws: WireFieldsError.self, "\(reason)") { try ReplicationEncoding.newestStamp(bytes) }
    }
  }
}
