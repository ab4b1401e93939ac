import EduHubAPI
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
}
