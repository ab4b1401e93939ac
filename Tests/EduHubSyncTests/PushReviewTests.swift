import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Testing

/// Findings of the third attacker review against an owned masked county, each refused.
@Suite("Push: a pupil's kind, a table's row count")
struct PushReviewTests {
  @Test("an owned county cannot make a pupil a teacher (no RPC changes a kind)")
  func kindStays() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let pupil = try #require(try owned.county.store.get(IdentityCollections.person, IdentityWorld.student))
      var person = try Eduhub_Identity_V1_Person(serializedBytes: pupil.body)
      person.kind = .teacher
      person.grade = 0
      person.className = ""
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, pupil.id, scope: pupil.scope, body: try person.serializedBytes(), over: pupil)],
        "kind does not change")
      // Nor with the kind written twice (a decoder keeps the last, a raw walk might stop at the first).
      let twice = [0x10, 0x02] + pupil.body + [0x10, 0x01]
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, pupil.id, scope: pupil.scope, body: twice, over: pupil)],
        "repeats a field that holds one value")
      // A new person whose id is a pupil's ID number: refused as CreatePerson refuses it.
      var twin = try Eduhub_Identity_V1_Person(serializedBytes: pupil.body)
      twin.id = "511702201301019999"
      twin.nationalID = ""
      twin.birthDate = "2013-01-01"
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, twin.id, scope: pupil.scope, body: try twin.serializedBytes())],
        "must not contain an ID number")
      // Nor by a tombstone and then a revival as a teacher.
      try await owned.push([try owned.record(IdentityCollections.person.name, pupil.id, scope: pupil.scope, body: pupil.body, deleted: true, over: pupil)])
      let gone = try #require(try owned.stored(IdentityCollections.person.name, pupil.id))
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, pupil.id, scope: pupil.scope, body: try person.serializedBytes(), over: gone)],
        "kind does not change")
      await owned.county.close()
    }
  }

  @Test("an owned county registers nodes below its org, never a second node at its own level")
  func registrationsBelowOnly() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let twin = try PushedNodesTests.schoolNode("county-twin", key: SigningKey(), org: "511702")
      try await owned.expectRefused(
        [try owned.record(SyncCollections.node.name, "county-twin", scope: OwnedNode.scope, body: twin)],
        "below its own org")
      // Nor one below moved up to it afterwards.
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      try await owned.push([
        try owned.record(SyncCollections.node.name, "school-moved", scope: schoolPath, body: try PushedNodesTests.schoolNode("school-moved", key: SigningKey()))
      ])
      let below = try #require(try owned.stored(SyncCollections.node.name, "school-moved"))
      var moved = try Eduhub_Sync_V1_SyncNodeRecord(serializedBytes: below.body)
      moved.node.orgCode = "511702"
      try await owned.expectRefused(
        [try owned.record(SyncCollections.node.name, "school-moved", scope: OwnedNode.scope, body: try moved.serializedBytes(), over: below)],
        "does not move")
      await owned.county.close()
    }
  }

  @Test("a table's row count pushed to zero does not free its schema: a personal field is not dropped nor its column reused")
  func rowCountFromBelow() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      try await SharingFixture.publishRosterByID(fixture)
      let owned = try await OwnedNode.start(world)
      let table = try #require(try owned.county.store.get(CatalogCollections.resource, "roster.by-id"))
      var resource = try Eduhub_Catalog_V1_Resource(serializedBytes: table.body)
      #expect(resource.rowCount == 3)
      // Counters alone move from below: accepted.
      resource.rowCount = 0
      try await owned.push([try owned.record(CatalogCollections.resource.name, table.id, scope: table.scope, body: try resource.serializedBytes(), over: table)])
      let zeroed = try #require(try owned.stored(CatalogCollections.resource.name, "roster.by-id"))
      // Then the birth date dropped: the rows at central still hold it.
      var dropped = try Eduhub_Catalog_V1_Resource(serializedBytes: zeroed.body)
      dropped.fields.removeAll { $0.name == "birth_date" }
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, table.id, scope: table.scope, body: try dropped.serializedBytes(), over: zeroed)],
        "birth_date")
      // Nor is the key changed (the rows at central are keyed by ID number).
      var rekeyed = try Eduhub_Catalog_V1_Resource(serializedBytes: zeroed.body)
      rekeyed.dataset.ingested.keyFields = ["student_id"]
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, table.id, scope: table.scope, body: try rekeyed.serializedBytes(), over: zeroed)],
        "its key cannot change")
      await owned.county.close()
    }
  }
}
