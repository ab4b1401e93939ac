import EduHubAPI
import EduHubIdentity
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import SwiftProtobuf
import Testing

/// What Identity answers other services about its org tree, so that none of them reads its collections.
@Suite("Org directory")
struct OrgDirectoryTests {
  @Test("holders of a role are those on the org itself: not below it, not of another role, not revoked")
  func holders() async throws {
    try await withWorld { world in
      let county = "511702"
      let admin = try await world.account("county-admin", role: .countyAdmin, org: county)
      let steward = try await world.account("county-steward", role: .dataSteward, org: county)
      try await world.account("school-admin", role: .schoolAdmin, org: IdentityWorld.school)
      let gone = try await world.account("former-admin", role: .countyAdmin, org: county)
      let grants = try world.identity.listRoleGrants(.with { $0.accountID = gone }, caller: .operator(name: "test"), peer: "test")
      for grant in grants.grants {
        _ = try world.identity.revokeRole(.with { $0.grantID = grant.id }, caller: .operator(name: "test"), peer: "test")
      }
      let identity = world.identity
      let found = try identity.store.read { db in
        (
          admins: try identity.holders(of: [.countyAdmin, .schoolAdmin], at: county, in: db),
          stewards: try identity.holders(of: [.dataSteward], at: county, in: db),
          school: try identity.holders(of: [.schoolAdmin], at: IdentityWorld.school, in: db),
          none: try identity.holders(of: [.countyAdmin], at: "no-such-org", in: db)
        )
      }
      #expect(found.admins == [admin])
      #expect(found.stewards == [steward])
      #expect(found.school.count == 1)
      #expect(found.none.isEmpty)
    }
  }

  @Test("a conflicting value is shown to a steward by what its collection declares: public and internal text, never a personal field")
  func conflictValues() async throws {
    try await withWorld { world in
      let identity = world.identity
      func conflict(_ collection: String, field: Int) -> RecordStore.Conflict {
        RecordStore.Conflict(
          collection: collection, recordID: "x", field: field, losingValue: [], losingStamp: [], winningStamp: [], localVersion: [],
          remoteVersion: [], sequence: 1)
      }
      // A field as a conflict keeps it: tag, length, bytes.
      func text(_ field: Int, _ value: String) -> [UInt8] {
        var raw: [UInt8] = []
        WireFields.appendVarint(UInt64(field << 3 | 2), to: &raw)
        WireFields.appendVarint(UInt64(value.utf8.count), to: &raw)
        return raw + Array(value.utf8)
      }
      // An org's name is public.
      #expect(identity.shownConflictValue(text(2, "达州市第一中学"), of: conflict(IdentityCollections.org.name, field: 2), current: nil) == "达州市第一中学")
      // A role grant holds nothing personal (declared unclassified).
      #expect(identity.shownConflictValue(text(4, "5117020001"), of: conflict(IdentityCollections.roleGrant.name, field: 4), current: nil) == "5117020001")
      // An account's phone is personal: its size only.
      let phone = identity.shownConflictValue(text(3, "13900000001"), of: conflict(IdentityCollections.account.name, field: 3), current: nil)
      #expect(!phone.contains("139") && phone.contains("字节"))
      // A collection nobody declared shows nothing either.
      #expect(identity.shownConflictValue(text(1, "秘密"), of: conflict("undeclared", field: 1), current: nil).contains("字节"))
    }
  }

  @Test("people leave Identity masked for the reader the caller names: a consumer gets no clear ID number, a cleared node does (its clear reads of minors flagged for the audit); kinds count without bodies")
  func maskedPeople() async throws {
    try await withWorld { world in
      let identity = world.identity
      let today = identity.today
      let path = try identity.store.read { db in try identity.orgPath(IdentityWorld.school, in: db) }
      func page(for reader: Reader) throws -> [MaskedPerson] {
        try identity.store.read { db in try identity.people(inScope: path, after: nil, limit: 5000, for: reader, on: today, in: db) }
      }
      func person(_ masked: MaskedPerson) throws -> Eduhub_Identity_V1_Person {
        try Eduhub_Identity_V1_Person(serializedBytes: masked.record.body)
      }
      let stored = try #require(try identity.store.read { db in try identity.store.live(IdentityCollections.person, IdentityWorld.student, in: db) })
      let clearID = try Eduhub_Identity_V1_Person(serializedBytes: stored.body).nationalID
      try #require(!clearID.isEmpty)
      let consumer = try page(for: .consumer(id: "app"))
      let student = try #require(consumer.first { $0.id == IdentityWorld.student })
      #expect(try person(student).nationalID != clearID)
      #expect(try person(student).name != (try Eduhub_Identity_V1_Person(serializedBytes: stored.body)).name)
      #expect(student.masking?.changed == true)
      // No person of the page carries any clear ID number for the consumer.
      let clearIDs = Set(try identity.store.read { db in
        try identity.store.records.inScope(IdentityCollections.person, scope: path, limit: 5000, in: db)
      }.map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body).nationalID }.filter { !$0.isEmpty })
      #expect(try consumer.allSatisfy { !clearIDs.contains(try person($0).nationalID) })
      // A node cleared for the region reads in clear, and the masking says which minors' fields it read.
      let node = try page(for: .node(id: "central", clearScope: ""))
      let clear = try #require(node.first { $0.id == IdentityWorld.student })
      #expect(try person(clear).nationalID == clearID)
      let minors = node.filter { $0.masking?.age.isMinor == true }
      #expect(!minors.isEmpty)
      #expect(minors.allSatisfy { $0.masking?.auditedFields.isEmpty == false })
      // Counting by kind reads no body out of Identity.
      let (students, everyone) = try identity.store.read { db in
        (try identity.countPeople(inScope: path, kind: .student, in: db), try identity.countPeople(inScope: path, kind: .unspecified, in: db))
      }
      #expect(students == Int64(try consumer.filter { try person($0).kind == .student }.count))
      #expect(everyone == Int64(consumer.count))
    }
  }

  @Test("viewing people stops at what is kept (no minor read or audited beyond the page) and pages on from where it stopped")
  func viewPeople() async throws {
    try await withWorld { world in
      let identity = world.identity
      let path = try identity.store.read { db in try identity.orgPath(IdentityWorld.school, in: db) }
      let audits = { try identity.audit.events(after: 0, action: "privacy.clear-read", limit: 100_000).count }
      let before = try audits()
      let teacher = Caller.operator(name: "test")
      let first = try identity.store.read { db in
        try identity.viewPeople(
          inScope: path, kind: .student, idPrefix: "", after: nil, scan: 1000, keep: 3, for: teacher, as: nil, peer: "test",
          on: identity.today, in: db)
      }
      #expect(first.people.count == 3 && !first.exhausted)
      #expect(first.people.allSatisfy { $0.person.kind == .student })
      let second = try identity.store.read { db in
        try identity.viewPeople(
          inScope: path, kind: .student, idPrefix: "", after: first.next, scan: 1000, keep: 3, for: teacher, as: nil, peer: "test",
          on: identity.today, in: db)
      }
      #expect(Set(first.people.map(\.person.id)).isDisjoint(with: second.people.map(\.person.id)))
      #expect(second.people.first.map { $0.person.id > first.people.last!.person.id } == true)
      // The operator reads pupils in clear: each read is audited, those of the six people returned
      // and no more (a scan of the whole page would have audited hundreds).
      let audited = try audits() - before
      #expect(audited > 0 && audited <= 6)
    }
  }
}
