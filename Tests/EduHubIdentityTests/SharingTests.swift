import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubSharing
import EduHubReplication
import EduHubStorage
import EduHubSync
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

/// A seeded world with a school's data steward, a county bureau's consumer and the city's data
/// security officer, and a school roster of minors (ingested) with an API over it.
struct SharingFixture {
  let world: IdentityWorld
  static let county = "511703"  // Dachuan: the consumer org
  static let roster = "school.roster"

  var sharing: Eduhub_Sharing_V1_SharingService.Client { .init(world.rpc) }
  var catalog: Eduhub_Catalog_V1_CatalogService.Client { .init(world.rpc) }

  static func field(
    _ name: String, _ type: Eduhub_Catalog_V1_FieldType, _ sensitivity: Eduhub_Common_V1_Sensitivity = .internal,
    _ masking: Eduhub_Common_V1_MaskingKind = .none
  ) -> Eduhub_Catalog_V1_SchemaField {
    CatalogDatasetTests.field(name, type, sensitivity, masking)
  }

  static func resource(_ code: String, _ sharing: Eduhub_Catalog_V1_SharingClass, type: Eduhub_Catalog_V1_ResourceType = .table)
    -> Eduhub_Catalog_V1_Resource
  {
    var resource = Eduhub_Catalog_V1_Resource()
    resource.code = code
    resource.name = "资源 \(code)"
    resource.type = type
    resource.responsibleOrgCode = IdentityWorld.school
    resource.sharingClass = sharing
    resource.openingClass = .notOpen
    return resource
  }

  /// Students of one school: personal fields of minors, a class and a score.
  static func rosterResource(_ sharing: Eduhub_Catalog_V1_SharingClass = .conditional, code: String = roster) -> Eduhub_Catalog_V1_Resource {
    var resource = resource(code, sharing)
    resource.fields = [
      field("student_id", .string), field("name", .string, .sensitive, .name), field("national_id", .string, .highlySensitive, .nationalID),
      field("birth_date", .date, .sensitive, .birthDate), field("class_name", .string), field("score", .decimal),
    ]
    resource.dataset.ingested.keyFields = ["student_id"]
    return resource
  }

  /// A consumer request.
  static func terms(
    _ code: String, org: String = county, fields: [String] = [], masking: Eduhub_Sharing_V1_MaskingLevel = .masked,
    kind: Eduhub_Sharing_V1_ConsumerKind = .org
  ) -> Eduhub_Sharing_V1_RequestAccessRequest {
    var request = Eduhub_Sharing_V1_RequestAccessRequest()
    request.terms.resourceCode = code
    request.terms.consumer.kind = kind
    request.terms.consumer.id = org
    request.terms.purpose = "学位预警分析"
    request.terms.fields = fields
    request.terms.masking = masking
    return request
  }

  static func start(_ world: IdentityWorld) async throws -> SharingFixture {
    try await world.account("steward", role: .dataSteward, org: IdentityWorld.school)
    try await world.account("bureau", role: .dataConsumer, org: county)
    try await world.account("officer", role: .securityOfficer, org: CitySeeder.cityCode)
    try await world.account("cityadmin", role: .cityAdmin, org: CitySeeder.cityCode)
    return SharingFixture(world: world)
  }

  func publish(_ resource: Eduhub_Catalog_V1_Resource) async throws -> Eduhub_Catalog_V1_Resource {
    var request = Eduhub_Catalog_V1_PublishResourceRequest()
    request.resource = resource
    return try await catalog.publishResource(request, options: try await world.options("steward"))
  }

  static func value(_ text: String) -> Eduhub_Catalog_V1_Value {
    var value = Eduhub_Catalog_V1_Value()
    value.text = text
    return value
  }

  /// Rows of the roster: id, name, ID number, birth date, class, score.
  static func student(_ index: Int, className: String = "一班", score: String = "88.5") -> [String] {
    ["S\(String(format: "%04d", index))", "王小\(index)", "51170220140501\(String(format: "%04d", index))", "2014-05-01", className, score]
  }

  func ingest(_ rows: [[String]], code: String = roster, as user: String = "steward") async throws {
    let options = try await world.options(user)
    _ = try await catalog.ingestRows(options: options) { writer in
      var message = Eduhub_Catalog_V1_IngestRowsRequest()
      message.resourceCode = code
      message.columns = ["student_id", "name", "national_id", "birth_date", "class_name", "score"]
      for row in rows {
        var ingestRow = Eduhub_Catalog_V1_IngestRow()
        ingestRow.values = row.map(Self.value)
        message.rows.append(ingestRow)
      }
      try await writer.write(message)
    }
  }

