import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Testing

@Suite("The city seeder")
struct SeederTests {
  @Test("valid, unique ID numbers; birth dates that fit the grade; guardians bound; the real counties")
  func realisticCity() async throws {
    try await withWorld { world in
      let people = try world.identity.store.records.inScope(IdentityCollections.person, scope: CitySeeder.cityCode, limit: 100_000)
        .map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body) }
      #expect(people.count > 2000)
      let ids = people.map(\.nationalID)
      #expect(Set(ids).count == ids.count, "national IDs repeat")
      for person in people {
        let id = try NationalID(person.nationalID)
        #expect(id.birthDate.description == person.birthDate)
        if person.kind == .student {
          // Grade g in the school year from September 2026: 5 + g full years by 31 August.
          let cutoff = try #require(CivilDate(year: 2026, month: 8, day: 31))
          #expect(id.birthDate.years(until: cutoff) == 5 + Int(person.grade), "\(person.id) grade \(person.grade)")
        }
      }
      let counties = try world.identity.store.records.find(IdentityCollections.org, index: "parent", key: CitySeeder.cityCode)
        .map(\.id).filter { $0.count == 6 }
      #expect(Set(counties) == Set(CitySeeder.counties.map(\.code)))
      let bindings = try world.identity.store.records.find(IdentityCollections.guardianship, index: "child", key: IdentityWorld.student)
      #expect(!bindings.isEmpty)
    }
  }

  @Test("the same seed writes the same city, into a fresh store (stamped while generating) or over a seeded one")
  func deterministicBothPaths() throws {
    func bodies(_ replica: Replica) throws -> [String: [UInt8]] {
      var found: [String: [UInt8]] = [:]
      for collection in [IdentityCollections.org.name, IdentityCollections.person.name, IdentityCollections.guardianship.name] {
        try replica.store.database.read { db in
          try replica.store.forEachLive(collection, inScope: nil, in: db) { id, body in found[collection + "/" + id] = body }
        }
      }
      return found
    }
    var opened: [(directory: String, database: EncryptedDatabase)] = []
    defer {
      for (directory, database) in opened {
        try? database.close()
        try? FileManager.default.removeItem(atPath: directory)
      }
    }
    func open() throws -> Replica {
      let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-seed-\(UUID().uuidString)").path
      let data = try NodeData.initialize(at: directory, identity: NodeIdentity(nodeID: "seed-test", scope: "", role: .central))
      let (database, replica) = try data.openReplica()
      opened.append((directory, database))
      return replica
    }
    let first = try open()
    let second = try open()
    // A node that refuses local writes (restored from backup, waiting for a sync) refuses a seed
    // into its empty store too, and keeps nothing of it.
    first.refuseLocalWrites("restored from backup")
    #expect(throws: StorageError.self) { try CitySeeder(scale: .small).run(into: first) }
    #expect(try bodies(first).isEmpty)
    first.refuseLocalWrites(nil)
    var reported: [CitySeeder.Summary] = []
    let summary = try CitySeeder(scale: .small).run(into: first) { reported.append($0) }
    #expect(reported.last == summary)
    #expect(summary.orgs > 20 && summary.students > 500 && summary.guardians > summary.students)
    let fresh = try bodies(first)
    #expect(fresh.count == summary.orgs + summary.people + summary.bindings)
    // Into another fresh store, and then again over it (each record looked up and rewritten).
    try CitySeeder(scale: .small).run(into: second)
    #expect(try bodies(second) == fresh)
    try CitySeeder(scale: .small).run(into: second)
    #expect(try bodies(second) == fresh)
    // Indexes built at the end of each load: a seeded national ID finds its person.
    let anyone = try #require(fresh.first { $0.key.hasPrefix(IdentityCollections.person.name + "/") })
    let person = try Eduhub_Identity_V1_Person(serializedBytes: anyone.value)
    #expect(try second.store.find(IdentityCollections.person.name, index: "national_id", key: person.nationalID).map(\.id) == [person.id])
  }

  @Test("the bureau's resources: each view counts its people of one kind, the school summary has a row per school")
  func catalogSeed() async throws {
    try await withWorld { world in
      #expect(try CatalogSeeder.run(into: world.node.catalog) == 7)
      let counted = try world.identity.store.read { db in
        (
          try world.identity.countPeople(inScope: CitySeeder.cityCode, kind: .student, in: db),
          try world.identity.countPeople(inScope: CitySeeder.cityCode, kind: .teacher, in: db)
        )
      }
      #expect(counted.0 > 500 && counted.1 > 50)
      func resource(_ code: String) throws -> Eduhub_Catalog_V1_Resource {
        try CatalogCollections.resource.decode(try #require(try world.identity.store.records.get(CatalogCollections.resource, code)))
      }
      #expect(try resource("dz.student.basic").rowCount == counted.0)
      #expect(try resource("dz.teacher.basic").rowCount == counted.1)
      #expect(try resource("dz.school.annual").rowCount == 14)
      // Published once: a second run finds them and publishes nothing.
      #expect(try CatalogSeeder.run(into: world.node.catalog) == 0)
    }
  }
}
