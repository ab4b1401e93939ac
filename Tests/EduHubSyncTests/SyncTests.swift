import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import GRDB
import Logging
import NIOCore
import SwiftProtobuf
import Testing

@Suite("Sync between central and a county node over loopback")
struct SyncTests {
  @Test(
    "first sync brings exactly the county's records; syncing again changes nothing (the walk checkpointed by the writer, or beside it)",
    arguments: [false, true])
  func firstSync(checkpointWalkAside: Bool) async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .clear, checkpointWalkAside: checkpointWalkAside)
      let report = try await county.client.syncOnce(batchRecords: 97)
      // The writer checkpoints on its own again after the walk.
      #expect(try county.store.database.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA wal_autocheckpoint") } == 4000)
      let expected = try world.identity.store.records.inScope(IdentityCollections.person, scope: "511700/511702", limit: 100_000)
      let got = try county.store.inScope(IdentityCollections.person, scope: "511700", limit: 100_000)
      #expect(Set(got.map(\.id)) == Set(expected.map(\.id)))
      #expect(got.allSatisfy { $0.scope.hasPrefix("511700/511702/") })
      #expect(report.batches > 3)
      // The walk's records were a bulk load with their index keys and search text built after it:
      // when the sync returns, every person is found by national ID and by name.
      for stored in got where !stored.deleted {
        let person = try Eduhub_Identity_V1_Person(serializedBytes: stored.body)
        if !person.nationalID.isEmpty {
          #expect(try county.store.find(IdentityCollections.person, index: "national_id", key: person.nationalID).map(\.id).contains(person.id))
        }
        #expect(try county.store.search(IdentityCollections.person.name, query: person.name, limit: 1000).map(\.id).contains(person.id))
      }
      // Global records (every node's public key) come too; the other county's people do not.
      #expect(try county.store.get(IdentityCollections.nodeKey, "test-central") != nil)
      #expect(try county.person(IdentityWorld.otherStudent) == nil)
      // Clear clearance: the child as central holds her.
      #expect(try county.person(IdentityWorld.student) == (try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student)).flatMap { try Eduhub_Identity_V1_Person(serializedBytes: $0.body) })
      let again = try await county.client.syncOnce()
      #expect(again.pulledFastForwarded == 0 && again.pulledMerged == 0 && again.pushed == 0)
      // A county official sees the same pseudonym on either node (the region's key came with enrollment).
      let official = Caller(
        accountID: "official", username: "official", personID: "", homeScope: "511700/511702",
        roles: [.init(grantID: "g", role: .countyAdmin, scope: "511700/511702")], children: [], issuer: "test", sessionID: "s")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let atCentral = try world.identity.getPerson(get, caller: official, peer: "test")
      let atCounty = try county.node.identity.getPerson(get, caller: official, peer: "test")
      #expect(atCentral.nationalID.hasPrefix("ID-") && atCentral.nationalID == atCounty.nationalID)
      let seen = try await county.client.handshake()
      #expect(seen.upstreamNodeID == "test-central" && seen.scope == "511700/511702" && seen.clearance == .clear)
      #expect(!seen.resyncNeeded && seen.pulledThrough > 0 && seen.lastSequence >= seen.pulledThrough)
      await county.close()
    }
  }

  @Test("edits on both sides travel both ways; the same field edited on both is merged and logged")
  func editsBothWays() async throws {
    try await withWorld { world in
      try await world.account("tongchuan-teacher", role: .teacher, org: IdentityWorld.school)
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      // An offline edit at the county, another at central, on different fields.
      try edit(county.node.replica, IdentityWorld.student) { $0.phone = "13900000001" }
      try edit(world.identity.replica, IdentityWorld.student) { $0.address = "四川省达州市通川区新街1号" }
      let report = try await county.client.syncOnce()
      #expect(report.pushed == 1)
      for person in [try county.person(IdentityWorld.student), try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student).map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body) }] {
        #expect(person?.phone == "13900000001" && person?.address == "四川省达州市通川区新街1号")
      }
      // The same field on both: one value wins everywhere, the other is kept in a conflict log.
      try edit(county.node.replica, IdentityWorld.student) { $0.className = "county-class" }
      try edit(world.identity.replica, IdentityWorld.student) { $0.className = "central-class" }
      try await county.client.syncOnce()
      try await county.client.syncOnce()
      let atCounty = try #require(try county.person(IdentityWorld.student))
      let atCentral = try #require(try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student).map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body) })
      #expect(atCounty == atCentral)
      let conflicts = try county.store.conflicts() + world.identity.store.records.conflicts()
      #expect(conflicts.contains { $0.recordID == IdentityWorld.student && $0.field == 14 })
      // An admin lists them through the RPC.
      var list = Eduhub_Sync_V1_ListConflictsRequest()
      list.orgCode = "511702"
      try await world.account("conflict-admin", role: .countyAdmin, org: "511702")
      let listed = try await Eduhub_Sync_V1_SyncService.Client(world.rpc).listConflicts(list, options: try await world.options("conflict-admin"))
      if try !world.identity.store.records.conflicts().isEmpty {
        #expect(listed.conflicts.contains { $0.recordID == IdentityWorld.student && $0.field == 14 && $0.scope.hasPrefix("511700/511702/") })
        #expect(listed.conflicts.allSatisfy { !$0.localVersion.isEmpty && !$0.remoteVersion.isEmpty && !$0.losingNode.isEmpty })
      }
      await expectStatus(.permissionDenied) {
        try await Eduhub_Sync_V1_SyncService.Client(world.rpc).listConflicts(list, options: try await world.options("tongchuan-teacher"))
      }
      // A pupil's phone edited on both: the county administrator, who reads pupils masked, sees the
      // losing number masked too.
      try edit(county.node.replica, IdentityWorld.student) { $0.phone = "13911112222" }
      try edit(world.identity.replica, IdentityWorld.student) { $0.phone = "13933334444" }
      try await county.client.syncOnce()
      try await county.client.syncOnce()
      let phones = try await Eduhub_Sync_V1_SyncService.Client(world.rpc).listConflicts(list, options: try await world.options("conflict-admin"))
        .conflicts.filter { $0.recordID == IdentityWorld.student && $0.field == 8 }
      if try world.identity.store.records.conflicts().contains(where: { $0.recordID == IdentityWorld.student && $0.field == 8 }) {
        #expect(!phones.isEmpty)
      }
      for conflict in phones {
        let text = String(decoding: conflict.losingValue, as: UTF8.self)
        #expect(!text.contains("13911112222") && !text.contains("13933334444") && !text.contains("13900000001"), "\(text)")
      }
      await county.close()
    }
  }

  @Test("a student who moves to another county is evicted from the old county's node")
  func scopeMove() async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      #expect(try county.person("S5117020001-0002") != nil)
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = "S5117020001-0002"
      update.person.orgCode = IdentityWorld.otherSchool
      update.updateMask = ["org_code"]
      _ = try world.identity.updatePerson(update, caller: .operator(name: "test"), peer: "test")
      let report = try await county.client.syncOnce()
      #expect(report.evicted >= 1)
      #expect(try county.person("S5117020001-0002") == nil)
      #expect(try world.identity.store.records.get(IdentityCollections.person, "S5117020001-0002")?.deleted == false)
      await county.close()
    }
  }

  @Test("a masked node sees its people masked and cannot overwrite real values by pushing back")
  func maskedNode() async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .masked)
      try await county.client.syncOnce()
      let seen = try #require(try county.person(IdentityWorld.student))
      #expect(seen.nationalID.hasPrefix("ID-"))
      // The county edits a field it may see (the class); the record it pushes carries masked values.
      try edit(county.node.replica, IdentityWorld.student) { $0.className = "9班" }
      try await county.client.syncOnce()
      let central = try #require(try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student).map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body) })
      #expect(central.className == "9班")
      #expect(!central.nationalID.hasPrefix("ID-") && central.nationalID.count == 18 && !central.name.contains("*"))
      await county.close()
    }
  }

  @Test("a node pushing outside its scope or pulling as another node is refused and audited")
  func scopeEnforced() async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      let token = try await county.client.authenticate()
      let options = world.bearer(token)
      let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
      var push = Eduhub_Sync_V1_PushRequest()
      push.nodeID = "county-511702"
      var record = Eduhub_Sync_V1_SyncRecord()
      record.collection = IdentityCollections.person.name
      record.id = IdentityWorld.otherStudent
      record.scope = "511700/511703/511703001/5117030001"
      record.body = Data(try world.identity.store.records.get(IdentityCollections.person.name, IdentityWorld.otherStudent)?.body ?? [])
      push.records = [record]
      push.throughSequence = 1
      await expectStatus(.permissionDenied) { try await sync.push(options: options) { try await $0.write(push) } }
      // Nor may it raise its own clearance by pushing its registration.
      let ownRecord = try #require(try world.identity.store.records.get(SyncCollections.node, "county-511702"))
      var own = Eduhub_Sync_V1_SyncRecord()
      own.collection = SyncCollections.node.name
      own.id = "county-511702"
      own.scope = ownRecord.scope
      own.body = Data(ownRecord.body)
      own.version = Data(ownRecord.version)
      own.stamps = Data(ownRecord.stamps)
      push.records = [own]
      await expectStatus(.permissionDenied) { try await sync.push(options: options) { try await $0.write(push) } }
      record.collection = "no_such_collection"
      record.scope = ownRecord.scope
      push.records = [record]
      await expectStatus(.invalidArgument) { try await sync.push(options: options) { try await $0.write(push) } }
      var pull = Eduhub_Sync_V1_PullRequest()
      pull.nodeID = "county-511703"
      await expectStatus(.permissionDenied) { try await sync.pull(pull, options: options) { stream in for try await _ in stream {} } }
      try world.node.audit.flush()
      #expect(try world.auditCount(action: "sync.Push", outcome: "denied") == 2)
      #expect(try world.auditCount(action: "sync.Pull", outcome: "denied") == 1)
      await county.close()
    }
  }

  @Test("three tiers: a school's write reaches central through its county, central's reaches the school")
  func threeTiers() async throws {
    try await withWorld { world in
      let tiers = try await ThreeTiers.start(world)
      let schoolReplica = tiers.school.replica
      #expect(try schoolReplica.store.get(IdentityCollections.person, IdentityWorld.student) != nil)
      #expect(try schoolReplica.store.get(IdentityCollections.person, "S5117030001-0001") == nil)

      // Up: the school changes a phone; school -> county -> central.
      try edit(schoolReplica, IdentityWorld.student) { $0.phone = "13911112222" }
      try await tiers.school.syncOnce()
      try await tiers.county.client.syncOnce()
      let atCentral = try #require(try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student))
      #expect(try Eduhub_Identity_V1_Person(serializedBytes: atCentral.body).phone == "13911112222")
      // Down: central changes a class; central -> county -> school.
      try edit(world.identity.replica, "S5117020001-0003") { $0.className = "7班" }
      try await tiers.county.client.syncOnce()
      try await tiers.school.syncOnce()
      let atSchool = try #require(try schoolReplica.store.get(IdentityCollections.person, "S5117020001-0003"))
      #expect(try Eduhub_Identity_V1_Person(serializedBytes: atSchool.body).className == "7班")
      // Everything settles: another round changes nothing anywhere.
      let quiet = try await tiers.county.client.syncOnce()
      let quietSchool = try await tiers.school.syncOnce()
      #expect(quiet.pushed == 0 && quiet.pulledFastForwarded == 0 && quietSchool.pushed == 0 && quietSchool.pulledFastForwarded == 0)
      await tiers.stop()
    }
  }

  @Test("a role revoked at central stops working at the county on its next call after a sync, not after the cached caller's life")
  func revocationReachesCachedCallers() async throws {
    try await withWorld { world in
      let steward = try await world.account("tc-steward", role: .dataSteward, org: "511702")
      _ = try await world.login("tc-steward")
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      let session = try #require(try county.store.find(IdentityCollections.session, index: "account", key: steward).first)
      let token = county.node.identity.tokens.issue(subject: steward, sessionID: session.id, now: world.identity.nowSeconds).token
      let authenticator = Authenticator(identity: county.node.identity)
      #expect(try authenticator.caller(for: token, peer: "test").roles.contains { $0.role == .dataSteward })
      let grant = try #require(try world.identity.store.records.find(IdentityCollections.roleGrant, index: "account", key: steward).first)
      var revoke = Eduhub_Identity_V1_RevokeRoleRequest()
      revoke.grantID = grant.id
      _ = try world.identity.revokeRole(revoke, caller: .operator(name: "test"), peer: "console")
      try await county.client.syncOnce()
      #expect(try !authenticator.caller(for: token, peer: "test").roles.contains { $0.role == .dataSteward })
      await county.close()
    }
  }

  @Test("deletes travel as tombstones, are collected once every node has them, and a node away too long resyncs")
  func tombstones() async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      let gone = "S5117020001-0004"
      let record = try #require(try world.identity.store.records.get(IdentityCollections.person, gone))
      try world.identity.replica.write([.init(collection: IdentityCollections.person.name, id: gone, scope: record.scope, body: nil)])
      // The county has not pulled it yet: the tombstone stays.
      #expect(try county.node.sync.collectTombstones().purged == 0)
      #expect(try world.openSync.collectTombstones().purged == 0)
      try await county.client.syncOnce()
      #expect(try county.store.get(IdentityCollections.person, gone)?.deleted == true)
      // The next pull tells central the county applied it: now it can go.
      try await county.client.syncOnce()
      #expect(try world.openSync.collectTombstones().purged == 1)
      #expect(try world.identity.store.records.get(IdentityCollections.person, gone) == nil)

      // Another delete, collected for age before the county pulled it: the county must resync.
      let second = "S5117020001-0005"
      let secondRecord = try #require(try world.identity.store.records.get(IdentityCollections.person, second))
      try world.identity.replica.write([.init(collection: IdentityCollections.person.name, id: second, scope: secondRecord.scope, body: nil)])
      // And an offline write at the county, which must survive the resync.
      try edit(county.node.replica, "S5117020001-0006") { $0.className = "offline-edit" }
      #expect(try world.openSync.collectTombstones(retentionMs: -1).expired == 1)
      let report = try await county.client.syncOnce()
      #expect(report.resynced)
      #expect(try county.person(second) == nil)
      #expect(try county.person("S5117020001-0006")?.className == "offline-edit")
      #expect(try county.person(IdentityWorld.student) != nil)
      let expected = try world.identity.store.records.inScope(IdentityCollections.person, scope: "511700/511702", limit: 100_000).map(\.id)
      let got = try county.store.inScope(IdentityCollections.person, scope: "511700", limit: 100_000).map(\.id)
      #expect(Set(got) == Set(expected))
      await county.close()
    }
  }

  @Test("a token the county issued verifies at central with the county's enrolled key, until it is revoked")
  func countyTokensAtCentral() async throws {
    try await withWorld { world in
      try await world.account("teacher.tc", role: .teacher, org: IdentityWorld.school, person: IdentityWorld.teacher)
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      // The teacher logs in at the county node (its replica holds the account and its hash).
      var login = Eduhub_Identity_V1_LoginRequest()
      login.login = "teacher.tc"
      login.password = IdentityWorld.password
      login.audience = world.identity.nodeID  // a token for central
      let pair = try await county.node.identity.login(login, peer: "test")
      // The session travels up with the next sync; central then accepts the county's token.
      try await county.client.syncOnce()
      let who = try await world.client.whoAmI(options: world.bearer(pair.accessToken))
      #expect(who.issuer == "county-511702" && who.username == "teacher.tc")
      var revoke = Eduhub_Sync_V1_RevokeNodeRequest()
      revoke.nodeID = "county-511702"
      _ = try world.openSync.revokeNode(revoke, caller: .operator(name: "test"), peer: "test")
      await expectStatus(.unauthenticated) { try await world.client.whoAmI(options: world.bearer(pair.accessToken)) }
      await county.close()
    }
  }

  @Test("an upstream restored from a backup tells its node to resync; the node's writes go up again")
  func upstreamRollback() async throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-rollback-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    let centralDirectory = root + "/central"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: try IdentityWorld.seededTemplate.get(), toPath: centralDirectory)
    var logger = Logger(label: "test.rollback")
    logger.logLevel = .warning
    func startCentral() async throws -> (OpenNode, RPCServer, Int) {
      let node = try NodeData.load(centralDirectory).open(identityConfiguration: IdentityWorld.testConfiguration(), logger: logger)
      var configuration = ServerConfiguration()
      configuration.busyPollBudget = nil
      let server = RPCServer(services: node.services(configuration: &configuration), configuration: configuration, logger: logger)
      let port = try await server.start(host: "127.0.0.1", port: 0).port ?? 0
      return (node, server, port)
    }
    func stop(_ central: (OpenNode, RPCServer, Int)) async {
      await central.1.shutdownGracefully()
      await central.0.close()
    }
    var central = try await startCentral()
    var create = Eduhub_Sync_V1_CreateNodeRequest()
    create.nodeID = "county-511702"
    create.orgCode = "511702"
    create.clearance = .clear
    let created = try central.0.sync.createNode(create, caller: .operator(name: "test"), peer: "test")
    let countyData = try NodeData.initialize(
      at: root + "/county", identity: NodeIdentity(nodeID: "county-511702", scope: created.node.scope, role: .county))
    let key = try SigningKey(seed: try countyData.key("node"))
    var rpc = RPCClient(host: "127.0.0.1", port: central.2)
    var enroll = Eduhub_Sync_V1_EnrollRequest()
    enroll.enrollmentToken = created.enrollmentToken
    enroll.publicKey = Data(key.publicKey)
    _ = try await Eduhub_Sync_V1_SyncService.Client(rpc).enroll(enroll)
    let (countyDatabase, county) = try countyData.openReplica()
    try await SyncClient(nodeID: "county-511702", signingKey: key, store: NodeStore(replica: county), upstream: rpc).syncOnce()

    // Central is backed up here, then the county writes and syncs.
    await rpc.close()
    await stop(central)
    try FileManager.default.copyItem(atPath: centralDirectory, toPath: root + "/backup")
    central = try await startCentral()
    rpc = RPCClient(host: "127.0.0.1", port: central.2)
    try edit(county, IdentityWorld.student) { $0.phone = "13988887777" }
    try await SyncClient(nodeID: "county-511702", signingKey: key, store: NodeStore(replica: county), upstream: rpc).syncOnce()
    #expect(try central.0.replica.store.get(IdentityCollections.person, IdentityWorld.student).map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body).phone } == "13988887777")

    // Central is restored from the backup: the county's write is gone there.
    await rpc.close()
    await stop(central)
    try FileManager.default.removeItem(atPath: centralDirectory)
    try FileManager.default.copyItem(atPath: root + "/backup", toPath: centralDirectory)
    central = try await startCentral()
    rpc = RPCClient(host: "127.0.0.1", port: central.2)
    let report = try await SyncClient(nodeID: "county-511702", signingKey: key, store: NodeStore(replica: county), upstream: rpc).syncOnce()
    #expect(report.resynced)
    let restored = try central.0.replica.store.get(IdentityCollections.person, IdentityWorld.student)
    #expect(try restored.map { try Eduhub_Identity_V1_Person(serializedBytes: $0.body).phone } == "13988887777")
    let expected = try central.0.replica.store.inScope(IdentityCollections.person, scope: "511700/511702", limit: 100_000)
    let got = try county.store.inScope(IdentityCollections.person, scope: "511700/511702", limit: 100_000)
    #expect(Set(got.map(\.id)) == Set(expected.map(\.id)))
    #expect(Set(got.map(\.body)) == Set(expected.map(\.body)))
    await rpc.close()
    await stop(central)
    try countyDatabase.close()
  }
}