  func decide(_ id: String, _ decision: Eduhub_Sharing_V1_Decision, as user: String, reason: String = "")
    async throws -> Eduhub_Sharing_V1_AccessRequest
  {
    var request = Eduhub_Sharing_V1_DecideRequest()
    request.requestID = id
    request.decision = decision
    request.reason = reason
    return try await sharing.decide(request, options: try await world.options(user))
  }

  func change(_ grant: String, _ action: Eduhub_Sharing_V1_GrantAction, reason: String = "审计发现", expires: Int64 = 0)
    async throws -> Eduhub_Sharing_V1_Grant
  {
    var request = Eduhub_Sharing_V1_ChangeGrantRequest()
    request.grantID = grant
    request.action = action
    request.reason = reason
    request.expiresMs = expires
    return try await sharing.changeGrant(request, options: try await world.options("steward"))
  }

  /// Subscribes and collects messages until `stop` says so (or the stream ends).
  func subscribe(
    _ code: String = roster, cursor: String = "", fields: [String] = [], options: CallOptions, batch: Int32 = 0,
    until stop: @escaping @Sendable ([Eduhub_Sharing_V1_SubscribeResponse]) -> Bool
  ) async throws -> [Eduhub_Sharing_V1_SubscribeResponse] {
    var request = Eduhub_Sharing_V1_SubscribeRequest()
    request.resourceCode = code
    request.cursor = cursor
    request.fields = fields
    request.batchSize = batch
    return try await sharing.subscribe(request, options: options) { stream in
      var messages: [Eduhub_Sharing_V1_SubscribeResponse] = []
      for try await message in stream {
        messages.append(message)
        if stop(messages) { break }
      }
      return messages
    }
  }

  /// Publishes the roster, ingests `count` students and has `bureau` granted `fields` at `masking`
  /// through the whole chain; returns the grant id.
  func granted(
    count: Int = 12, fields: [String] = ["student_id", "name", "class_name", "score"], masking: Eduhub_Sharing_V1_MaskingLevel = .masked
  ) async throws -> String {
    _ = try await publish(Self.rosterResource())
    try await ingest((1...max(count, 1)).map { Self.student($0) }.prefix(count).map { $0 })
    let asked = try await sharing.requestAccess(Self.terms(Self.roster, fields: fields, masking: masking), options: try await world.options("bureau"))
    var decided = try await decide(asked.id, .approve, as: "steward")
    if decided.state == .pendingSecurity { decided = try await decide(asked.id, .approve, as: "officer") }
    #expect(decided.state == .approved)
    return decided.grantID
  }
}

func withSharing<R>(log: CapturedLog? = nil, _ body: (SharingFixture) async throws -> R) async throws -> R {
  try await withWorld(log: log) { world in try await body(try await SharingFixture.start(world)) }
}

@Suite("Sharing: requests, approval chains, grants, subscriptions, shared APIs, limits, HTTPS/JSON")
struct SharingTests {
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

