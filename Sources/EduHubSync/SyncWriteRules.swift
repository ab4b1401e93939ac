import EduHubAPI
import EduHubCore
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// Who may originate writes of node registrations: a node registers and manages the nodes below
/// it (CreateNode, Enroll and RevokeNode at that node), never itself, never one beside or above it,
/// and never one that reads more than it does.
extension SyncService {
  func registerWriteRules() {
    identity.declare(SyncCollections.node, writes: .checked(by: self) { $0.checkNode })
    identity.declare(unclassified: SyncCollections.contact, writes: .checked(by: self) { $0.checkContact })
  }

  /// A contact is written by the node a registered node pulls from (the pusher or a node it relays),
  /// at that node's own scope, about a node registered below it: an owned county can misreport
  /// its own schools' contact, nothing else.
  func checkContact(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "node contact \(record.id.prefix(40))"
    guard !record.deleted else { throw PushRefusal("\(what): contacts are replaced, never deleted") }
    let contact = try IdentityService.decode(Eduhub_Sync_V1_NodeContact.self, record)
    // A time of this era and a lag that is a count: the page subtracts them.
    guard contact.lastPullMs > 0, contact.lastPullMs <= identity.nowMs() + 5 * 60_000, contact.behind >= 0 else {
      throw PushRefusal("\(what): its time or lag is out of range")
    }
    let recorder = contact.upstreamNodeID
    let recorderScope = recorder == node.id ? node.scope : node.writerScopes[recorder]
    guard node.mayCarry(recorder), let recorderScope, record.scope == recorderScope, !recorderScope.isEmpty else {
      throw PushRefusal("\(what): it is not recorded by node \(node.id) or a node it relays, at that node's scope")
    }
    if let existing, existing.scope != record.scope { throw PushRefusal("\(what): a contact does not move") }
    // About a node the pusher enrolled (or relays): one of its subtree enrolled here syncs here.
    guard contact.nodeID == record.id, contact.nodeID != recorder, node.mayCarry(contact.nodeID),
      let registration = try view.live(SyncCollections.node.name, record.id),
      registration.scope != recorderScope, RecordStore.inScope(registration.scope, recorderScope)
    else { throw PushRefusal("\(what): it is not about a node registered below \(recorder)") }
  }

  func checkNode(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "node registration \(record.id.prefix(40))"
    guard record.id != node.id else { throw PushRefusal("\(what): a node cannot change its own registration") }
    // This node and the nodes above it publish their keys here: none of them is registered from below.
    guard try !identity.publishesKey(record.id, in: view) else {
      throw PushRefusal("\(what): that id is this node's or one above it")
    }
    let stored = try IdentityService.decode(Eduhub_Sync_V1_SyncNodeRecord.self, IdentityService.judged(record, existing))
    guard node.authority.can(.nodesManage, at: record.scope) else {
      throw PushRefusal("\(what): node \(node.id) could not have written it (nodes.manage is needed on \(record.scope))")
    }
    // The nodes a node enrolls stand below it: one at its own level would relay writes for its
    // whole scope under another name (free of the bounds on the pusher's own writes).
    guard existing != nil || (record.scope != node.scope && RecordStore.inScope(record.scope, node.scope)) else {
      throw PushRefusal("\(what): a node registers nodes below its own org, not at it")
    }
    // A registration stays where it was made: moved up to the pusher's level it would relay writes
    // for the whole scope.
    if let existing, existing.scope != record.scope {
      throw PushRefusal("\(what): a node's registration does not move")
    }
    if let existing {
      // Registered by someone else at the pusher's own level (a second node of its scope), or above it.
      guard existing.scope != node.scope, RecordStore.inScope(existing.scope, node.scope), !existing.scope.isEmpty else {
        throw PushRefusal("\(what): only the nodes above it change this registration")
      }
      // A node of its subtree enrolled elsewhere (here, by this node's operator) is not its own.
      guard node.mayCarry(record.id) else {
        throw PushRefusal("\(what): node \(node.id) did not enroll it")
      }
      if let old = try? SyncCollections.node.decode(existing) {
        guard old.node.state != .revoked || stored.node.state == .revoked else {
          throw PushRefusal("\(what): a revoked node stays revoked")
        }
        guard old.node.id == stored.node.id else { throw PushRefusal("\(what): its id disagrees") }
      }
    }
    guard !record.deleted else { return }
    guard stored.node.id == record.id, try IdentityService.orgPath(stored.node.orgCode, view) == record.scope else {
      throw PushRefusal("\(what): its org does not match the scope it is stored under")
    }
    guard stored.node.clearance == .masked || (stored.node.clearance == .clear && node.clear) else {
      throw PushRefusal("\(what): a node's clearance is at most its creator's (node \(node.id) is masked)")
    }
  }
}
