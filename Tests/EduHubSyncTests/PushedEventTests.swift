import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import EduHubWorkOrders
import Foundation
import SwiftProtobuf
import Testing

/// Work-order events and tombstones an owned county pushes: each is judged as the API would have
/// written it, and by what the node had already pulled.
@Suite("Pushed work-order events and revived tombstones")
struct PushedEventTests {
  typealias Event = Eduhub_Workorder_V1_OrderEvent

  /// An order of the world's school, served by its county, submitted at central.
  static func order(_ world: IdentityWorld) async throws -> Eduhub_Workorder_V1_WorkOrder {
    var submission = WorkOrderFixture.submission()
    submission.order.submittingOrgCode = IdentityWorld.school
    return try await world.node.workOrders.submit(submission, caller: .operator(name: "school"), peer: "test")
  }

  /// An event as the county would push it: stamped by it at `hlc`, its id the one `Act` gives
  /// unless `id` says otherwise.
  static func event(
    _ owned: OwnedNode, _ order: Eduhub_Workorder_V1_WorkOrder, _ action: Eduhub_Workorder_V1_Action, hlc: UInt64,
    org: String = "", bodyID: String? = nil, node: String = "county-511702", actor: String = "operator:county"
  ) throws -> Eduhub_Sync_V1_SyncRecord {
    var event = Event()
    event.orderID = order.id
    event.action = action
    event.actor = actor
    event.hlc = hlc
    event.node = node
    event.timeMs = owned.world.identity.nowMs()
    event.note = "a step of the county's"
    event.assigneeOrgCode = org
    let id = order.id + "|" + String(hlc, radix: 16) + "|" + node
    event.id = bodyID ?? id
    return try owned.record(WorkOrderCollections.event.name, id, scope: order.orgPath, body: try event.serializedBytes())
  }

  @Test("an owned county cannot backdate a step behind one it pulled, shadow an event's id, or name an assignee org Act refuses; a step it could not have seen before stays concurrent")
  func eventsAreBound() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let city = Caller.operator(name: "city")
      // Escalated to the city and accepted there.
      let escalated = try await Self.order(world)
      _ = try world.node.workOrders.act(WorkOrderFixture.act(escalated.id, .escalate), caller: city, peer: "test")
      let accepted = try world.node.workOrders.act(WorkOrderFixture.act(escalated.id, .accept), caller: city, peer: "test")
      let cityAccept = try #require(accepted.timeline.last)
      let first = try #require(accepted.timeline.first)
      // The county pulls both steps, and a push of its own follows.
      try await owned.county.client.syncOnce()
      try await owned.county.client.syncOnce()
      try await owned.push([])
      // A reject stamped before the escalation would erase the city's steps.
      try await owned.expectRefused(
        [try Self.event(owned, escalated, .reject, hlc: first.hlc - 1)], "stamped before a step of this order")
      // A comment whose body names the city's accept: the timeline keeps one event per id.
      try await owned.expectRefused(
        [try Self.event(owned, escalated, .comment, hlc: cityAccept.hlc + 1, bodyID: cityAccept.id)], "its id is not its order, clock and node")
      // Assignee orgs Act refuses: a county beside it, an escalation to anything but the parent.
      let served = try await Self.order(world)
      let now = world.identity.replica.clock.now().rawValue
      try await owned.expectRefused([try Self.event(owned, served, .accept, hlc: now, org: "511703")], "its assignee org")
      try await owned.expectRefused(
        [try Self.event(owned, served, .escalate, hlc: now, org: IdentityWorld.school)], "an escalation goes to the parent")
      // A step taken before the county could have seen the city's: concurrent, and judged so.
      let concurrent = try await Self.order(world)
      let cityStep = try world.node.workOrders.act(WorkOrderFixture.act(concurrent.id, .accept), caller: city, peer: "test")
      let acceptHLC = try #require(cityStep.timeline.last).hlc
      try await owned.push([try Self.event(owned, concurrent, .reject, hlc: acceptHLC - 1)])
      let detail = try world.node.workOrders.getOrder(.with { $0.id = concurrent.id }, caller: city)
      #expect(detail.order.state == .rejected)
      #expect(detail.timeline.last?.superseded == true, "the city's accept came after the county's reject")
      await owned.county.close()
    }
  }

  @Test("a step stamped by a node the county registers in the same push is a step of that node: its users, its clock")
  func relayedSteps() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let countyUser = try await world.account("county-user", role: .countyAdmin, org: "511702")
      var submission = WorkOrderFixture.submission()
      submission.order.submittingOrgCode = "511702"
      let order = try await Eduhub_Workorder_V1_WorkOrderService.Client(world.rpc).submit(submission, options: try await world.options("county-user"))
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      let registration = try owned.record(
        SyncCollections.node.name, "school-new", scope: schoolPath, body: try PushedNodesTests.schoolNode("school-new", key: SigningKey()))
      // The county's own user cancels, in the name of a school node: refused.
      let now = world.identity.replica.clock.now().rawValue
      try await owned.expectRefused(
        [registration, try Self.event(owned, order, .cancel, hlc: now, node: "school-new", actor: countyUser)],
        "is not a user of node school-new's scope")
      // Its clock far from its time (a stamp just after the order's submission, to come first).
      try await owned.expectRefused(
        [registration, try Self.event(owned, order, .comment, hlc: 1 << 16, node: "school-new", actor: "system:school-new")],
        "away from its clock")
      await owned.county.close()
    }
  }

  @Test("a masked county that revives a deleted pupil cannot choose the fields it sees masked")
  func revivedTombstones() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let original = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      let realID = try Eduhub_Identity_V1_Person(serializedBytes: original.body).nationalID
      _ = try world.identity.replica.write([
        .init(collection: IdentityCollections.person.name, id: IdentityWorld.student, scope: original.scope, body: nil)
      ])
      try await owned.county.client.syncOnce()
      let tombstone = try #require(try owned.county.store.get(IdentityCollections.person, IdentityWorld.student))
      #expect(tombstone.deleted)
      var revived = try Eduhub_Identity_V1_Person(serializedBytes: tombstone.body)
      #expect(revived.nationalID != realID, "the county holds the ID number masked")
      revived.nationalID = "511702201301019999"
      revived.birthDate = "2013-01-01"
      revived.className = "重新启用"
      let record = try owned.record(
        IdentityCollections.person.name, IdentityWorld.student, scope: tombstone.scope, body: try revived.serializedBytes(), over: tombstone)
      // Accepted (the node may write its pupils), with central's ID number and birth date kept.
      try await owned.push([record])
      let stored = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      let person = try Eduhub_Identity_V1_Person(serializedBytes: stored.body)
      #expect(!stored.deleted && person.className == "重新启用")
      #expect(person.nationalID == realID)
      await owned.county.close()
    }
  }
}
