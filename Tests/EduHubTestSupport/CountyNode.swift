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
import SwiftProtobuf
import Testing

/// A county node enrolled with the world's central node, with its own encrypted database.
package struct CountyNode {
  package let directory: String
  package let node: OpenNode
  package let client: SyncClient

  package static func enroll(
    in world: IdentityWorld, id: String = "county-511702", org: String = "511702", clearance: Eduhub_Sync_V1_Clearance,
    checkpointWalkAside: Bool = false
  ) async throws -> CountyNode {
    try await world.account("city-\(id)", role: .cityAdmin)
    var create = Eduhub_Sync_V1_CreateNodeRequest()
    create.nodeID = id
    create.orgCode = org
    create.clearance = clearance
    let sync = Eduhub_Sync_V1_SyncService.Client(world.rpc)
    // A clear node is made by the node's operator (a city administrator reads children masked and
    // cannot make a node that reads more); a masked one by the city administrator over RPC.
    let created =
      clearance == .clear
      ? try world.node.sync.createNode(create, caller: Caller.operator(name: "test"), peer: "test")
      : try await sync.createNode(create, options: try await world.options("city-\(id)"))
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-county-\(UUID().uuidString)").path
    let data = try NodeData.initialize(at: directory, identity: NodeIdentity(nodeID: id, scope: created.node.scope, role: .county))
    let key = try SigningKey(seed: try data.key("node"))
    var enroll = Eduhub_Sync_V1_EnrollRequest()
    enroll.enrollmentToken = created.enrollmentToken
    enroll.publicKey = Data(key.publicKey)
    let enrolled = try await sync.enroll(enroll)
    if !enrolled.pseudonymKey.isEmpty { try data.replaceKey("pseudonym", with: SecretBytes(enrolled.pseudonymKey)) }
    var logger = Logger(label: "test.county")
    logger.logLevel = .warning
    var configuration = IdentityWorld.testConfiguration()
    configuration.hashingThreads = 1
    let node = try data.open(identityConfiguration: configuration, logger: logger)
    let identity = node.identity
    let client = SyncClient(
      nodeID: id, signingKey: key, store: node.identity.store, upstream: world.rpc, checkpointWalkAside: checkpointWalkAside,
      onApplied: { identity.applied(collections: $0) })
    return CountyNode(directory: directory, node: node, client: client)
  }

  package func close() async {
    await node.close()
    try? FileManager.default.removeItem(atPath: directory)
  }

  package var store: RecordStore { node.replica.store }

  package func person(_ id: String) throws -> Eduhub_Identity_V1_Person? {
    try store.get(IdentityCollections.person, id).flatMap { $0.deleted ? nil : try Eduhub_Identity_V1_Person(serializedBytes: $0.body) }
  }
}

/// Writes `change` to person `id` on `replica`, as a local edit: read, changed and written in one
/// transaction, as the services do (a sync applying between a read and a write would otherwise be
/// overwritten).
package func edit(_ replica: Replica, _ id: String, _ change: (inout Eduhub_Identity_V1_Person) -> Void) throws {
  try replica.store.database.write { db in
    let record = try #require(try replica.store.get(IdentityCollections.person, id, in: db))
    var person = try Eduhub_Identity_V1_Person(serializedBytes: record.body)
    change(&person)
    try replica.write(
      [.init(collection: IdentityCollections.person.name, id: id, scope: record.scope, body: try person.serializedBytes())], in: db)
  }
}