  @Test("revocation ends an open stream with PERMISSION_DENIED on its next message", .timeLimit(.minutes(1)))
  func revocationEndsStream() async throws {
    try await withSharing { fixture in
      let grant = try await fixture.granted()
      let bureau = try await fixture.world.options("bureau")
      let received = Mutex(0)
      let stream = Task {
        try await fixture.subscribe(options: bureau) { messages in
          received.withLock { $0 = messages.count }
          return false
        }
      }
      while received.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(20)) }
      // The stream is idle (no new rows): the revocation's own commit must wake it. How fast is
      // the sharing benchmark's business (change-to-subscriber latency), not a unit test's.
      _ = try await fixture.change(grant, .revoke)
      await expectStatus(.permissionDenied) { try await stream.value }
    }
  }

  @Test("a dropped stream resumed from its cursor delivers every change exactly once")
  func resumeExactlyOnce() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 30)
      let bureau = try await fixture.world.options("bureau")
      // First session: the snapshot in batches of 7, then some changes; dropped mid-way.
      let firstWrites = Task { try await fixture.ingest((31...40).map { SharingFixture.student($0, score: "70") }) }
      let first = try await fixture.subscribe(options: bureau, batch: 7) { messages in
        messages.flatMap(\.changes).count >= 35
      }
      try await firstWrites.value
      // While away: updates of seen rows, new rows and a deletion.
      try await fixture.ingest((41...50).map { SharingFixture.student($0) } + [SharingFixture.student(1, score: "99")])
      let options = try await fixture.world.options("steward")
      _ = try await fixture.catalog.ingestRows(options: options) { writer in
        var message = Eduhub_Catalog_V1_IngestRowsRequest()
        message.resourceCode = SharingFixture.roster
        message.columns = ["student_id"]
        var row = Eduhub_Catalog_V1_IngestRow()
        row.values = [SharingFixture.value("S0002")]
        row.delete = true
        message.rows = [row]
        try await writer.write(message)
      }
      let cursor = try #require(first.last?.cursor)
      let second = try await fixture.subscribe(cursor: cursor, options: bureau, batch: 7) { messages in
        messages.flatMap(\.changes).contains { $0.key == "S0002" && $0.deleted }
      }
      let all = (first + second).flatMap(\.changes)
      // Each of the 50 keys arrived, none twice except as a later change (S0001 updated, S0002 deleted).
      var seen: [String: Int] = [:]
      for change in all { seen[change.key, default: 0] += 1 }
      #expect(seen.count == 50)
      #expect(seen.filter { $0.value > 1 }.keys.sorted() == ["S0001", "S0002"])
      #expect(all.last { $0.key == "S0001" }?.row.values.last?.decimal == "99")
      #expect(first.contains { $0.snapshotDone })
    }
  }

  @Test("a subscription to a view over people: rows as the grant shows them (masked); a pupil who moves to another school is deleted from it")
  func viewSubscription() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      var view = SharingFixture.resource("school.pupils", .conditional)
      view.dataset.view.collection = "person"
      view.dataset.view.personKind = "student"
      view.dataset.view.orgCode = IdentityWorld.school
      view.fields = [
        SharingFixture.field("name", .string, .sensitive, .name), SharingFixture.field("grade", .integer),
        SharingFixture.field("class_name", .string),
      ]
      _ = try await fixture.publish(view)
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(SharingFixture.terms("school.pupils", fields: ["name", "grade"]), options: bureau)
      _ = try await fixture.decide(asked.id, .approve, as: "steward")
      #expect(try await fixture.decide(asked.id, .approve, as: "officer").state == .approved)
      let moved = IdentityWorld.student
      let seen = Mutex<(keys: Set<String>, deleted: Set<String>, snapshot: Bool)>(([], [], false))
      let stream = Task {
        try await fixture.subscribe("school.pupils", options: bureau) { messages in
          seen.withLock { state in
            for change in messages.last?.changes ?? [] {
              if change.deleted { state.deleted.insert(change.key) } else { state.keys.insert(change.key) }
              if !change.deleted { #expect(change.row.values[0].text.hasSuffix("*") && change.row.masked) }  // minors' names masked
            }
            if messages.last?.snapshotDone == true { state.snapshot = true }
            return state.deleted.contains(moved)
          }
        }
      }
      while !seen.withLock({ $0.snapshot }) { try await Task.sleep(for: .milliseconds(20)) }
      #expect(seen.withLock { $0.keys.contains(moved) })
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = moved
      update.person.orgCode = IdentityWorld.otherSchool
      update.updateMask = ["org_code"]
      _ = try world.identity.updatePerson(update, caller: .operator(name: "test"), peer: "test")
      _ = try await stream.value
      #expect(seen.withLock { $0.deleted } == [moved])
    }
  }

  @Test("a slow consumer holds the server to a bounded amount of unsent rows")
  func slowConsumer() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 0)
      // 20,000 rows of about 1 KB.
      let long = String(repeating: "很", count: 300)
      for start in stride(from: 1, to: 20_001, by: 2000) {
        try await fixture.ingest((start..<start + 2000).map { SharingFixture.student($0, className: long) })
      }
      let bureau = try await fixture.world.options("bureau")
      let messages = try await fixture.subscribe(fields: ["student_id", "class_name"], options: bureau, batch: 100) { messages in
        if messages.count == 1 { Thread.sleep(forTimeInterval: 1.5) }  // stall: the server must wait
        return messages.count == 2
      }
      #expect(messages.count == 2)
      try fixture.world.node.sharing.callLog.flush()
      // The session's log: what the server had written when the client went away.
      var stats = Eduhub_Sharing_V1_CallStatsRequest()
      stats.resourceCode = SharingFixture.roster
      // The server logs the session when it notices the client gone: wait for it, however busy the machine.
      var stat: Eduhub_Sharing_V1_CallStat?
      let deadline = ContinuousClock.now + .seconds(60)
      repeat {
        try fixture.world.node.sharing.callLog.flush()
        stat = try await fixture.sharing.getCallStats(stats, options: bureau).stats.first
        if stat?.sessions == 1 { break }
        try await Task.sleep(for: .milliseconds(20))
      } while ContinuousClock.now < deadline
      #expect(stat?.sessions == 1)
      #expect((stat?.rows ?? .max) < 8000, "rows the server produced for a stalled reader: \(stat?.rows ?? -1)")
    }
  }

  @Test("de-identified grants: pseudonyms differ per consumer and stay stable; names removed")
  func pseudonyms() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...3).map { SharingFixture.student($0) })
      try await world.account("bureau2", role: .dataConsumer, org: "511722")
      func grant(_ user: String, _ org: String) async throws {
        let asked = try await fixture.sharing.requestAccess(
          SharingFixture.terms(SharingFixture.roster, org: org, fields: ["student_id", "name", "national_id"], masking: .deidentified),
          options: try await world.options(user))
        _ = try await fixture.decide(asked.id, .approve, as: "steward")
        #expect(try await fixture.decide(asked.id, .approve, as: "officer").state == .approved)
      }
      try await grant("bureau", SharingFixture.county)
      try await grant("bureau2", "511722")
      func ids(_ user: String) async throws -> [String] {
        let rows = try await fixture.subscribe(options: try await world.options(user)) { $0.last?.snapshotDone == true }.flatMap(\.changes)
        #expect(rows.allSatisfy { $0.row.values[1].null && $0.row.masked })  // names removed
        return rows.map { $0.row.values[2].text }
      }
      let first = try await ids("bureau")
      let again = try await ids("bureau")
      let other = try await ids("bureau2")
      #expect(first == again)
      #expect(Set(first).count == 3 && Set(first).isDisjoint(with: other))
      #expect(!first.contains { $0.contains("511702") })
      // Nor can a node that holds the region's pseudonym key (every clear node) compute them: a
      // consumer's key comes from a key of central's own.
      let derived = try SecretBytes(KeyedHash.hash(Array("consumer:org:\(SharingFixture.county)".utf8), key: world.identity.regionPseudonymKey))
      let guessed = try (1...3).map { try Masking.nationalID(SharingFixture.student($0)[2], key: derived) }
      #expect(Set(first).isDisjoint(with: guessed))
    }
  }

  /// Publishes an API over the roster: counts and mean scores by class, or rows by id.
  func publishApis(_ fixture: SharingFixture, sharing: Eduhub_Catalog_V1_SharingClass = .unconditional) async throws {
    var stats = SharingFixture.resource("roster.by-class", sharing, type: .api)
    stats.api.datasetCode = SharingFixture.roster
    stats.api.groupBy = ["class_name"]
    var count = Eduhub_Catalog_V1_ApiAggregate()
    count.function = .count
    var mean = Eduhub_Catalog_V1_ApiAggregate()
    mean.function = .avg
    mean.field = "score"
    stats.api.aggregates = [count, mean]
    stats.api.minGroupSize = 5
    var parameter = Eduhub_Catalog_V1_ApiParameter()
    parameter.name = "min_score"
    parameter.field = "score"
    parameter.operator = .atLeast
    stats.api.parameters = [parameter]
    let published = try await fixture.publish(stats)
    #expect(published.fields.map(\.name) == ["class_name", "count", "avg_score"])
    var lookup = SharingFixture.resource("roster.lookup", sharing, type: .api)
    lookup.api.datasetCode = SharingFixture.roster
    lookup.api.fields = ["student_id", "name", "class_name", "score"]
    var id = Eduhub_Catalog_V1_ApiParameter()
    id.name = "id"
    id.field = "student_id"
    id.required = true
    lookup.api.parameters = [id]
    _ = try await fixture.publish(lookup)
  }

  @Test("shared APIs: aggregates suppress small groups, point lookups are masked per grant, bad parameters are clear errors")
  func apis() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      // Class 一班: 6 students; 二班: 3 (below the minimum of 5); 三班: 5.
      try await fixture.ingest(
        (1...6).map { SharingFixture.student($0, className: "一班", score: "80") }
          + (7...9).map { SharingFixture.student($0, className: "二班", score: "90") }
          + (10...14).map { SharingFixture.student($0, className: "三班", score: "\(60 + $0)") })
      try await publishApis(fixture)
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.by-class"), options: bureau)
      #expect(asked.state == .approved)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.by-class"
      let groups = try await fixture.sharing.callApi(call, options: bureau)
      #expect(groups.columns == ["class_name", "count", "avg_score"])
      #expect(groups.rows.map { $0.values[0].text } == ["一班", "三班"] && groups.suppressedGroups == 1)
      #expect(groups.rows[0].values[1].integer == 6 && groups.rows[0].values[2].decimal == "80")
      #expect(groups.rows[1].values[2].decimal == "72")
      call.parameters = ["min_score": "72"]
      let high = try await fixture.sharing.callApi(call, options: bureau)
      // 一班 keeps its 6; 二班 (3) and 三班 (72, 73, 74) fall below the minimum, and with a filter
      // they are not counted (two calls differing by one person would tell each other apart).
      #expect(high.rows.map { $0.values[0].text } == ["一班"] && high.suppressedGroups == 0)
      call.parameters = ["min_score": "high"]
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(call, options: bureau) }
      call.parameters = ["grade": "9"]
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(call, options: bureau) }

      // A row API: masked per grant (the name is a minor's: surname only).
      let lookup = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.lookup"), options: bureau)
      #expect(lookup.state == .approved)
      var point = Eduhub_Sharing_V1_CallApiRequest()
      point.apiCode = "roster.lookup"
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(point, options: bureau) }  // id is required
      point.parameters = ["id": "S0007"]
      let one = try await fixture.sharing.callApi(point, options: bureau)
      #expect(one.columns == ["student_id", "name", "class_name", "score"])
      #expect(one.rows.count == 1 && one.rows[0].values[1].text == "王**" && one.rows[0].masked)
      point.parameters = ["id": "S9999"]
      #expect(try await fixture.sharing.callApi(point, options: bureau).rows.isEmpty)
      // The manual of an API shows a working curl call.
      var detail = Eduhub_Catalog_V1_GetResourceRequest()
      detail.code = "roster.lookup"
      let manual = try await fixture.catalog.getResource(detail, options: bureau).manual
      #expect(manual.curlExample.contains("/v1/apis/roster.lookup") && manual.method.hasSuffix("/CallApi"))
      // Statistics: the consumer sees its calls.
      let stats = try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: bureau)
      #expect(stats.stats.reduce(0) { $0 + $1.calls } == 7 && stats.stats.reduce(0) { $0 + $1.failures } == 3)
      // The steward sees them too; another consumer does not.
      let steward = try await world.options("steward")
      #expect(try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: steward).stats.count == stats.stats.count)
      try await world.account("other", role: .dataConsumer, org: "511722")
      #expect(try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: try await world.options("other")).stats.isEmpty)
      // A retired dataset stops its APIs.
      var retire = Eduhub_Catalog_V1_RetireResourceRequest()
      retire.code = SharingFixture.roster
      _ = try await fixture.catalog.retireResource(retire, options: steward)
      point.parameters = ["id": "S0007"]
      let retired = await expectStatus(.failedPrecondition) { try await fixture.sharing.callApi(point, options: bureau) }
      #expect(retired.contains("retired"))
    }
  }

  @Test("rate limit (RESOURCE_EXHAUSTED with retry-after) and daily quota")
  func limits() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...5).map { SharingFixture.student($0) })
      try await publishApis(fixture)
      let bureau = try await world.options("bureau")
      var terms = SharingFixture.terms("roster.lookup")
      terms.terms.ratePerSecond = 2
      _ = try await fixture.sharing.requestAccess(terms, options: bureau)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.lookup"
      call.parameters = ["id": "S0001"]
      // Two a second: within ten calls in a row one is refused, however slow the machine.
      var refusal: RPCError?
      for _ in 0..<10 where refusal == nil {
        do {
          _ = try await fixture.sharing.callApi(call, options: bureau)
        } catch let error as RPCError {
          refusal = error
        }
      }
      #expect(refusal?.code == .resourceExhausted && refusal?.trailers["retry-after"] == "1")
      try await Task.sleep(for: .milliseconds(1100))
      _ = try await fixture.sharing.callApi(call, options: bureau)

      var quota = SharingFixture.terms("roster.by-class")
      quota.terms.dailyQuota = 3
      quota.terms.ratePerSecond = 1000
      _ = try await fixture.sharing.requestAccess(quota, options: bureau)
      var stats = Eduhub_Sharing_V1_CallApiRequest()
      stats.apiCode = "roster.by-class"
      for _ in 0..<3 { _ = try await fixture.sharing.callApi(stats, options: bureau) }
      let message = await expectStatus(.resourceExhausted) { try await fixture.sharing.callApi(stats, options: bureau) }
      #expect(message.contains("quota"))
      // An online test counts against the quota too (it returns rows).
      stats.test = true
      let testMessage = await expectStatus(.resourceExhausted) { try await fixture.sharing.callApi(stats, options: bureau) }
      #expect(testMessage.contains("quota"))
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
      try await publishApis(fixture)
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

  /// Runs a command and returns its standard output, on a thread of its own (a wait on the
  /// cooperative pool would starve the server's HTTP handlers, which run there).
  static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
      Thread.detachNewThread {
        do {
          let process = Process()
          process.executableURL = URL(fileURLWithPath: executable)
          process.arguments = arguments
          let pipe = Pipe()
          process.standardOutput = pipe
          process.standardError = FileHandle.nullDevice
          try process.run()
          let data = pipe.fileHandleForReading.readDataToEndOfFile()
          process.waitUntilExit()
          continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
        } catch {
          continuation.resume(throwing: error)
        }
      }
    }
  }

  @Test("HTTPS/JSON: POST /v1/apis/{code} with curl (HTTP/1.1 and HTTP/2) and with Python's standard library")
  func httpJSON() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...3).map { SharingFixture.student($0) })
      try await publishApis(fixture)
      let token = try await world.login("bureau").accessToken
      _ = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.lookup"), options: world.bearer(token))
      let url = "http://127.0.0.1:\(world.port)/v1/apis/roster.lookup"
      for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (status, output) = try await Self.run(
          "/usr/bin/curl",
          ["-sS", version, "-w", "\n%{http_code} %{http_version}", url, "-H", "authorization: Bearer \(token)", "-H", "content-type: application/json",
           "-d", "{\"id\": \"S0002\"}"])
        #expect(status == 0)
        let lines = output.split(separator: "\n")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        let rows = try #require(json["rows"] as? [[String: Any]])
        #expect(rows.count == 1 && rows[0]["student_id"] as? String == "S0002" && rows[0]["name"] as? String == "王**")
        #expect(lines.last == (version == "--http1.1" ? "200 1.1" : "200 2"))
      }
      // Errors: no token (401), no grant (403), bad JSON (400), unknown API (404).
      func code(_ arguments: [String]) async throws -> String {
        try await Self.run("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}"] + arguments).output
      }
      #expect(try await code([url, "-d", "{}"]) == "401")
      let steward = try await world.login("steward").accessToken
      #expect(try await code([url, "-H", "authorization: Bearer \(steward)", "-d", "{\"id\":\"S0001\"}"]) == "403")
      #expect(try await code([url, "-H", "authorization: Bearer \(token)", "-H", "content-type: application/json", "-d", "[1,2"]) == "400")
      #expect(try await code(["http://127.0.0.1:\(world.port)/v1/apis/nothing", "-H", "authorization: Bearer \(token)", "-d", "{}"]) == "404")
      #expect(try await code(["--http2-prior-knowledge", url, "-H", "authorization: Bearer \(token)"]) == "405")
      // Python's standard library (urllib), as a consumer with nothing else installed would call it.
      let script = """
        import json, sys, urllib.request
        request = urllib.request.Request(sys.argv[1], data=json.dumps({"id": "S0003"}).encode(), method="POST",
            headers={"authorization": "Bearer " + sys.argv[2], "content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            body = json.load(response)
        print(response.status, body["rows"][0]["student_id"], body["columns"][1])
        """
      let (status, output) = try await Self.run("/usr/bin/env", ["python3", "-c", script, url, token])
      #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == "200 S0003 name")
      // The catalog manual's curl line works as printed once the node's address and a token are in it.
      var detail = Eduhub_Catalog_V1_GetResourceRequest()
      detail.code = "roster.lookup"
      let example = try await fixture.catalog.getResource(detail, options: world.bearer(token)).manual.curlExample
      let command = example.replacingOccurrences(of: "https://<节点地址>", with: "http://127.0.0.1:\(world.port)")
      let manual = try await Self.run("/usr/bin/env", ["TOKEN=\(token)", "/bin/sh", "-c", command])
      #expect(manual.status == 0 && manual.output.hasPrefix("{\"columns\":[\"student_id\""), "\(command) -> \(manual.output)")
      // gRPC still works on the same port after the HTTP/1 connections.
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.lookup"
      call.parameters = ["id": "S0001"]
      #expect(try await fixture.sharing.callApi(call, options: world.bearer(token)).rows.count == 1)
    }
  }
}
