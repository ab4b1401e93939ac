import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import EduHubWorkOrders
import Foundation
import PropertyBased
import SwiftProtobuf
import Synchronization
import Testing

@Suite("Push: nodes, version stamps and tokens from below buy nothing")
struct PushedNodesTests {
  /// The body of an active, masked registration of a node `id` for `org` (the world's school), with `key`.
  static func schoolNode(_ id: String, key: SigningKey, org: String = IdentityWorld.school) throws -> [UInt8] {
    var node = Eduhub_Sync_V1_SyncNodeRecord()
    node.node.id = id
    node.node.orgCode = org
    node.node.clearance = .masked
    node.node.state = .active
    node.node.publicKey = Data(key.publicKey)
    return try node.serializedBytes()
  }

  @Test("a node an owned county enrolls for a school of its own does not authenticate here; a school enrolled here is not the county's to relay or change")
  func registrationsFromBelow() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
      // A school node of the county's making, with a key it holds: accepted (a county enrolls its
      // schools), but it syncs with the county; here it is refused, authority and all.
      let key = SigningKey()
      try await owned.push([try owned.record(SyncCollections.node.name, "school-fake", scope: schoolPath, body: try Self.schoolNode("school-fake", key: key))])
      let refusal = await expectStatus(.permissionDenied) {
        try await NodeEnrollmentTests().authenticate(world, nodeID: "school-fake", key: key)
      }
      #expect(refusal.contains("enrolled by a node below"), "\(refusal)")
      // A school enrolled here directly, inside the county's subtree: the county neither writes in
      // its name nor changes its registration.
      var create = Eduhub_Sync_V1_CreateNodeRequest()
      create.nodeID = "school-direct"
      create.orgCode = IdentityWorld.school
      create.clearance = .masked
      _ = try await sync.createNode(create, options: try await world.options("city-county-511702"))
      let pupil = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      var person = try Eduhub_Identity_V1_Person(serializedBytes: pupil.body)
      person.className = "borrowed"
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, person.id, scope: pupil.scope, body: try person.serializedBytes(), over: pupil, stampedBy: "school-direct")],
        "cannot write in its name")
      let direct = try #require(try owned.stored(SyncCollections.node.name, "school-direct"))
      var revoked = try Eduhub_Sync_V1_SyncNodeRecord(serializedBytes: direct.body)
      revoked.node.state = .revoked
      try await owned.expectRefused(
        [try owned.record(SyncCollections.node.name, "school-direct", scope: direct.scope, body: try revoked.serializedBytes(), over: direct)],
        "did not enroll it")
      await owned.county.close()
    }
  }

  static func contact(_ node: String, by upstream: String, at ms: Int64 = 1_765_000_000_000) throws -> [UInt8] {
    var contact = Eduhub_Sync_V1_NodeContact()
    contact.nodeID = node
    contact.upstreamNodeID = upstream
    contact.lastPullMs = ms
    return try contact.serializedBytes()
  }

  @Test("a county reports when its own schools last pulled, at its own scope; of a school enrolled here, another county's, or in another's name, it is refused")
  func contactsFromBelow() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let countyPath = try #require(try owned.stored(IdentityCollections.org.name, "511702")).scope
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      try await owned.push([try owned.record(SyncCollections.node.name, "school-own", scope: schoolPath, body: try Self.schoolNode("school-own", key: SigningKey()))])
      var create = Eduhub_Sync_V1_CreateNodeRequest()
      create.nodeID = "school-direct"
      create.orgCode = IdentityWorld.school
      create.clearance = .masked
      _ = try await Eduhub_Sync_V1_SyncService.Client(world.rpc).createNode(create, options: try await world.options("city-county-511702"))
      // Its own school, recorded by itself at its scope: stored, and read back as reported.
      try await owned.push([try owned.record(SyncCollections.contact.name, "school-own", scope: countyPath, body: try Self.contact("school-own", by: "county-511702"))])
      #expect(try world.node.sync.reportedContacts(["school-own"])["school-own"]?.upstreamNodeID == "county-511702")
      // Times the page could not subtract, or from the future: refused.
      for ms in [Int64.min, 0, world.identity.nowMs() + 3_600_000] {
        try await owned.expectRefused(
          [try owned.record(SyncCollections.contact.name, "school-own", scope: countyPath, body: try Self.contact("school-own", by: "county-511702", at: ms), over: try owned.stored(SyncCollections.contact.name, "school-own"))],
          "out of range")
      }
      // A school enrolled here directly, in another's name, at a school's scope, or about itself: refused.
      try await owned.expectRefused(
        [try owned.record(SyncCollections.contact.name, "school-direct", scope: countyPath, body: try Self.contact("school-direct", by: "county-511702"))],
        "not about a node registered below")
      try await owned.expectRefused(
        [try owned.record(SyncCollections.contact.name, "school-own", scope: countyPath, body: try Self.contact("school-own", by: "county-511703"), over: try owned.stored(SyncCollections.contact.name, "school-own"))],
        "not recorded by node")
      try await owned.expectRefused(
        [try owned.record(SyncCollections.contact.name, "school-own", scope: schoolPath, body: try Self.contact("school-own", by: "county-511702"), over: try owned.stored(SyncCollections.contact.name, "school-own"))],
        "at that node's scope")
      try await owned.expectRefused(
        [try owned.record(SyncCollections.contact.name, "county-511702", scope: countyPath, body: try Self.contact("county-511702", by: "county-511702"))],
        "not about a node registered below")
      // A pull cursor is the upstream's own, but travels through the node: one with negative
      // positions (whose lag would not subtract) is refused before anything is recorded.
      for (sequence, snapshot) in [(Int64.min, Int64(0)), (0, -1)] {
        var cursor = Eduhub_Sync_V1_PullCursor()
        cursor.snapshotDone = true
        cursor.sequence = sequence
        cursor.snapshotSequence = snapshot
        var pull = Eduhub_Sync_V1_PullRequest()
        pull.nodeID = "county-511702"
        pull.cursor = try cursor.serializedBytes()
        await expectStatus(.invalidArgument) {
          try await Eduhub_Sync_V1_SyncService.Client(world.rpc).pull(pull, options: owned.options) { stream in for try await _ in stream {} }
        }
      }
      await owned.county.close()
    }
  }

  @Test("a push is judged against records still waiting for their index keys (a resync's): a username one of them holds is refused")
  func judgedAgainstStaged() async throws {
    try await withWorld { world in
      let teacher = try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      let owned = try await OwnedNode.start(world)
      // The teacher's account as a walk would bring it: rewritten with its keys staged.
      let store = world.identity.store.records
      let stored = try #require(try store.get(IdentityCollections.account, teacher))
      try store.database.write { db in _ = try store.put([stored], in: db, deferIndexes: true) }
      #expect(try store.find(IdentityCollections.account, index: "username", key: "tc-teacher").isEmpty)
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      var made = Eduhub_Identity_V1_AccountRecord()
      made.id = "Acopy"
      made.username = "TC-Teacher"
      made.orgCode = IdentityWorld.school
      made.state = .pendingActivation
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.account.name, made.id, scope: schoolPath, body: try made.serializedBytes())],
        "the username is already another account's")
      await owned.county.close()
    }
  }

  @Test("version metadata the node chooses buys nothing: a password hash under an older stamp in central's name, an account or a node registration with no vector or stamps, are refused")
  func chosenMetadata() async throws {
    try await withWorld { world in
      let teacher = try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      let owned = try await OwnedNode.start(world)
      let hash = try PasswordHash.hash("owned node password 1", limits: .init(opsLimit: 1, memLimit: 256 * 1024))
      // central's stamp on the hash, one millisecond older, over a value of the node's choosing: a
      // merge would keep central's, but the vector says the node saw it, so it would replace it.
      let stored = try #require(try owned.stored(IdentityCollections.account.name, teacher))
      var account = try Eduhub_Identity_V1_AccountRecord(serializedBytes: stored.body)
      account.passwordHash = hash
      var vector = try ReplicationEncoding.decodeVector(stored.version)
      try vector.increment("county-511702")
      var stamps = try ReplicationEncoding.decodeStamps(stored.stamps)
      let theirs = try #require(stamps[8])
      stamps[8] = FieldStamp(time: HLCTimestamp(milliseconds: theirs.time.milliseconds - 1, counter: 0), node: theirs.node, counter: theirs.counter)
      var older = try owned.record(IdentityCollections.account.name, teacher, scope: stored.scope, body: try account.serializedBytes(), over: stored)
      older.version = Data(ReplicationEncoding.encode(vector))
      older.stamps = Data(ReplicationEncoding.encode(stamps))
      try await owned.expectRefused([older], "changes field 8 under a stamp that is not node county-511702's")
      // A new account naming a pupil, and a school node of its own, with no version at all.
      let pupil = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      var made = Eduhub_Identity_V1_AccountRecord()
      made.id = "Abare"
      made.username = "bare-pupil"
      made.personID = IdentityWorld.student
      made.state = .active
      made.orgCode = IdentityWorld.school
      made.passwordHash = hash
      var bare = try owned.record(IdentityCollections.account.name, "Abare", scope: pupil.scope, body: try made.serializedBytes())
      bare.version = Data(ReplicationEncoding.encode(VersionVector()))
      bare.stamps = Data(ReplicationEncoding.encode([Int: FieldStamp]()))
      try await owned.expectRefused([bare], "counts no new write by node county-511702")
      // Stamped by the node but no vector entry of its own.
      bare = try owned.record(IdentityCollections.account.name, "Abare", scope: pupil.scope, body: try made.serializedBytes())
      bare.version = Data(ReplicationEncoding.encode(VersionVector()))
      try await owned.expectRefused([bare], "counts no new write by node county-511702")
      var registration = try owned.record(SyncCollections.node.name, "school-bare", scope: pupil.scope, body: try Self.schoolNode("school-bare", key: SigningKey()))
      registration.version = Data(ReplicationEncoding.encode(VersionVector()))
      registration.stamps = Data(ReplicationEncoding.encode([Int: FieldStamp]()))
      try await owned.expectRefused([registration], "counts no new write by node county-511702")
      await owned.county.close()
    }
  }

  @Test("a value stamped in the upstream's name, or a vector entry of the upstream's ahead of its own, is refused")
  func forgedStamps() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let pupil = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      var person = try Eduhub_Identity_V1_Person(serializedBytes: pupil.body)
      person.className = "forged"
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, person.id, scope: pupil.scope, body: try person.serializedBytes(), over: pupil, stampedBy: "test-central")],
        "cannot write in its name")
      // The same edit in its own name is an edit a county administrator may make.
      try await owned.push([try owned.record(IdentityCollections.person.name, person.id, scope: pupil.scope, body: try person.serializedBytes(), over: pupil)])
      #expect(try Eduhub_Identity_V1_Person(serializedBytes: try #require(try owned.stored(IdentityCollections.person.name, person.id)).body).className == person.className)
      await owned.county.close()
    }
  }

  @Test("a token an owned masked county signs for a teacher of its scope reads pupils masked at central; for anyone else it is refused")
  func tokensOfANodeBelow() async throws {
    try await withWorld { world in
      let teacher = try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      let owned = try await OwnedNode.start(world)
      let admin = try #require(try world.identity.store.records.find(IdentityCollections.account, index: "username", key: "city-county-511702").first)
      // The teacher's live session at central (sessions replicate to the county with their ids).
      _ = try await world.login("tc-teacher")
      let session = try #require(try world.identity.store.records.find(IdentityCollections.session, index: "account", key: teacher).first)
      let now = world.identity.nowSeconds
      let forged = owned.county.node.identity.tokens.issue(subject: teacher, sessionID: session.id, audience: world.identity.nodeID, now: now).token
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let seen = try await world.client.getPerson(get, options: world.bearer(forged))
      let clear = try await world.client.getPerson(get, options: try await world.options("tc-teacher"))
      #expect(seen.name != clear.name && seen.masked, "a masked node's token read a pupil in clear")
      let forAdmin = owned.county.node.identity.tokens.issue(subject: admin.id, sessionID: session.id, audience: world.identity.nodeID, now: now).token
      await expectStatus(.unauthenticated) { try await world.client.getPerson(get, options: world.bearer(forAdmin)) }
      // The county holds the session (and its digest) but not central's session key: the refresh
      // token is good where the session was opened, and nowhere else.
      let pair = try await world.login("tc-teacher")
      try await owned.county.client.syncOnce()
      var refresh = Eduhub_Identity_V1_RefreshRequest()
      refresh.refreshToken = pair.refreshToken
      #expect(throws: RPCError.self) { try owned.county.node.identity.refresh(refresh, peer: "county console") }
      #expect(try await world.client.refresh(refresh).refreshToken.isEmpty == false)
      await owned.county.close()
    }
  }

  @Test("a session a node below wrote is refreshed there, never here; a node named as central and a duplicate ID number are refused")
  func reviewFindings() async throws {
    try await withWorld { world in
      _ = try CatalogSeeder.run(into: world.node.catalog)
      let teacher = try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      let owned = try await OwnedNode.start(world)
      let account = try #require(try owned.stored(IdentityCollections.account.name, teacher))
      // A session of its own teacher, with a refresh hash the node chose: accepted (the node could
      // open it by a login there), but Refresh at central does not honour it.
      var session = Eduhub_Identity_V1_SessionRecord()
      session.id = "Sbelow"
      session.accountID = teacher
      session.createdMs = world.identity.nowMs()
      session.expiresMs = session.createdMs + 86_400_000
      session.refreshHash = IdentityService.secretDigest("chosen")
      try await owned.push([try owned.record(IdentityCollections.session.name, "Sbelow", scope: account.scope, body: try session.serializedBytes())])
      var refresh = Eduhub_Identity_V1_RefreshRequest()
      refresh.refreshToken = "Sbelow.chosen"
      await expectStatus(.unauthenticated) { try await world.client.refresh(refresh) }
      // A registration in the upstream's own name.
      var central = Eduhub_Sync_V1_SyncNodeRecord()
      central.node.id = "test-central"
      central.node.orgCode = "511702"
      central.node.clearance = .masked
      central.node.state = .active
      try await owned.expectRefused(
        [try owned.record(SyncCollections.node.name, "test-central", scope: OwnedNode.scope, body: try central.serializedBytes())],
        "this node's or one above it")
      // A person of its scope with another county pupil's ID number.
      let other = try Eduhub_Identity_V1_Person(serializedBytes: try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.otherStudent)).body)
      let pupil = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      var twin = try Eduhub_Identity_V1_Person(serializedBytes: pupil.body)
      twin.id = "Ptwin"
      twin.nationalID = other.nationalID
      twin.birthDate = other.birthDate
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.person.name, "Ptwin", scope: pupil.scope, body: try twin.serializedBytes())],
        "another person has this national_id")
      await owned.county.close()
    }
  }

  @Test("a node whose push is refused still pulls its upstream's changes")
  func pullsAfterRefusal() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      var key = Eduhub_Identity_V1_NodeKeyRecord()
      key.nodeID = "county-shadow"
      _ = try owned.county.node.replica.write([
        .init(collection: IdentityCollections.nodeKey.name, id: "county-shadow", scope: OwnedNode.scope, body: try key.serializedBytes())
      ])
      try edit(world.identity.replica, IdentityWorld.student) { $0.className = "changed at central" }
      await expectStatus(.permissionDenied) { try await owned.county.client.syncOnce() }
      #expect(try owned.county.person(IdentityWorld.student)?.className == "changed at central")
      await owned.county.close()
    }
  }

  @Test("an owned school node cannot record an order's assignee step for a teacher who is not its assignee")
  func assigneeSteps() async throws {
    try await withWorld { world in
      let assigned = try await world.account("tc-assignee", role: .teacher, org: IdentityWorld.school)
      let other = try await world.account("tc-other", role: .teacher, org: IdentityWorld.school)
      let school = try await CountyNode.enroll(in: world, id: "school-5117020001", org: IdentityWorld.school, clearance: .masked)
      var submission = WorkOrderFixture.submission()
      submission.order.submittingOrgCode = IdentityWorld.school
      let submitted = try await world.node.workOrders.submit(submission, caller: .operator(name: "school"), peer: "test")
      _ = try world.node.workOrders.act(WorkOrderFixture.act(submitted.id, .accept, assignee: assigned), caller: .operator(name: "city"), peer: "test")
      try await school.client.syncOnce()
      // Written straight into the school's database, as its owner could: "started" by the wrong teacher.
      let order = try #require(try school.store.get(WorkOrderCollections.order, submitted.id))
      var event = Eduhub_Workorder_V1_OrderEvent()
      event.orderID = submitted.id
      event.action = .start
      event.fromState = .accepted
      event.toState = .inProgress
      event.actor = other
      event.hlc = school.node.replica.clock.now().rawValue
      event.node = "school-5117020001"
      event.timeMs = world.identity.nowMs()
      let id = submitted.id + "|" + String(event.hlc, radix: 16) + "|school-5117020001"
      event.id = id
      _ = try school.node.replica.write([.init(collection: WorkOrderCollections.event.name, id: id, scope: order.scope, body: try event.serializedBytes())])
      let message = await expectStatus(.permissionDenied) { try await school.client.syncOnce() }
      #expect(message.contains("only the assignee or a handler"), "\(message)")
      #expect(try world.identity.store.records.get(WorkOrderCollections.event.name, id) == nil)
      await school.close()
    }
  }
}
