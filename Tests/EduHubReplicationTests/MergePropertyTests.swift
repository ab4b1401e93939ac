import EduHubStorage
import EduHubReplication
import PropertyBased
import Synchronization
import Testing

/// Random versions of one record, as different nodes might have written them: a few fields out of
/// 1…6 with random varint or bytes values, stamps from a few nodes, sometimes deleted.
let nodes = ["central", "county-511702", "school-5117020001", "school-5117020002"]

func field(_ number: Int, _ value: UInt64) -> [UInt8] {
  // Field 3 is length-delimited (a string), the others varints; field 5 repeats.
  var out: [UInt8] = []
  func varint(_ v: UInt64) {
    var v = v
    while v >= 0x80 {
      out.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    out.append(UInt8(v))
  }
  if number == 3 {
    varint(UInt64(number << 3 | 2))
    let text = Array("值\(value)".utf8)
    varint(UInt64(text.count))
    out += text
  } else if number == 5 {
    for k in 0..<(value % 3 + 1) {
      varint(UInt64(number << 3))
      varint(value + k)
    }
  } else {
    varint(UInt64(number << 3))
    varint(value)
  }
  return out
}

let versionGen = Gen.int(in: 0...Int.max).map { seed -> RecordVersion in
  var random = SplitMix(seed: UInt64(bitPattern: Int64(seed)))
  var body: [UInt8] = []
  var stamps: [Int: FieldStamp] = [:]
  var counters: [String: UInt64] = [:]
  for node in nodes where random.next() % 2 == 0 { counters[node] = random.next() % 5 + 1 }
  for number in 1...6 where random.next() % 3 != 0 {
    let present = random.next() % 4 != 0
    if present { body += field(number, random.next() % 5) }
    // Sometimes no stamp (data from before stamping), and stamps from a small space so that equal
    // stamps with different values occur too: merging must stay symmetric even then.
    guard random.next() % 5 != 0 else { continue }
    let node = nodes[Int(random.next() % 2)]
    stamps[number] = FieldStamp(
      time: HLCTimestamp(milliseconds: 1_000 + random.next() % 3, counter: 0),
      node: node, counter: random.next() % 2 + 1)
  }
  let deleted = random.next() % 5 == 0
  stamps[0] = FieldStamp(time: HLCTimestamp(milliseconds: 1_000 + random.next() % 20, counter: 0), node: nodes[0], counter: 1)
  return RecordVersion(body: body, vector: VersionVector(counters), stamps: stamps, deleted: deleted)
}

/// A small deterministic generator, so each version is reproducible from its seed.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// A version in canonical form (fields in order), which merging produces.
func canonical(_ v: RecordVersion) throws -> RecordVersion {
  try Merge.merge(v, v).version
}

@Suite("Merge properties")
struct MergePropertyTests {
  @Test("merge is commutative")
  func commutative() async {
    await propertyCheck(count: 500, input: versionGen, versionGen) { a, b in
      let ab = try Merge.merge(a, b).version
      let ba = try Merge.merge(b, a).version
      #expect(ab == ba)
    }
  }

  @Test("merge is associative")
  func associative() async {
    await propertyCheck(count: 500, input: versionGen, versionGen, versionGen) { a, b, c in
      let left = try Merge.merge(Merge.merge(a, b).version, c).version
      let right = try Merge.merge(a, Merge.merge(b, c).version).version
      #expect(left == right)
    }
  }

  @Test("merge is idempotent")
  func idempotent() async {
    await propertyCheck(count: 500, input: versionGen, versionGen) { a, b in
      let once = try Merge.merge(a, b).version
      #expect(try Merge.merge(once, b).version == once)
      #expect(try Merge.merge(once, once).version == once)
      #expect(try canonical(canonical(a)) == canonical(a))
    }
  }

  @Test("any order of applying the same versions yields the same record and vector")
  func anyOrder() async {
    await propertyCheck(count: 200, input: versionGen.array(of: 2...6), Gen.int(in: 0...1000)) { versions, seed in
      var random = SplitMix(seed: UInt64(seed))
      var shuffled = versions
      for index in shuffled.indices.reversed() where index > 0 {
        shuffled.swapAt(index, Int(random.next() % UInt64(index + 1)))
      }
      let forward = try versions.dropFirst().reduce(versions[0]) { try Merge.merge($0, $1).version }
      let other = try shuffled.dropFirst().reduce(shuffled[0]) { try Merge.merge($0, $1).version }
      #expect(forward == other)
      #expect(forward.vector == versions.reduce(VersionVector()) { $0.merged(with: $1.vector) })
    }
  }

  @Test("concurrent edits of different fields both survive without conflict")
  func differentFields() throws {
    let base = VersionVector(["central": 1])
    let stamp0 = FieldStamp(time: HLCTimestamp(milliseconds: 10, counter: 0), node: "central", counter: 1)
    var a = RecordVersion(body: field(1, 7) + field(2, 8), vector: base, stamps: [1: stamp0, 2: stamp0])
    var b = a
    a.body = field(1, 70) + field(2, 8)
    try a.vector.increment("school-a")
    a.stamps[1] = FieldStamp(time: HLCTimestamp(milliseconds: 20, counter: 0), node: "school-a", counter: 1)
    b.body = field(1, 7) + field(2, 80)
    try b.vector.increment("school-b")
    b.stamps[2] = FieldStamp(time: HLCTimestamp(milliseconds: 15, counter: 0), node: "school-b", counter: 1)
    #expect(a.compare(b) == .concurrent)
    let result = try Merge.merge(a, b)
    #expect(result.version.body == field(1, 70) + field(2, 80))
    #expect(result.conflicts.isEmpty)
    #expect(result.version.vector == VersionVector(["central": 1, "school-a": 1, "school-b": 1]))
  }

  @Test("concurrent edits of the same field: the later stamp wins and the loser is kept as a conflict")
  func sameField() throws {
    let base = VersionVector(["central": 1])
    let stamp0 = FieldStamp(time: HLCTimestamp(milliseconds: 10, counter: 0), node: "central", counter: 1)
    var a = RecordVersion(body: field(3, 1), vector: base, stamps: [3: stamp0])
    var b = a
    a.body = field(3, 2)
    try a.vector.increment("school-a")
    a.stamps[3] = FieldStamp(time: HLCTimestamp(milliseconds: 20, counter: 0), node: "school-a", counter: 1)
    b.body = field(3, 3)
    try b.vector.increment("school-b")
    b.stamps[3] = FieldStamp(time: HLCTimestamp(milliseconds: 30, counter: 0), node: "school-b", counter: 1)
    let result = try Merge.merge(a, b)
    #expect(result.version.body == field(3, 3))
    #expect(result.conflicts.count == 1)
    #expect(result.conflicts.first?.losingValue == field(3, 2))
    #expect(result.conflicts.first?.losingStamp.node == "school-a")
  }

  @Test("malformed bodies are refused, not merged")
  func malformed() {
    let bad = RecordVersion(body: [0x0A, 0x05, 1], vector: VersionVector(), stamps: [:])
    #expect(throws: WireFieldsError.self) { try Merge.merge(bad, bad) }
  }
}

@Suite("Version vectors and clocks")
struct ClockPropertyTests {
  @Test("vector comparison agrees with merging")
  func vectorOrder() async {
    await propertyCheck(count: 500, input: versionGen, versionGen) { a, b in
      let merged = a.vector.merged(with: b.vector)
      #expect([.after, .equal].contains(merged.compare(a.vector)))
      #expect([.after, .equal].contains(merged.compare(b.vector)))
      switch a.vector.compare(b.vector) {
      case .equal: #expect(a.vector == b.vector)
      case .before: #expect(merged == b.vector)
      case .after: #expect(merged == a.vector)
      case .concurrent: #expect(merged != a.vector && merged != b.vector)
      }
      let vector = try ReplicationEncoding.decodeVector(ReplicationEncoding.encode(a.vector))
      let stamps = try ReplicationEncoding.decodeStamps(ReplicationEncoding.encode(a.stamps))
      #expect(vector == a.vector)
      #expect(stamps == a.stamps)
    }
  }

  @Test("the hybrid clock is strictly monotonic whatever the wall clock does")
  func monotonic() async {
    await propertyCheck(count: 200, input: Gen.int(in: -5_000...5_000).array(of: 1...200)) { jumps in
      let wall = Mutex<UInt64>(1_000_000)
      let clock = HybridLogicalClock(wallClock: { wall.withLock { $0 } })
      var last = HLCTimestamp.zero
      for jump in jumps {
        wall.withLock { $0 = UInt64(max(0, Int($0) + jump)) }
        let now = clock.now()
        #expect(now > last)
        last = now
      }
    }
  }

  @Test("observing a remote stamp orders later local stamps after it; a stamp too far ahead is refused")
  func observe() throws {
    let clock = HybridLogicalClock(maxDriftMilliseconds: 1000, wallClock: { 5_000 })
    let remote = HLCTimestamp(milliseconds: 5_800, counter: 9)
    try clock.observe(remote)
    #expect(clock.now() > remote)
    #expect(throws: ClockError.self) { try clock.observe(HLCTimestamp(milliseconds: 7_000, counter: 0)) }
    let resumed = HybridLogicalClock(resumingAfter: HLCTimestamp(milliseconds: 9_000, counter: 3), wallClock: { 1_000 })
    #expect(resumed.now() > HLCTimestamp(milliseconds: 9_000, counter: 3))
  }
}
