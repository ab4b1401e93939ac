import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Testing

/// A request pushed from below is held to the workflow: its state is where its steps lead.
@Suite("Push: access requests follow the workflow")
struct PushedRequestTests {
  @Test("a request pushed in a state its steps do not lead to is refused; the same change with its step is taken")
  func stateFollowsSteps() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "score"]), options: try await world.options("bureau"))
      #expect(asked.state == .pendingSteward)
      let owned = try await OwnedNode.start(world)
      let stored = try #require(try owned.county.store.get(SharingCollections.request, asked.id))
      let request = try SharingCollections.request.decode(stored)
      func pushed(_ change: (inout Eduhub_Sharing_V1_AccessRequest) -> Void) throws -> Eduhub_Sync_V1_SyncRecord {
        var changed = request
        change(&changed)
        return try owned.record(SharingCollections.request.name, stored.id, scope: stored.scope, body: try changed.serializedBytes(), over: stored)
      }
      // Rejected with no step: the history says it still waits for the steward.
      try await owned.expectRefused([try pushed { $0.state = .rejected }], "its steps lead to")
      // Changes asked for by the county's steward, and the state moved on as if approved.
      let steward = try await world.account("county-steward", role: .dataSteward, org: "511702")
      try await owned.expectRefused(
        [
          try pushed {
            $0.steps.append(.with { step in step.actor = steward; step.action = "changes-requested"; step.reason = "fields" })
            $0.state = .approved
          }
        ], "its steps lead to")
      // A step the workflow does not have.
      try await owned.expectRefused(
        [try pushed { $0.steps.append(.with { step in step.actor = steward; step.action = "reopened" }) }], "not a step of the workflow")
      // Rejected by a steward of the county: taken.
      try await owned.push([
        try pushed {
          $0.steps.append(.with { step in step.actor = steward; step.action = "rejected"; step.reason = "no" })
          $0.state = .rejected
        }
      ])
      #expect(try SharingCollections.request.decode(try #require(try owned.stored(SharingCollections.request.name, asked.id))).state == .rejected)
      await owned.county.close()
    }
  }
}
