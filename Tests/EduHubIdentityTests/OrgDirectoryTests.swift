import EduHubAPI
import EduHubIdentity
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
}
