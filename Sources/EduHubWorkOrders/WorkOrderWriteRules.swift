import EduHubAPI
import EduHubCore
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// Who may originate writes of work orders. Orders, events, attachments and their chunks are
/// immutable once written; a pushed one is checked as Submit, Act, SetWatch and AddAttachment check
/// theirs, with the pushing node's authority: handlers' steps need orders.handle on the service org,
/// a system event names the pusher or a node below it, every actor is a user of the node's scope.
extension WorkOrderService {
  func registerWriteRules() {
    identity.declare(WorkOrderCollections.order, writes: .fromBelow(Self.checkOrder))
    identity.declare(WorkOrderCollections.event, writes: .checked(by: self) { $0.checkEvent })
    identity.declare(WorkOrderCollections.watch, writes: .fromBelow(Self.checkWatch))
    identity.declare(WorkOrderCollections.attachment, writes: .fromBelow(Self.checkAttachment))
    identity.declare(WorkOrderCollections.chunk, writes: .fromBelow(Self.checkChunk))
  }

  /// PushRefusal unless an immutable record arrives as it was first written.
  static func unchanged(_ record: StoredRecord, _ existing: StoredRecord?, _ what: String) throws -> Bool {
    guard !record.deleted else { throw PushRefusal("\(what): work orders are never deleted") }
    guard let existing else { return false }
    guard existing.body == record.body, existing.scope == record.scope, !existing.deleted else {
      throw PushRefusal("\(what): it is immutable once written")
    }
    return true
  }

  /// The order an event, watch or attachment belongs to, stored at the same scope.
  static func order(_ id: String, of record: StoredRecord, _ view: PushView, _ what: String) throws -> Order {
    guard let stored = try view.live(WorkOrderCollections.order.name, id), stored.scope == record.scope else {
      throw PushRefusal("\(what): its order is not stored at its scope")
    }
    return try IdentityService.decode(Order.self, stored)
  }

  static func checkOrder(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "work order \(record.id.prefix(64))"
    guard try !unchanged(record, existing, what) else { return }
    let order = try IdentityService.decode(Order.self, record)
    guard order.id == record.id, try IdentityService.orgPath(order.submittingOrgCode, view) == record.scope,
      let servicePath = try IdentityService.orgPath(order.serviceOrgCode, view), RecordStore.inScope(record.scope, servicePath)
    else { throw PushRefusal("\(what): its orgs do not match the scope it is stored under") }
    try IdentityService.requireAuthority(.ordersSubmit, at: record.scope, node, what)
    try IdentityService.checkActor(order.submitter, node, view, what)
  }

