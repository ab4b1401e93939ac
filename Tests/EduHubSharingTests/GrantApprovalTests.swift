import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubSharing
import EduHubTestSupport
import SwiftProtobuf
import Testing

/// A grant is honoured only while the approvals its request received cover its resource as it
/// stands, and nobody approves their own request.
@Suite("Grants and their approvals")
struct GrantApprovalTests {
  @Test("a clear grant approved for a view of teachers is refused once the view shows pupils (the security officer never saw it)")
  func outgrownGrant() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      var view = SharingFixture.resource("staff.view", .conditional)
      view.dataset.view.collection = "person"
      view.dataset.view.personKind = "teacher"
      view.fields = [SharingFixture.field("name", .string), SharingFixture.field("national_id", .string)]
      _ = try await fixture.publish(view)
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms("staff.view", fields: ["name", "national_id"], masking: .clear), options: bureau)
      #expect(asked.state == .pendingSteward && !asked.needsSecurityOfficer, "teachers are no minors: the steward alone decides")
      #expect(try await fixture.decide(asked.id, .approve, as: "steward").state == .approved)
      _ = try await fixture.subscribe("staff.view", options: bureau) { $0.last?.snapshotDone == true }
      // The view now shows the school's pupils: the grant's clear terms would need the officer.
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = try await fixture.catalog.getResource(.with { $0.code = "staff.view" }, options: try await world.options("steward"))
      update.resource.dataset.view.personKind = "student"
      _ = try await fixture.catalog.updateResource(update, options: try await world.options("steward"))
      let refused = await expectStatus(.permissionDenied) {
        _ = try await fixture.subscribe("staff.view", options: bureau) { $0.last?.snapshotDone == true }
      }
      #expect(refused.contains("ask again"), "\(refused)")
      // Asked again, the chain is the whole one.
      let again = try await fixture.sharing.requestAccess(
        SharingFixture.terms("staff.view", fields: ["name", "national_id"], masking: .clear), options: bureau)
      #expect(again.needsSecurityOfficer)
    }
  }

  @Test("an open subscription ends when its resource's definition changes (a column raised to personal is not streamed on under the old one)")
  func definitionChangeEndsStreams() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 3, fields: ["student_id", "class_name", "score"])
      let steward = try await fixture.world.options("steward")
      var request = Eduhub_Sharing_V1_SubscribeRequest()
      request.resourceCode = SharingFixture.roster
      let catalog = fixture.catalog
      let message = await expectStatus(.aborted) {
        try await fixture.sharing.subscribe(request, options: try await fixture.world.options("bureau")) { stream in
          for try await message in stream where message.snapshotDone {
            var update = Eduhub_Catalog_V1_UpdateResourceRequest()
            update.resource = try await catalog.getResource(.with { $0.code = SharingFixture.roster }, options: steward)
            if let index = update.resource.fields.firstIndex(where: { $0.name == "score" }) {
              update.resource.fields[index].sensitivity = .sensitive
              update.resource.fields[index].masking = .redact
            }
            _ = try await catalog.updateResource(update, options: steward)
          }
        }
      }
      #expect(message.contains("subscribe again"), "\(message)")
    }
  }

  @Test("a steward who is also the consumer does not approve its own request")
  func fourEyes() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      let both = try await world.account("both", role: .dataSteward, org: IdentityWorld.school)
      var consumer = Eduhub_Identity_V1_GrantRoleRequest()
      consumer.accountID = both
      consumer.role = .dataConsumer
      consumer.orgCode = SharingFixture.county
      _ = try world.identity.grantRole(consumer, caller: .operator(name: "test"), peer: "test")
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "score"]), options: try await world.options("both"))
      let message = await expectStatus(.permissionDenied) { _ = try await fixture.decide(asked.id, .approve, as: "both") }
      #expect(message.contains("someone other than its requester"), "\(message)")
      #expect(try await fixture.decide(asked.id, .approve, as: "steward").state == .approved)
    }
  }
}
