import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import Foundation
import Logging
import NIOCore

/// Central, a county and one of its schools, each with its own database, on loopback.
package struct ThreeTiers {
  package let world: IdentityWorld
  package let county: CountyNode
  package let countyServer: RPCServer
  package let countyRPC: RPCClient
  package let school: SyncClient
  package let schoolDatabase: EncryptedDatabase
  package let schoolDirectory: String

  package static func start(_ world: IdentityWorld) async throws -> ThreeTiers {
    let county = try await CountyNode.enroll(in: world, clearance: .clear)
    try await county.client.syncOnce()
    var configuration = ServerConfiguration()
    configuration.busyPollBudget = nil
    let server = RPCServer(
      services: county.node.services(configuration: &configuration), configuration: configuration,
      logger: Logger(label: "test.county-server"))
    let port = try await server.start(host: "127.0.0.1", port: 0).port ?? 0
    var create = Eduhub_Sync_V1_CreateNodeRequest()
    create.nodeID = "school-5117020001"
    create.orgCode = IdentityWorld.school
    create.clearance = .clear
    let created = try county.node.sync.createNode(create, caller: .operator(name: "county"), peer: "console")
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-school-\(UUID().uuidString)").path
    let data = try NodeData.initialize(at: directory, identity: NodeIdentity(nodeID: create.nodeID, scope: created.node.scope, role: .school))
    let key = try SigningKey(seed: try data.key("node"))
    let rpc = RPCClient(host: "127.0.0.1", port: port)
    var enroll = Eduhub_Sync_V1_EnrollRequest()
    enroll.enrollmentToken = created.enrollmentToken
    enroll.publicKey = Data(key.publicKey)
    let enrolled = try await Eduhub_Sync_V1_SyncService.Client(rpc).enroll(enroll)
    if !enrolled.pseudonymKey.isEmpty { try data.replaceKey("pseudonym", with: SecretBytes(enrolled.pseudonymKey)) }
    let (database, replica) = try data.openReplica()
    let school = SyncClient(nodeID: create.nodeID, signingKey: key, store: NodeStore(replica: replica), upstream: rpc)
    try await school.syncOnce()
    return ThreeTiers(
      world: world, county: county, countyServer: server, countyRPC: rpc, school: school, schoolDatabase: database,
      schoolDirectory: directory)
  }

  package func stop() async {
    await countyRPC.close()
    await countyServer.shutdownGracefully()
    try? schoolDatabase.close()
    try? FileManager.default.removeItem(atPath: schoolDirectory)
    await county.close()
  }

  package var replicas: [Replica] { [world.identity.replica, county.node.replica, school.replica] }
}
