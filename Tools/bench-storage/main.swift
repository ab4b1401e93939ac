// eduhub-bench-storage: the record store on a plain SQLite file and on an encrypted one, same
// workload, same run: 200,000 inserts in batches of 1,000, 200,000 random point reads, a scan of a
// 10,000-record scope. Prints each phase's time, throughput and the encrypted/plain ratio.
// Run through Tools/bench-storage/run (release build).
import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB

let total = 200_000
let batch = 1_000
let reads = 200_000
let scopeSize = 10_000

/// A person-like protobuf body (~150 bytes): name, national ID, birth date, school, class, phone.
func body(_ index: Int) -> [UInt8] {
  var out: [UInt8] = []
  func string(_ field: Int, _ text: String) {
    let bytes = Array(text.utf8)
    out.append(UInt8(field << 3 | 2))
    out.append(UInt8(bytes.count))
    out += bytes
  }
  func varint(_ field: Int, _ value: UInt64) {
    out.append(UInt8(field << 3))
    var value = value
    while value >= 0x80 {
      out.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    out.append(UInt8(value))
  }
  string(1, "学生\(index)")
  string(2, String(format: "5117%02d2010%08d", index % 100, index))
  varint(3, UInt64(20_100_101 + index % 3000))
  string(4, String(format: "51170%05d", index % 1353))
  varint(5, UInt64(index % 12 + 1))
  string(6, String(format: "138%08d", index))
  string(7, "四川省达州市通川区某某街道\(index % 500)号")
  return out
}

/// Records arrive as an import would send them, school by school (about 148 students a school):
/// the first 10,000 are one school's scope, the rest spread over the county's other schools.
func scope(_ index: Int) -> String {
  index < scopeSize ? "511700/511702/5117020001" : String(format: "511700/511702/51170%05d", 2 + (index - scopeSize) / 148)
}

let people = CollectionDefinition(name: "people", indexes: ["national_id"]) { body in
  .init(keys: [("national_id", String(decoding: body[18..<36], as: UTF8.self))])
}

struct Phase {
  var seconds: Double
  var count: Int
  var rate: Double { Double(count) / seconds }
}

func measure(_ body: () throws -> Int) rethrows -> Phase {
  let start = ContinuousClock.now
  let count = try body()
  let elapsed = ContinuousClock.now - start
  return Phase(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, count: count)
}

func run(_ database: EncryptedDatabase) throws -> [Phase] {
  let store = try RecordStore(database: database, collections: [people])
  let version: [UInt8] = [1, 7, 99, 101, 110, 116, 114, 97, 108, 1]
  // The records are made before the clock starts: the benchmark measures the store, not String(format:).
  let batches = stride(from: 0, to: total, by: batch).map { start in
    (start..<(start + batch)).map {
      StoredRecord(
        collection: "people", id: String(format: "p%07d", $0), scope: scope($0), body: body($0), version: version,
        stamps: version)
    }
  }
  let insert = try measure {
    for records in batches { try store.put(records) }
    return total
  }
  var generator = SystemRandomNumberGenerator()
  let ids = (0..<reads).map { _ in String(format: "p%07d", Int.random(in: 0..<total, using: &generator)) }
  let pointReads = try measure {
    var found = 0
    // A thousand reads per read transaction, as a service answering a page of lookups would.
    for start in stride(from: 0, to: reads, by: 1000) {
      found += try database.read { db in
        var hits = 0
        for id in ids[start..<min(start + 1000, reads)] where try store.get("people", id, in: db) != nil { hits += 1 }
        return hits
      }
    }
    precondition(found == reads, "every read must find its record")
    return reads
  }
  let scan = try measure {
    // One read transaction, paged: a consistent snapshot, as an export or a sync pull reads it.
    let seen = try database.read { db in
      var seen = 0
      var after: StoredRecord?
      while true {
        let page = try store.inScope("people", scope: "511700/511702/5117020001", after: after, limit: 1000, in: db)
        guard let last = page.last else { break }
        seen += page.count
        after = last
      }
      return seen
    }
    precondition(seen == scopeSize, "the scope holds \(scopeSize) records, saw \(seen)")
    return seen
  }
  return [insert, pointReads, scan]
}

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-bench-storage-\(UUID())").path
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: directory) }

let plain = try run(EncryptedDatabase.openUnencryptedForBenchmark(path: directory + "/plain.sqlite"))
let encrypted = try run(EncryptedDatabase.open(path: directory + "/encrypted.sqlite", key: .key(AEAD.makeKey()), create: true))

print("EduHub storage benchmark: record store, plain vs encrypted SQLite (XChaCha20-Poly1305 pages)")
print("phase                       plain s   encrypted s   plain/s      encrypted/s   ratio")
let names = ["insert 200k (batches of 1k)", "point reads 200k", "scope scan 10k"]
var worst = 0.0
for (index, name) in names.enumerated() {
  let ratio = encrypted[index].seconds / plain[index].seconds
  worst = max(worst, ratio)
  print(
    name.padding(toLength: 27, withPad: " ", startingAt: 0)
      + String(format: " %8.3f   %11.3f   %10.0f   %11.0f   %5.2fx", plain[index].seconds, encrypted[index].seconds,
        plain[index].rate, encrypted[index].rate, ratio))
}
print(String(format: "\nworst ratio %.2fx (target <= 1.3x): %@", worst, worst <= 1.3 ? "met" : "MISSED"))
print(String(format: "encrypted inserts %.0f records/s (target >= 100,000): %@", encrypted[0].rate, encrypted[0].rate >= 100_000 ? "met" : "MISSED"))
