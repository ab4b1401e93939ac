import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Deletions are tombstones until every downstream node has pulled them, or until they are older
/// than the retention period; a node whose cursor is older than a tombstone collected that way is
/// told to resync.
extension SyncService {
  static let gcHorizonKey = "sync.gc.horizon"
  static let storeIDKey = "sync.store-id"

  /// This store's identity, made once: a cursor from another store (the database was re-created)
  /// cannot be trusted.
  func storeID() throws -> String {
    // Asked on every pull: read (or made) once, then kept.
    if let known = knownStoreID.withLock({ $0 }) { return known }
    let id = try store.transaction { db -> String in
      if let id = try store.records.meta(Self.storeIDKey, in: db) { return String(decoding: id, as: UTF8.self) }
      let id = IdentityService.newID("store-")
      try store.records.setMeta(Self.storeIDKey, Array(id.utf8), in: db)
      return id
    }
    knownStoreID.withLock { $0 = id }
    return id
  }
  /// Gives this store a new identity: after a restore from backup, every downstream node's cursor
  /// is then one from another store, so each pushes everything it wrote and pulls its scope anew
  /// (`pull` tells it to) rather than skip what this node now numbers again.
  /// - Returns: the new identity.
  @discardableResult
  public func renewStoreID() throws -> String {
    let id = IdentityService.newID("store-")
    try store.transaction { db in try store.records.setMeta(Self.storeIDKey, Array(id.utf8), in: db) }
    knownStoreID.withLock { $0 = id }
    return id
  }

  static func pulledKey(_ nodeID: String) -> String { "sync.pulled." + nodeID }
  static func pulledAtKey(_ nodeID: String) -> String { "sync.pulled-at." + nodeID }
  /// Where `PushingNode.knownThrough` of `nodeID` is kept: its pulled sequence when its last
  /// accepted push began.
  static func pushBoundKey(_ nodeID: String) -> String { "sync.pushbound." + nodeID }

