import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

@Suite("Sharing: access requests, approval chains, grants, applications, offline approval")
struct SharingRequestTests {
  @Test("conditional resource with minors' fields: steward then security officer; steps visible to the requester; rows as granted")
  func twoStepChain() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...5).map { SharingFixture.student($0) })
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "name", "score"], masking: .clear), options: bureau)
      #expect(asked.state == .pendingSteward && asked.needsSecurityOfficer && asked.grantID.isEmpty)
      // Neither the requester nor the officer decides the steward's step.
      await expectStatus(.permissionDenied) { try await fixture.decide(asked.id, .approve, as: "bureau") }
      await expectStatus(.permissionDenied) { try await fixture.decide(asked.id, .approve, as: "officer") }
      // No data before approval.
      await expectStatus(.permissionDenied) { try await fixture.subscribe(options: bureau) { _ in true } }
      let first = try await fixture.decide(asked.id, .approve, as: "steward")
      #expect(first.state == .pendingSecurity && first.grantID.isEmpty)
      await expectStatus(.permissionDenied) { try await fixture.decide(asked.id, .approve, as: "steward") }
      let second = try await fixture.decide(asked.id, .approve, as: "officer")
      #expect(second.state == .approved && second.grantID == asked.id)
      var get = Eduhub_Sharing_V1_GetRequestRequest()
      get.requestID = asked.id
      let seen = try await fixture.sharing.getRequest(get, options: bureau)
      #expect(seen.steps.map(\.action) == ["submitted", "approved", "security-approved"])
      // Clear, and only the granted fields.
      let messages = try await fixture.subscribe(options: bureau) { $0.last?.snapshotDone == true }
      #expect(messages.last?.columns == ["student_id", "name", "score"])
      let rows = messages.flatMap(\.changes)
      #expect(rows.count == 5 && rows[0].row.values[1].text == "王小1" && !rows[0].row.masked)
      // A clear read of minors' data is audited; the catalog counts the subscription.
      #expect(try world.auditEvents(action: "privacy.clear-read").contains { $0.detail.contains(asked.id) })
      var detail = Eduhub_Catalog_V1_GetResourceRequest()
      detail.code = SharingFixture.roster
      #expect(try await fixture.catalog.getResource(detail, options: bureau).subscriptions == 1)
      // Asking for a field outside the grant is refused.
      await expectStatus(.permissionDenied) {
        try await fixture.subscribe(fields: ["student_id", "national_id"], options: bureau) { _ in true }
      }
    }
  }

  @Test("sharing classes: unconditional granted at once (personal fields in clear still go to the steward); not shared refused; reject, ask changes, amend, withdraw")
  func sharingClasses() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      let bureau = try await world.options("bureau")
      _ = try await fixture.publish(SharingFixture.rosterResource(.unconditional, code: "open.roster"))
      let masked = try await fixture.sharing.requestAccess(SharingFixture.terms("open.roster"), options: bureau)
      #expect(masked.state == .approved && masked.steps.map(\.action) == ["submitted", "granted"])
      let clear = try await fixture.sharing.requestAccess(SharingFixture.terms("open.roster", masking: .clear), options: bureau)
      #expect(clear.state == .pendingSteward && clear.needsSecurityOfficer)

      // Not shared: outsiders do not even see it; inside its org it is refused.
      _ = try await fixture.publish(SharingFixture.rosterResource(.notShared, code: "closed.roster"))
      await expectStatus(.notFound) { try await fixture.sharing.requestAccess(SharingFixture.terms("closed.roster"), options: bureau) }
      let refused = await expectStatus(.failedPrecondition) {
        try await fixture.sharing.requestAccess(
          SharingFixture.terms("closed.roster", org: IdentityWorld.school), options: try await world.options("steward"))
      }
      #expect(refused.contains("not shared"))

      // Conditional without personal fields: the steward alone.
      _ = try await fixture.publish(SharingFixture.rosterResource())
      let plain = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "class_name", "score"]), options: bureau)
      #expect(plain.state == .pendingSteward && !plain.needsSecurityOfficer)
      await expectStatus(.invalidArgument) { try await fixture.decide(plain.id, .reject, as: "steward") }  // a reason is required
      let sentBack = try await fixture.decide(plain.id, .askChanges, as: "steward", reason: "说明用途")
      #expect(sentBack.state == .changesRequested)
      var amend = Eduhub_Sharing_V1_AmendRequestRequest()
      amend.requestID = plain.id
      amend.terms = SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "score"]).terms
      amend.terms.purpose = "区县学业质量监测"
      amend.expectedVersion = 1  // stale
      await expectStatus(.aborted) { try await fixture.sharing.amendRequest(amend, options: bureau) }
      amend.expectedVersion = sentBack.version
      let amended = try await fixture.sharing.amendRequest(amend, options: bureau)
      #expect(amended.state == .pendingSteward && amended.terms.fields == ["student_id", "score"])
      let rejected = try await fixture.decide(plain.id, .reject, as: "steward", reason: "不符合最小必要原则")
      #expect(rejected.state == .rejected && rejected.steps.last?.reason == "不符合最小必要原则")
      await expectStatus(.failedPrecondition) { try await fixture.decide(plain.id, .approve, as: "steward") }

      var withdraw = Eduhub_Sharing_V1_WithdrawRequestRequest()
      withdraw.requestID = clear.id
      #expect(try await fixture.sharing.withdrawRequest(withdraw, options: bureau).state == .withdrawn)
      await expectStatus(.permissionDenied) { try await fixture.sharing.withdrawRequest(withdraw, options: try await world.options("steward")) }

      // Bad input: an unknown field, an unknown consumer, another org's consumer.
      await expectStatus(.invalidArgument) {
        try await fixture.sharing.requestAccess(SharingFixture.terms(SharingFixture.roster, fields: ["shoe_size"]), options: bureau)
      }
      await expectStatus(.permissionDenied) {
        try await fixture.sharing.requestAccess(SharingFixture.terms(SharingFixture.roster, org: "511702"), options: bureau)
      }
      // Lists: the steward's queue and the requester's own.
      var queue = Eduhub_Sharing_V1_ListRequestsRequest()
      queue.filter = .stewarded
      #expect(try await fixture.sharing.listRequests(queue, options: try await world.options("steward")).requests.count == 3)
      queue.filter = .mine
      queue.states = [.approved]
      #expect(try await fixture.sharing.listRequests(queue, options: bureau).requests.map(\.id) == [masked.id])
    }
  }

  @Test("a consumer without a grant, or with an expired, suspended or revoked one, is refused; renew and resume restore it")
  func refusals() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      let grant = try await fixture.granted()
      try await world.account("other", role: .dataConsumer, org: "511722")
      await expectStatus(.permissionDenied) { try await fixture.subscribe(options: try await world.options("other")) { _ in true } }
      let bureau = try await world.options("bureau")
      _ = try await fixture.change(grant, .suspend)
      let suspended = await expectStatus(.permissionDenied) { try await fixture.subscribe(options: bureau) { _ in true } }
      #expect(suspended.contains("suspended"))
      _ = try await fixture.change(grant, .resume)
      #expect(try await fixture.subscribe(options: bureau) { $0.last?.snapshotDone == true }.flatMap(\.changes).count == 12)
      // Expiry: renewed to a moment that then passes.
      _ = try await fixture.change(grant, .renew, expires: world.identity.nowMs() + 60_000)
      world.clock.advance(by: .seconds(61))
      let expired = await expectStatus(.permissionDenied) { try await fixture.subscribe(options: bureau) { _ in true } }
      #expect(expired.contains("expired"))
      var list = Eduhub_Sharing_V1_ListGrantsRequest()
      list.mine = true
      #expect(try await fixture.sharing.listGrants(list, options: bureau).grants.first?.state == .expired)
      // The sweep takes the expired grant out of the catalog's subscription count.
      func subscriptions() throws -> Int64? {
        try world.identity.store.records.get(CatalogCollections.resource, SharingFixture.roster)
          .map { try Eduhub_Catalog_V1_Resource(serializedBytes: $0.body).subscriptions }
      }
      #expect(try subscriptions() == 1)
      #expect(try world.node.sharing.sweep() == 1)
      #expect(try subscriptions() == 0)
      _ = try await fixture.change(grant, .renew, expires: world.identity.nowMs() + 86_400_000)
      _ = try await fixture.change(grant, .revoke)
      let revoked = await expectStatus(.permissionDenied) { try await fixture.subscribe(options: bureau) { _ in true } }
      #expect(revoked.contains("revoked"))
      await expectStatus(.failedPrecondition) { try await fixture.change(grant, .resume) }
      // The consumer cannot change its own grant.
      var change = Eduhub_Sharing_V1_ChangeGrantRequest()
      change.grantID = grant
      change.action = .resume
      await expectStatus(.permissionDenied) { try await fixture.sharing.changeGrant(change, options: bureau) }
      #expect(try world.auditCount(action: "sharing.Subscribe", outcome: "denied") >= 4)
    }
  }

  @Test("applications: registered by a city admin, secret shown once, exchanged for tokens, rotated, disabled")
  func applications() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      var register = Eduhub_Sharing_V1_RegisterAppRequest()
      register.name = "市大数据中心"
      register.orgCode = CitySeeder.cityCode
      await expectStatus(.permissionDenied) { try await fixture.sharing.registerApp(register, options: try await world.options("steward")) }
      let admin = try await world.options("cityadmin")
      let app = try await fixture.sharing.registerApp(register, options: admin)
      #expect(app.clientSecret.count > 40 && app.app.clientID.hasPrefix("app-"))
      #expect(try await fixture.sharing.listApps(Eduhub_Sharing_V1_ListAppsRequest(), options: admin).apps.map(\.clientID) == [app.app.clientID])
      // The secret is stored only as a hash.
      let stored = try #require(try world.identity.store.records.get(SharingCollections.app, app.app.clientID))
      #expect(!String(decoding: stored.body, as: UTF8.self).contains(app.clientSecret))
      var exchange = Eduhub_Sharing_V1_ExchangeTokenRequest()
      exchange.clientID = app.app.clientID
      exchange.clientSecret = app.clientSecret + "x"
      await expectStatus(.unauthenticated) { try await fixture.sharing.exchangeToken(exchange) }
      exchange.clientSecret = app.clientSecret
      let token = try await fixture.sharing.exchangeToken(exchange)
      let asApp = world.bearer(token.accessToken)
      // The application asks for itself and, once granted, calls.
      let grant = try await fixture.granted(count: 3)
      _ = grant
      try await fixture.publishApis()
      let asked = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.lookup", org: app.app.clientID, kind: .app), options: asApp)
      #expect(asked.state == .approved)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.lookup"
      call.parameters = ["id": "S0002"]
      #expect(try await fixture.sharing.callApi(call, options: asApp).rows.count == 1)
      // It has no other data: the roster's grant is the bureau's.
      await expectStatus(.permissionDenied) { try await fixture.subscribe(options: asApp) { _ in true } }
      // Rotation ends the old secret and its tokens.
      var rotate = Eduhub_Sharing_V1_RotateAppSecretRequest()
      rotate.clientID = app.app.clientID
      let rotated = try await fixture.sharing.rotateAppSecret(rotate, options: admin)
      await expectStatus(.unauthenticated) { try await fixture.sharing.callApi(call, options: asApp) }
      await expectStatus(.unauthenticated) { try await fixture.sharing.exchangeToken(exchange) }
      exchange.clientSecret = rotated.clientSecret
      let fresh = world.bearer(try await fixture.sharing.exchangeToken(exchange).accessToken)
      #expect(try await fixture.sharing.callApi(call, options: fresh).rows.count == 1)
      var disable = Eduhub_Sharing_V1_SetAppDisabledRequest()
      disable.clientID = app.app.clientID
      disable.disabled = true
      _ = try await fixture.sharing.setAppDisabled(disable, options: admin)
      await expectStatus(.unauthenticated) { try await fixture.sharing.callApi(call, options: fresh) }
    }
  }

  @Test("requests and grants replicate: a county steward approves on the county node while cut off; central serves the grant after sync")
  func offlineApproval() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...4).map { SharingFixture.student($0) })
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, fields: ["student_id", "score"]), options: bureau)
      #expect(asked.state == .pendingSteward && !asked.needsSecurityOfficer)
      let school = try #require(try world.identity.store.records.get(SharingCollections.request, asked.id)).scope
      let stewardID = try await world.account(
        "county-steward", role: .dataSteward, org: String(school.split(separator: "/").last ?? ""))
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      // On the county node with no connection upstream: the school's steward decides there.
      let steward = Caller(
        accountID: stewardID, username: "county-steward", personID: "", homeScope: school,
        roles: [.init(grantID: "g", role: .dataSteward, scope: school)], children: [], issuer: "county-511702", sessionID: "s")
      var decide = Eduhub_Sharing_V1_DecideRequest()
      decide.requestID = asked.id
      decide.decision = .approve
      let offline = try county.node.sharing.decide(decide, caller: steward, peer: "county")
      #expect(offline.state == .approved)
      await expectStatus(.permissionDenied) { try await fixture.subscribe(options: bureau) { _ in true } }  // central has not heard yet
      try await county.client.syncOnce()
      var get = Eduhub_Sharing_V1_GetRequestRequest()
      get.requestID = asked.id
      let seen = try await fixture.sharing.getRequest(get, options: bureau)
      #expect(seen.state == .approved && seen.steps.last?.actor == stewardID)
      let rows = try await fixture.subscribe(options: bureau) { $0.last?.snapshotDone == true }.flatMap(\.changes)
      #expect(rows.count == 4 && rows[0].row.values.count == 2)
      await county.close()
    }
  }
}
