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

/// A masked county node, enrolled with the world's central node and synced, whose owner pushes
/// records of its own making, authenticated with the node's key.
struct OwnedNode {
  static let scope = "511700/511702"
  let world: IdentityWorld
  let county: CountyNode
  let options: CallOptions

  static func start(_ world: IdentityWorld, clearance: Eduhub_Sync_V1_Clearance = .masked) async throws -> OwnedNode {
    let county = try await CountyNode.enroll(in: world, clearance: clearance)
    try await county.client.syncOnce()
    let token = try await county.client.authenticate()
    return OwnedNode(world: world, county: county, options: world.bearer(token))
  }

  /// Pushes `records` as the county.
  func push(_ records: [Eduhub_Sync_V1_SyncRecord]) async throws {
    var push = Eduhub_Sync_V1_PushRequest()
    push.nodeID = "county-511702"
    push.records = records
    push.throughSequence = 1
    _ = try await Eduhub_Sync_V1_SyncService.Client(world.rpc).push(options: options) { try await $0.write(push) }
  }

  /// A record as the county would write it: its own vector entry and stamps, now.
  func record(
    _ collection: String, _ id: String, scope: String, body: [UInt8], deleted: Bool = false, over existing: StoredRecord? = nil,
    stampedBy node: String = "county-511702"
  ) throws -> Eduhub_Sync_V1_SyncRecord {
    var vector = try existing.map { try ReplicationEncoding.decodeVector($0.version) } ?? VersionVector()
    try vector.increment(node)
    var stamps = try existing.map { try ReplicationEncoding.decodeStamps($0.stamps) } ?? [:]
    let fields = try WireFields(parsing: body)
    let stamp = FieldStamp(time: HLCTimestamp(milliseconds: UInt64(world.identity.nowMs()), counter: 0), node: node, counter: vector[node])
    // Every field it sets, and every field stamped before (a write that clears a field stamps it
    // too), and the deletion marker of a new record, as a real write does.
    for number in Set(fields.fields.keys).union(stamps.keys) { stamps[number] = stamp }
    if existing == nil || existing?.deleted != deleted { stamps[RecordVersion.deletionField] = stamp }
    var out = Eduhub_Sync_V1_SyncRecord()
    out.collection = collection
    out.id = id
    out.scope = scope
    out.body = Data(body)
    out.version = Data(ReplicationEncoding.encode(vector))
    out.stamps = Data(ReplicationEncoding.encode(stamps))
    out.deleted = deleted
    return out
  }

  func stored(_ collection: String, _ id: String) throws -> StoredRecord? {
    try world.identity.store.records.get(collection, id)
  }

  /// Pushes and expects the refusal to name `reason`; nothing changes at central.
  func expectRefused(_ records: [Eduhub_Sync_V1_SyncRecord], _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let before = try world.identity.store.records.lastSequence()
    let message = await expectStatus(.permissionDenied, sourceLocation: sourceLocation) { try await push(records) }
    #expect(message.contains(reason), "\(message)", sourceLocation: sourceLocation)
    #expect(try world.identity.store.records.lastSequence() == before, "a refused push changed central", sourceLocation: sourceLocation)
  }
}