  /// An event is checked as `Act` checks the step it records, against the order as this node
  /// derives it from the events that come before it (stored ones and this message's): handlers'
  /// steps need orders.handle on the service org the order has then (escalations included) and
  /// name an assignee org as `Act` allows, the assignee's steps the assignee or a handler, the
  /// submitter's the submitter. Its id is the one `appendEvent` gives (order, clock, node), so it
  /// cannot shadow another event; a step of the pushing node's own comes after every event of the
  /// order it had pulled before it wrote (its clock had seen them), so it cannot be backdated
  /// behind a step written above; its time lies between the order's creation and now.
  func checkEvent(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "work order event \(record.id.prefix(100))"
    guard try !Self.unchanged(record, existing, what) else { return }
    let event = try IdentityService.decode(Event.self, record)
    let order = try Self.order(event.orderID, of: record, view, what)
    guard event.id == record.id, record.id == Self.eventID(order: event.orderID, hlc: event.hlc, node: event.node) else {
      throw PushRefusal("\(what): its id is not its order, clock and node")
    }
    guard node.mayCarry(event.node) else { throw PushRefusal("\(what): node \(node.id) cannot write events of node \(event.node.prefix(40))") }
    try IdentityService.checkActor(event.actor, node, view, what)
    if event.node != node.id {
      // A step written on a node it relays was taken there: by a user of that node's scope, or by
      // that node's own system.
      guard let relayed = node.writerScopes[event.node] else { throw PushRefusal("\(what): node \(event.node.prefix(40)) is not one it relays") }
      if event.actor.hasPrefix("system:") {
        guard event.actor == "system:" + event.node else { throw PushRefusal("\(what): a relayed node's system acts only as itself") }
      } else if !event.actor.hasPrefix("operator:") {
        guard let account = try identity.account(event.actor, in: view), RecordStore.inScope(account.scope, relayed) else {
          throw PushRefusal("\(what): its actor is not a user of node \(event.node.prefix(40))'s scope")
        }
      }
    }
    // Its time is its clock's (a node's clocks may be apart by the allowed drift, no more), and
    // lies between the order's creation and now.
    let drift = Int64(store.replica.clock.maxDriftMilliseconds)
    let clockMs = Int64(truncatingIfNeeded: event.hlc >> 16)
    guard event.timeMs >= order.createdMs - drift, event.timeMs <= identity.nowMs() + drift, abs(clockMs - event.timeMs) <= drift else {
      throw PushRefusal("\(what): its time lies before its order was created, in the future, or away from its clock")
    }
    let stored = try store.records.find(WorkOrderCollections.event, index: "order", key: order.id, limit: 100_000, in: view.database)
    if event.node == node.id, node.knownThrough > 0 {
      let seen = stored.filter { $0.sequence > 0 && $0.sequence <= node.knownThrough }
        .compactMap { try? Event(serializedBytes: $0.body).hlc }.max() ?? 0
      guard event.hlc > seen else {
        throw PushRefusal("\(what): it is stamped before a step of this order that node \(node.id) had already pulled")
      }
    }
    let before = try view.records(WorkOrderCollections.event.name, index: "order", key: order.id)
      .compactMap { try? Event(serializedBytes: $0.body) }.filter { OrderMachine.precedes($0, event) }
    let derived = OrderMachine.derive(order, events: before, reopenWindowMs: reopenWindowMs)
    guard let servicePath = Self.ancestorPath(derived.serviceOrg, of: record.scope) else {
      throw PushRefusal("\(what): its service org does not contain the submitting org")
    }
    // A step written on a node it relays was taken by a user of that node: it handles only
    // orders served within that node's scope.
    let writtenWithin = event.node == node.id || node.writerScopes[event.node].map { RecordStore.inScope(servicePath, $0) } == true
    let handles = writtenWithin && node.authority.can(.ordersHandle, at: servicePath)
    switch event.action {
    case .accept, .reassign:
      guard handles else { throw PushRefusal("\(what): orders.handle is needed on \(servicePath)") }
      guard let orgPath = Self.ancestorPath(event.assigneeOrgCode, of: record.scope), RecordStore.inScope(orgPath, servicePath) else {
        throw PushRefusal("\(what): its assignee org does not lie within the service org and contain the submitting org")
      }
      guard try event.assignee.isEmpty || identity.account(event.assignee, in: view) != nil else {
        throw PushRefusal("\(what): its assignee is not an account")
      }
    case .escalate:
      guard handles else { throw PushRefusal("\(what): orders.handle is needed on \(servicePath)") }
      let parts = servicePath.split(separator: "/")
      guard parts.count >= 2, event.assigneeOrgCode == parts[parts.count - 2], event.assignee.isEmpty else {
        throw PushRefusal("\(what): an escalation goes to the parent of the service org")
      }
    case .reject:
      guard handles else { throw PushRefusal("\(what): orders.handle is needed on \(servicePath)") }
    case .start, .askRequester, .resolve:
      guard handles || (!derived.assignee.isEmpty && event.actor == derived.assignee) else {
        throw PushRefusal("\(what): only the assignee or a handler takes that step")
      }
    case .answer, .verifyClose, .cancel, .reopen:
      guard event.actor == order.submitter else { throw PushRefusal("\(what): only the submitter takes that step") }
    case .autoClose, .slaWarning, .slaBreach:
      guard event.actor.hasPrefix("system:") else { throw PushRefusal("\(what): only the system takes that step") }
    case .comment:
      break  // any reader: a user of the scope, checked above
    case .unspecified, .UNRECOGNIZED:
      throw PushRefusal("\(what): no such step")
    }
    if event.action != .accept, event.action != .reassign, event.action != .escalate {
      guard event.assigneeOrgCode.isEmpty, event.assignee.isEmpty else {
        throw PushRefusal("\(what): only accept, reassign and escalate name an assignee")
      }
    }
  }

  static func checkWatch(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "watch \(record.id.prefix(100))"
    let mark = try IdentityService.decode(Event.self, IdentityService.judged(record, existing))
    _ = try order(mark.orderID, of: record, view, what)
    guard record.id == mark.orderID + "|" + mark.actor else { throw PushRefusal("\(what): its id does not name its order and watcher") }
    try IdentityService.checkActor(mark.actor, node, view, what)
  }

  static func checkAttachment(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "attachment \(record.id.prefix(100))"
    guard try !unchanged(record, existing, what) else { return }
    let attachment = try IdentityService.decode(Eduhub_Workorder_V1_Attachment.self, record)
    _ = try order(attachment.orderID, of: record, view, what)
    guard attachment.id == record.id, record.id.hasPrefix(attachment.orderID + "|") else {
      throw PushRefusal("\(what): its id does not name its order")
    }
    try IdentityService.checkActor(attachment.uploadedBy, node, view, what)
  }

  static func checkChunk(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "attachment chunk \(record.id.prefix(100))"
    guard try !unchanged(record, existing, what) else { return }
    guard let bar = record.id.lastIndex(of: "|"),
      let attachment = try view.live(WorkOrderCollections.attachment.name, String(record.id[..<bar])), attachment.scope == record.scope
    else { throw PushRefusal("\(what): its attachment is not stored at its scope") }
  }
}