  /// The sequence through which `nodeID` has applied this node's changes (from its last pull).
  func pulledThrough(_ nodeID: String, in db: Database) throws -> Int64? {
    try store.records.meta(Self.pulledKey(nodeID), in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
  }

  /// A contact record is rewritten at most this often per node (each is a write that goes up).
  static let contactEveryMs: Int64 = 5 * 60_000

  func recordPulled(_ nodeID: String, through sequence: Int64) throws {
    let now = identity.nowMs()
    try store.transaction { db in
      try store.records.setMeta(Self.pulledKey(nodeID), Array(String(sequence).utf8), in: db)
      try store.records.setMeta(Self.pulledAtKey(nodeID), Array(String(now).utf8), in: db)
      // A middle node tells the nodes above it when its own nodes last came (central has no one
      // above it; its own downstream it sees directly).
      guard let scope = try store.live(SyncCollections.node, identity.nodeID, in: db)?.scope, !scope.isEmpty else { return }
      let known = try store.live(SyncCollections.contact, nodeID, in: db).flatMap { try? SyncCollections.contact.decode($0) }
      guard known.map({ now - $0.lastPullMs >= Self.contactEveryMs || $0.lastPullMs > now }) ?? true else { return }
      var contact = Eduhub_Sync_V1_NodeContact()
      contact.nodeID = nodeID
      contact.upstreamNodeID = identity.nodeID
      contact.lastPullMs = now
      contact.behind = Self.behind(try store.records.lastSequence(in: db), pulled: sequence)
      try store.put(SyncCollections.contact, nodeID, scope: scope, contact, in: db)
    }
  }

  /// Changes after `pulled` of `last` (0 when a cursor claims more, or less than nothing).
  static func behind(_ last: Int64, pulled: Int64) -> Int64 { pulled >= last ? 0 : last - max(0, pulled) }

  /// What the nodes below this one reported of their own nodes (schools enrolled with a county,
  /// seen at central), for the nodes `ids`.
  public func reportedContacts(_ ids: [String]) throws -> [String: Eduhub_Sync_V1_NodeContact] {
    try store.read { db in
      var contacts: [String: Eduhub_Sync_V1_NodeContact] = [:]
      for id in ids {
        guard let record = try store.live(SyncCollections.contact, id, in: db), let contact = try? SyncCollections.contact.decode(record),
          contact.nodeID == id, contact.lastPullMs > 0
        else { continue }
        contacts[id] = contact
      }
      return contacts
    }
  }

  /// Where a downstream node stands: how far behind this node's changes it is, and when it last
  /// pulled (after its first sync).
  public struct Downstream: Sendable, Hashable {
    public var nodeID: String
    /// This node's changes written after the last one the node applied (of any scope: an upper
    /// bound of what it misses).
    public var behind: Int64
    /// When its last pull began (Unix milliseconds); nil before its first sync completed.
    public var lastPullMs: Int64?
  }

  /// The enrolled nodes below this one, with their lag.
  public func downstream() throws -> [Downstream] {
    try store.read { db in
      let last = try store.records.lastSequence(in: db)
      return try store.records.records(SyncCollections.node, limit: 100_000, in: db).compactMap { record in
        guard !record.deleted else { return nil }
        let id = try SyncCollections.node.decode(record).node.id
        let pulled = try pulledThrough(id, in: db)
        let at = try store.records.meta(Self.pulledAtKey(id), in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
        return Downstream(nodeID: id, behind: Self.behind(last, pulled: pulled ?? 0), lastPullMs: pulled == nil ? nil : at)
      }
    }
  }

  /// The highest sequence of a tombstone collected before some node had it: cursors below it
  /// must resync.
  func gcHorizon(in db: Database) throws -> Int64 {
    try store.records.meta(Self.gcHorizonKey, in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
  }

  /// What one collection pass did.
  public struct TombstoneCollection: Sendable, Hashable {
    public var purged = 0
    /// Of those, purged for age before every node had them.
    public var expired = 0
  }

  /// Purges tombstones that every active downstream node whose scope holds them has pulled, and
  /// those older than `retentionMs` whatever the nodes did (raising the horizon below which nodes
  /// must resync).
  @discardableResult
  public func collectTombstones(retentionMs: Int64 = 30 * 86_400_000) throws -> TombstoneCollection {
    let now = identity.nowMs()
    return try store.transaction { db in
      var nodes: [(scope: String, pulled: Int64)] = []
      for record in try store.records.records(SyncCollections.node, limit: 100_000, in: db) {
        let stored = try SyncCollections.node.decode(record)
        guard stored.node.state == .active else { continue }
        nodes.append((record.scope, try pulledThrough(stored.node.id, in: db) ?? 0))
      }
      var result = TombstoneCollection()
      var horizon = try gcHorizon(in: db)
      var after: Int64 = 0
      while true {
        let batch = try store.records.tombstones(after: after, limit: 1000, in: db)
        guard let last = batch.last else { break }
        after = last.sequence
        for tombstone in batch {
          let holders = nodes.filter { tombstone.scope.isEmpty || RecordStore.inScope(tombstone.scope, $0.scope) }
          let everyoneHasIt = holders.allSatisfy { $0.pulled >= tombstone.sequence }
          let deletedAt = (try? ReplicationEncoding.decodeStamps(tombstone.stamps))?[RecordVersion.deletionField]?.time.milliseconds
          let expired = deletedAt.map { now - Int64($0) > retentionMs } ?? false
          guard everyoneHasIt || expired else { continue }
          try store.records.purge(tombstone.collection, tombstone.id, in: db)
          result.purged += 1
          if !everyoneHasIt {
            result.expired += 1
            horizon = max(horizon, tombstone.sequence)
          }
        }
      }
      try store.records.setMeta(Self.gcHorizonKey, Array(String(horizon).utf8), in: db)
      return result
    }
  }
}
