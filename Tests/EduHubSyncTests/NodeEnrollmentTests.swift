import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubSync
import EduHubTestSupport
import Foundation
import Testing

@Suite("Downstream nodes: enrollment, challenge authentication, scope and clearance")
struct NodeEnrollmentTests {
  /// Creates a node as `admin` over RPC, or (nil) as the central node's operator at its console.
  func createNode(
    _ world: IdentityWorld, _ id: String, org: String, clearance: Eduhub_Sync_V1_Clearance, as admin: CallOptions?
  ) async throws -> Eduhub_Sync_V1_CreateNodeResponse {
    var request = Eduhub_Sync_V1_CreateNodeRequest()
    request.nodeID = id
    request.orgCode = org
    request.clearance = clearance
    guard let admin else { return try world.node.sync.createNode(request, caller: .operator(name: "test"), peer: "console") }
    return try await Eduhub_Sync_V1_SyncService.Client(world.rpc).createNode(request, options: admin)
  }

  /// Enrolls with a fresh key and authenticates by signing a challenge; returns the node's token.
  func enrollAndAuthenticate(_ world: IdentityWorld, token: String, nodeID: String) async throws -> (SigningKey, String) {
    let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
    let key = SigningKey()
    var enroll = Eduhub_Sync_V1_EnrollRequest()
    enroll.enrollmentToken = token
    enroll.publicKey = Data(key.publicKey)
    let enrolled = try await sync.enroll(enroll)
    #expect(enrolled.node.state == .active && enrolled.upstreamNodeID == "test-central")
    #expect(enrolled.upstreamPublicKey.count == 32)
    return (key, try await authenticate(world, nodeID: nodeID, key: key))
  }

  func authenticate(_ world: IdentityWorld, nodeID: String, key: SigningKey) async throws -> String {
    let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
    var ask = Eduhub_Sync_V1_ChallengeRequest()
    ask.nodeID = nodeID
    let challenge = try await sync.challenge(ask).challenge
    var answer = Eduhub_Sync_V1_AuthenticateRequest()
    answer.nodeID = nodeID
    answer.challenge = challenge
    answer.signature = Data(key.sign(Array("eduhub-node-auth:".utf8) + [UInt8](challenge)))
    return try await sync.authenticate(answer).accessToken
  }

  @Test("a clear county node (made by the operator) reads its county in clear, nothing outside; a county admin, who reads it masked, cannot make one")
  func enrollClearNode() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let admin = try await world.options("tongchuan")
      let refused = await expectStatus(.permissionDenied) {
        try await createNode(world, "county-laptop", org: "511702", clearance: .clear, as: admin)
      }
      #expect(refused.contains("people.read.clear"))
      let created = try await createNode(world, "county-511702", org: "511702", clearance: .clear, as: nil)
      #expect(created.node.state == .pending && created.node.scope == "511700/511702")
      let (_, token) = try await enrollAndAuthenticate(world, token: created.enrollmentToken, nodeID: "county-511702")

