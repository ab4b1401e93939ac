import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import Logging
import NIOCore
import PropertyBased
import SwiftProtobuf
import Testing

@Suite("Sync converges whatever the order of writes, syncs and interruptions", .serialized)
struct SyncPropertyTests {
  static let students = (1...6).map { "S5117020001-000\($0)" }

  /// One random history: writes on random tiers, syncs and interrupted syncs, then final rounds;
  /// records what fails.
  static func scenario(seed: Int, trace: Bool = false) async throws {
    try await withWorld { world in
      let tiers = try await ThreeTiers.start(world)
      var random = SplitMix64(seed: UInt64(seed))
      var written: [String: Set<String>] = [:]
      let names = ["central", "county", "school"]
      for step in 0..<30 {
        switch random.next(6) {
        case 0, 1, 2:
          // A write on a random tier: one field of one student.
          let tier = random.next(3)
          let id = students[random.next(students.count)]
          let value = "v\(step)-\(random.next(1000))"
          let field = random.next(2)
          try edit(tiers.replicas[tier], id) { person in
            if field == 0 { person.className = value } else { person.title = value }
          }
          written["\(id)/\(field)", default: []].insert(value)
          if trace { print("step \(step): \(names[tier]) writes \(id) field \(field) = \(value)") }
        case 3:
          let report = try await tiers.county.client.syncOnce(batchRecords: 1 + random.next(50))
          if trace { print("step \(step): county sync: \(report)") }
        case 4:
          let report = try await tiers.school.syncOnce(batchRecords: 1 + random.next(50))
          if trace { print("step \(step): school sync: \(report)") }
        default:
          // A sync cut off part-way: the connection's task is cancelled mid-stream.
          let which = random.next(2)
          let client = which == 0 ? tiers.county.client : tiers.school
          let batch = 1 + random.next(5)
          let task = Task { try await client.syncOnce(batchRecords: batch) }
          try await Task.sleep(for: .microseconds(random.next(3000)))
          task.cancel()
          let result = await task.result
          if trace { print("step \(step): \(which == 0 ? "county" : "school") sync interrupted: \(result)") }
        }
      }
      for _ in 0..<3 {
        try await tiers.school.syncOnce()
        try await tiers.county.client.syncOnce()
      }
      try await tiers.school.syncOnce()
      if trace {
        for (name, replica) in zip(names, tiers.replicas) {
          let record = try replica.store.get(IdentityCollections.person, "S5117020001-0001")!
          let person = try Eduhub_Identity_V1_Person(serializedBytes: record.body)
          print(name, "title", person.title, "class", person.className, "vector", try ReplicationEncoding.decodeVector(record.version),
                "stamps", try ReplicationEncoding.decodeStamps(record.stamps).filter { $0.key == 14 || $0.key == 15 })
          print(name, "conflicts", try replica.store.conflicts().filter { $0.recordID == "S5117020001-0001" }.map { ($0.field, String(decoding: $0.losingValue, as: UTF8.self)) })
        }
      }
      for id in students {
        let versions = try tiers.replicas.map { try $0.store.get(IdentityCollections.person, id) }
        let bodies = versions.map { $0?.body ?? [] }
        #expect(bodies[0] == bodies[1] && bodies[1] == bodies[2], "\(id) differs across tiers (seed \(seed))")
        #expect(versions[0]?.version == versions[2]?.version, "\(id) vectors differ (seed \(seed))")
        // The value left is one that was written (nothing invented, nothing lost to an empty field).
        let person = try Eduhub_Identity_V1_Person(serializedBytes: bodies[0])
        if let values = written["\(id)/0"] { #expect(values.contains(person.className), "\(id) class (seed \(seed))") }
        if let values = written["\(id)/1"] { #expect(values.contains(person.title), "\(id) title (seed \(seed))") }
      }
      await tiers.stop()
    }
  }

  @Test("random writes on random tiers, random syncs, interrupted syncs: a final round leaves every node identical")
  func converges() async throws {
    await propertyCheck(count: 15, input: Gen.int(in: 0...Int.max)) { seed in
      do { try await Self.scenario(seed: seed) } catch { Issue.record("seed \(seed): \(error)") }
    }
  }

  @Test("a history found by the property test: a push applied between a write's read and its commit")
  func replay() async throws {
    try await Self.scenario(seed: 6519020832674161388)
  }
}