      let who = try await world.client.whoAmI(options: world.bearer(token))
      #expect(who.accountID == "node:county-511702")
      #expect(who.grants.map(\.role) == [.node] && who.grants[0].orgPath == "511700/511702")
      #expect(who.grants[0].permissions.contains("sync.pull") && who.grants[0].permissions.contains("people.read.clear"))
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let child = try await world.client.getPerson(get, options: world.bearer(token))
      #expect(!child.masked)
      get.id = IdentityWorld.otherStudent
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: world.bearer(token)) }

      // The token is single-use.
      var again = Eduhub_Sync_V1_EnrollRequest()
      again.enrollmentToken = created.enrollmentToken
      again.publicKey = Data(SigningKey().publicKey)
      await expectStatus(.unauthenticated) { try await Eduhub_Sync_V1_SyncService.Client(world.rpc).enroll(again) }
      var list = Eduhub_Sync_V1_ListNodesRequest()
      list.orgCode = "511702"
      #expect(try await Eduhub_Sync_V1_SyncService.Client(world.rpc).listNodes(list, options: admin).nodes.map(\.id) == ["county-511702"])
    }
  }

  @Test("a node with masked clearance sees its own county's children masked")
  func maskedNode() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      let created = try await createNode(world, "county-masked", org: "511702", clearance: .masked, as: try await world.options("city"))
      let (_, token) = try await enrollAndAuthenticate(world, token: created.enrollmentToken, nodeID: "county-masked")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let child = try await world.client.getPerson(get, options: world.bearer(token))
      #expect(child.masked && child.nationalID.hasPrefix("ID-"))
    }
  }

  @Test("wrong signatures, replayed or foreign challenges, unknown nodes are refused and audited")
  func badAuthentication() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      let created = try await createNode(world, "school-1", org: IdentityWorld.school, clearance: .clear, as: nil)
      let (key, _) = try await enrollAndAuthenticate(world, token: created.enrollmentToken, nodeID: "school-1")
      let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
      var ask = Eduhub_Sync_V1_ChallengeRequest()
      ask.nodeID = "school-1"
      let challenge = try await sync.challenge(ask).challenge
      var answer = Eduhub_Sync_V1_AuthenticateRequest()
      answer.nodeID = "school-1"
      answer.challenge = challenge
      // Signed by another key.
      answer.signature = Data(SigningKey().sign(Array("eduhub-node-auth:".utf8) + [UInt8](challenge)))
      await expectStatus(.unauthenticated) { try await sync.authenticate(answer) }
      // The right signature works once; the same answer replayed does not.
      answer.signature = Data(key.sign(Array("eduhub-node-auth:".utf8) + [UInt8](challenge)))
      let first = try await sync.authenticate(answer).accessToken
      await expectStatus(.unauthenticated) { try await sync.authenticate(answer) }
      // A challenge with a byte changed (its expiry pushed out) is not one this node issued.
      var stretched = [UInt8](try await sync.challenge(ask).challenge)
      stretched[16] &+= 1
      answer.challenge = Data(stretched)
      answer.signature = Data(key.sign(Array("eduhub-node-auth:".utf8) + stretched))
      await expectStatus(.unauthenticated) { try await sync.authenticate(answer) }
      // Anonymous callers asking for any number of challenges lock nobody out: nothing is kept.
      for index in 0..<20_000 {
        var flood = Eduhub_Sync_V1_ChallengeRequest()
        flood.nodeID = "nobody-\(index)"
        _ = try world.openSync.challenge(flood)
      }
      let afterFlood = try await authenticate(world, nodeID: "school-1", key: key)
      _ = try await world.client.whoAmI(options: world.bearer(afterFlood))
      // A node holds a few sessions at once: authenticating again and again ends its oldest.
      for _ in 0..<SyncService.sessionsPerNode { _ = try await authenticate(world, nodeID: "school-1", key: key) }
      await expectStatus(.unauthenticated) { try await world.client.whoAmI(options: world.bearer(first)) }
      _ = try await world.client.whoAmI(options: world.bearer(try await authenticate(world, nodeID: "school-1", key: key)))
      // A challenge issued to another node id.
      ask.nodeID = "school-2"
      answer.challenge = try await sync.challenge(ask).challenge
      answer.signature = Data(key.sign(Array("eduhub-node-auth:".utf8) + [UInt8](answer.challenge)))
      await expectStatus(.unauthenticated) { try await sync.authenticate(answer) }
      // A node that does not exist gets a challenge (existence is not told) but no token.
      answer.nodeID = "school-2"
      await expectStatus(.unauthenticated) { try await sync.authenticate(answer) }
      try world.node.audit.flush()
      #expect(try world.auditCount(action: "sync.Authenticate", outcome: "failed") == 5)
      // Bad enrollment input.
      var enroll = Eduhub_Sync_V1_EnrollRequest()
      enroll.enrollmentToken = "school-1.nonsense"
      enroll.publicKey = Data([1, 2, 3])
      await expectStatus(.invalidArgument) { try await sync.enroll(enroll) }
    }
  }

  @Test("only admins with nodes.manage on the subtree create nodes; ROLE_NODE cannot be granted")
  func createDenied() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      await expectStatus(.permissionDenied) {
        try await createNode(world, "school-x", org: IdentityWorld.school, clearance: .clear, as: try await world.options("principal"))
      }
      let county = try await world.options("tongchuan")
      await expectStatus(.permissionDenied) { try await createNode(world, "school-y", org: IdentityWorld.otherSchool, clearance: .clear, as: county) }
      await expectStatus(.invalidArgument) { try await createNode(world, "bad id!", org: "511702", clearance: .clear, as: county) }
      await expectStatus(.invalidArgument) { try await createNode(world, "school-z", org: "511702", clearance: .unspecified, as: county) }
      _ = try await createNode(world, "school-z", org: IdentityWorld.school, clearance: .masked, as: county)
      await expectStatus(.alreadyExists) { try await createNode(world, "school-z", org: IdentityWorld.school, clearance: .masked, as: county) }
      var grant = Eduhub_Identity_V1_GrantRoleRequest()
      grant.accountID = try #require(try world.identity.accountID(username: "principal"))
      grant.role = .node
      grant.orgCode = IdentityWorld.school
      await expectStatus(.invalidArgument) { try await world.client.grantRole(grant, options: county) }
      #expect(try world.auditEvents(action: "sync.CreateNode").filter { $0.outcome == "denied" }.count == 2)
    }
  }

  @Test("revoking a node ends its access on the next call")
  func revoke() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      let admin = try await world.options("city")
      let created = try await createNode(world, "school-1", org: IdentityWorld.school, clearance: .clear, as: nil)
      let (key, token) = try await enrollAndAuthenticate(world, token: created.enrollmentToken, nodeID: "school-1")
      _ = try await world.client.whoAmI(options: world.bearer(token))
      var revoke = Eduhub_Sync_V1_RevokeNodeRequest()
      revoke.nodeID = "school-1"
      #expect(try await Eduhub_Sync_V1_SyncService.Client(world.rpc).revokeNode(revoke, options: admin).state == .revoked)
      await expectStatus(.unauthenticated) { try await world.client.whoAmI(options: world.bearer(token)) }
      await expectStatus(.unauthenticated) { try await authenticate(world, nodeID: "school-1", key: key) }
    }
  }
}
