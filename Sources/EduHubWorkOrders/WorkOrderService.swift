import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Work orders: submission, the lifecycle as immutable events, SLA clocks, queues, statistics,
/// Watch. Every order and event is a replicated record; state is derived from the events.
public final class WorkOrderService: Sendable {
  public let identity: IdentityService
  /// The node's storage (shared with every service; this one owns its own collections in it).
  public let store: NodeStore
  public let sla: SlaPolicy
  /// How long after resolution the submitter may reopen (default 7 days).
  public let reopenWindowMs: Int64
  /// Orders in memory for queues and statistics.
  let index: OrderIndex
  /// Orders numbered within a millisecond, and this node's mark in order ids.
  let idCounter = Atomic<UInt64>(0)
  let nodeTag: String

  public init(identity: IdentityService, sla: SlaPolicy = SlaPolicy(), reopenWindowMs: Int64 = 7 * 86_400_000) {
    self.identity = identity
    self.store = identity.store
    self.sla = sla
    self.reopenWindowMs = reopenWindowMs
    self.index = OrderIndex()
    self.nodeTag = KeyedHash.digest(Array(identity.nodeID.utf8), length: 16).prefix(2).map { String(format: "%02X", $0) }.joined()
    registerWriteRules()
  }

  public typealias Order = Eduhub_Workorder_V1_WorkOrder
  public typealias Event = Eduhub_Workorder_V1_OrderEvent

  // MARK: Reading

  /// The order and its events as stored, or nil.
  func load(_ id: String, in db: Database) throws -> (record: StoredRecord, order: Order, events: [Event])? {
    guard let record = try store.live(WorkOrderCollections.order, id, in: db) else { return nil }
    let order = try WorkOrderCollections.order.decode(record)
    let events = try store.records.find(WorkOrderCollections.event, index: "order", key: id, limit: 100_000, in: db)
      .map { try Event(serializedBytes: $0.body) }
    return (record, order, events)
  }

  /// The order as derived from its events, with its clocks at `now`, and its watchers.
  func view(_ record: StoredRecord, _ order: Order, _ events: [Event], now: Int64, in db: Database) throws
    -> (order: Order, derived: OrderMachine.Derived)
  {
    let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
    var shown = order
    shown.state = derived.state
    shown.serviceOrgCode = derived.serviceOrg
    shown.assigneeOrgCode = derived.assigneeOrg
    shown.assignee = derived.assignee
    shown.version = derived.version
    shown.updatedMs = derived.updatedMs
    shown.reopenCount = derived.reopenCount
    shown.feedback = derived.feedback
    shown.sla = sla.clocks(order, derived, now: now)
    shown.orgPath = record.scope
    shown.watchers = try watchers(of: order.id, in: db)
    return (shown, derived)
  }

  /// The accounts watching order `id` (from their watch marks).
  func watchers(of id: String, in db: Database) throws -> [String] {
    try store.records.find(WorkOrderCollections.watch, index: "order", key: id, limit: 1000, in: db)
      .compactMap { try? Event(serializedBytes: $0.body).actor }
  }

  /// Whether `caller` may read the order: its submitter, its assignee, or a reader or handler of
  /// the submitting org's subtree.
  func mayRead(_ order: Order, path: String, assignee: String, _ caller: Caller) -> Bool {
    Self.mayRead(submitter: order.submitter, assignee: assignee, path: path, caller)
  }

  static func mayRead(submitter: String, assignee: String, path: String, _ caller: Caller) -> Bool {
    (!caller.accountID.isEmpty && (submitter == caller.accountID || assignee == caller.accountID))
      || readsSubtree(path, caller)
  }

  /// Whether `caller` reads (or handles) every order submitted at `path`.
  static func readsSubtree(_ path: String, _ caller: Caller) -> Bool {
    caller.can(.ordersRead, at: path) || caller.can(.ordersHandle, at: path)
  }

  public func getOrder(_ request: Eduhub_Workorder_V1_GetOrderRequest, caller: Caller) throws -> Eduhub_Workorder_V1_OrderDetail {
    try store.read { db in
      guard let (record, order, events) = try load(request.id, in: db) else {
        throw RPCError(.notFound, "no work order \(request.id.prefix(64))")
      }
      let (shown, derived) = try view(record, order, events, now: identity.nowMs(), in: db)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller) else {
        throw RPCError(.notFound, "no work order \(request.id.prefix(64))")
      }
      var detail = Eduhub_Workorder_V1_OrderDetail()
      detail.order = shown
      detail.timeline = derived.timeline
      detail.attachments = try attachments(of: order.id, in: db)
      return detail
    }
  }

  // MARK: Submitting

  /// A new order id: the day, the instant and a counter (so ids grow with time: new orders are
  /// appended to the store's indexes rather than written all over them), then this node's tag and
  /// two random bytes, unique across nodes without asking anyone.
  func newID() -> String {
    let day = identity.today
    let counter = idCounter.add(1, ordering: .relaxed).newValue & 0xFFFF
    let random = Random.bytes(2)
    // Hand-formatted: String(format:) goes through Foundation's locale machinery on every call.
    func hex(_ value: UInt64, _ digits: Int) -> String {
      let text = String(value, radix: 16, uppercase: true)
      return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
    let date = UInt64(day.year * 10_000 + day.month * 100 + day.day)
    return "WO-\(date)-" + hex(UInt64(identity.nowMs()), 11) + hex(counter, 4) + "-" + nodeTag
      + hex(UInt64(random[0]) << 8 | UInt64(random[1]), 4)
  }

  public func submit(_ request: Eduhub_Workorder_V1_SubmitRequest, caller: Caller, peer: String) async throws -> Order {
    var order = request.order
    let action = "workorder.Submit"
    guard [.dataRequest, .dataQuality, .dataCorrection, .accessProblem, .safetyHazard, .syncConflict].contains(order.kind) else {
      throw Validate.invalid("kind is required")
    }
    guard [.p1, .p2, .p3, .p4].contains(order.priority) else { throw Validate.invalid("priority must be P1 to P4") }
    try Validate.text(order.title, "title", maxLength: 200, required: true)
    try Validate.text(order.description_p, "description", maxLength: 10_000, multiline: true)
    try Validate.text(order.resourceCode, "resource_code", maxLength: 64)
    try Validate.text(order.recordRef, "record_ref", maxLength: 200)
    if order.submittingOrgCode.isEmpty {
      // The caller's own org, else the org where the caller may submit.
      let home = caller.homeScope.isEmpty ? caller.scopes(for: .ordersSubmit).first ?? "" : caller.homeScope
      order.submittingOrgCode = home.split(separator: "/").last.map(String.init) ?? ""
    }
    guard !order.submittingOrgCode.isEmpty else { throw Validate.invalid("submitting_org_code is required") }
    // Only what a submitter writes is kept; derived fields are never stored.
    var submitted = Order()
    submitted.kind = order.kind
    submitted.title = order.title
    submitted.description_p = order.description_p
    submitted.priority = order.priority
    submitted.submittingOrgCode = order.submittingOrgCode
    submitted.serviceOrgCode = order.serviceOrgCode
    submitted.resourceCode = order.resourceCode
    submitted.recordRef = order.recordRef
    submitted.id = newID()
    submitted.submitter = caller.accountID.isEmpty ? caller.actor : caller.accountID
    // Everything but the writes happens before the shared transaction, on the caller's thread:
    // the transaction is the one part that runs on one thread at a time.
    guard let org = try identity.org(submitted.submittingOrgCode) else {
      throw RPCError(.notFound, "no org \(submitted.submittingOrgCode.prefix(40))")
    }
    let path = org.scope
    try identity.require(.ordersSubmit, at: path, caller, action, target: submitted.submittingOrgCode, peer: peer)
    if submitted.serviceOrgCode.isEmpty { submitted.serviceOrgCode = Self.county(of: path) }
    guard Self.ancestorPath(submitted.serviceOrgCode, of: path) != nil else {
      throw Validate.invalid("the service org must contain the submitting org (it is handled above or at it)")
    }
    submitted.createdMs = identity.nowMs()
    var mark = Event()
    mark.orderID = submitted.id
    mark.actor = submitted.submitter
    let records = try store.replica.stampNew([
      WorkOrderCollections.order.write(submitted.id, scope: path, submitted),
      WorkOrderCollections.watch.write(submitted.id + "|" + submitted.submitter, scope: path, mark),
    ])
    let audit = AuditLog.Entry(actor: caller.actor, action: action, target: submitted.id, peer: peer, timeMs: submitted.createdMs)
    // Submissions share transactions (group commit): many schools file at once. The order, the
    // submitter's watch mark (the order is new: nothing to look up) and the audit event.
    try await store.batched { [identity] db in
      try self.store.replica.insert(records, in: db)
      try identity.audit.append(audit, in: db)
    }
    // What the events (none yet) make of it.
    let derived = OrderMachine.derive(submitted, events: [], reopenWindowMs: reopenWindowMs)
    var shown = submitted
    shown.state = derived.state
    shown.updatedMs = submitted.createdMs
    shown.sla = sla.clocks(submitted, derived, now: submitted.createdMs)
    shown.orgPath = path
    shown.watchers = [submitted.submitter]
    return shown
  }

  /// The path of the org `code` when it lies on `path` (the org itself or one above it).
  static func ancestorPath(_ code: String, of path: String) -> String? {
    guard !code.isEmpty else { return nil }
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    guard let index = parts.firstIndex(where: { $0 == code }) else { return nil }
    return parts[...index].joined(separator: "/")
  }

  /// The county of the path (its second element), else the city (its first): an order's default
  /// service org, and the org its statistics count it under.
  static func county(of path: String) -> String {
    let parts = path.split(separator: "/")
    return String(parts.count >= 2 ? parts[1] : parts.first ?? "")
  }

  func setWatch(_ orderID: String, account: String, on: Bool, scope: String, in db: Database) throws {
    let id = orderID + "|" + account
    let existing = try store.live(WorkOrderCollections.watch, id, in: db)
    if on, existing == nil {
      var mark = Event()
      mark.orderID = orderID
      mark.actor = account
      try store.put(WorkOrderCollections.watch, id, scope: scope, mark, in: db)
    } else if !on, let existing {
      try store.delete(existing, in: db)
    }
  }

  public func setWatch(_ request: Eduhub_Workorder_V1_WatchOrderRequest, caller: Caller) throws -> Order {
    try store.transaction { db in
      guard let (record, order, events) = try load(request.orderID, in: db) else {
        throw RPCError(.notFound, "no work order \(request.orderID.prefix(64))")
      }
      let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller), !caller.accountID.isEmpty else {
        throw RPCError(.notFound, "no work order \(request.orderID.prefix(64))")
      }
      try setWatch(order.id, account: caller.accountID, on: request.watch, scope: record.scope, in: db)
      return try view(record, order, events, now: identity.nowMs(), in: db).order
    }
  }

  // MARK: Acting

  public func act(_ request: Eduhub_Workorder_V1_ActRequest, caller: Caller, peer: String) throws -> Eduhub_Workorder_V1_OrderDetail {
    let action = "workorder.Act"
    try Validate.text(request.note, "note", maxLength: 10_000, multiline: true)
    guard ![.unspecified, .autoClose, .slaWarning, .slaBreach].contains(request.action) else {
      throw Validate.invalid("action is required (AUTO_CLOSE and SLA marks are the system's)")
    }
    if case .UNRECOGNIZED = request.action { throw Validate.invalid("action is not known") }
    return try store.transaction { db in
      guard let (record, order, events) = try load(request.orderID, in: db) else {
        throw RPCError(.notFound, "no work order \(request.orderID.prefix(64))")
      }
      let now = identity.nowMs()
      let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller) else {
        throw RPCError(.notFound, "no work order \(request.orderID.prefix(64))")
      }
      if request.expectedVersion != 0, request.expectedVersion != derived.version {
        throw RPCError(.aborted, "work order \(order.id) changed: it is at version \(derived.version), not \(request.expectedVersion)")
      }
      guard let next = OrderMachine.transition(request.action, from: derived.state) else {
        throw RPCError(
          .failedPrecondition,
          "cannot \(Self.verb(request.action)) a work order in state \(OrderMachine.name(derived.state))")
      }
      // Orgs that handle an order contain its submitting org: their paths are prefixes of its path
      // (an edge node need not hold the records of the orgs above it).
      guard let servicePath = Self.ancestorPath(derived.serviceOrg, of: record.scope) else {
        throw RPCError(.failedPrecondition, "the service org \(derived.serviceOrg) does not contain the submitting org")
      }
      let isSubmitter = !caller.accountID.isEmpty && caller.accountID == order.submitter
      let isAssignee = !caller.accountID.isEmpty && caller.accountID == derived.assignee
      let handles = caller.can(.ordersHandle, at: servicePath)
      var event = Event()
      event.orderID = order.id
      event.action = request.action
      event.fromState = derived.state
      event.toState = next
      event.actor = caller.accountID.isEmpty ? caller.actor : caller.accountID
      event.timeMs = now
      event.note = request.note
      func deny(_ who: String) -> RPCError {
        identity.denied(caller, action, target: order.id, peer: peer, "\(Self.verb(request.action)) is for \(who)")
      }
      switch request.action {
      case .accept, .reassign:
        guard handles else { throw deny("dispatchers of the service org") }
        let org = request.assigneeOrgCode.isEmpty ? derived.serviceOrg : request.assigneeOrgCode
        guard let orgPath = Self.ancestorPath(org, of: record.scope), RecordStore.inScope(orgPath, servicePath) else {
          throw Validate.invalid("the assignee org must lie within the service org and contain the submitting org")
        }
        if !request.assignee.isEmpty {
          guard try identity.account(request.assignee, in: db) != nil else {
            throw Validate.invalid("no account \(request.assignee.prefix(64))")
          }
        }
        event.assigneeOrgCode = org
        event.assignee = request.assignee
      case .escalate:
        guard handles else { throw deny("dispatchers of the service org") }
        let parts = servicePath.split(separator: "/")
        guard parts.count >= 2 else { throw RPCError(.failedPrecondition, "the service org \(derived.serviceOrg) has no parent") }
        event.assigneeOrgCode = String(parts[parts.count - 2])
      case .start, .askRequester, .resolve:
        guard handles || isAssignee else { throw deny("the assignee and dispatchers of the service org") }
        if request.action != .start, request.note.trimmingCharacters(in: .whitespaces).isEmpty {
          throw Validate.invalid(request.action == .resolve ? "resolve needs feedback in the note" : "ask needs the question in the note")
        }
      case .reject:
        guard handles else { throw deny("dispatchers of the service org") }
        if request.note.trimmingCharacters(in: .whitespaces).isEmpty { throw Validate.invalid("reject needs a reason in the note") }
      case .answer, .verifyClose, .cancel:
        guard isSubmitter else { throw deny("the submitter") }
      case .reopen:
        guard isSubmitter else { throw deny("the submitter") }
        if let resolved = derived.resolvedMs, now - resolved > reopenWindowMs {
          throw RPCError(.failedPrecondition, "the reopen period (\(reopenWindowMs / 86_400_000) days after resolution) has passed")
        }
      case .comment:
        if request.note.trimmingCharacters(in: .whitespaces).isEmpty { throw Validate.invalid("a comment needs a note") }
      case .autoClose, .slaWarning, .slaBreach, .unspecified, .UNRECOGNIZED:
        throw Validate.invalid("action is not one a caller takes")
      }
      try appendEvent(&event, scope: record.scope, in: db)
      if isAssignee || handles { try setWatch(order.id, account: event.actor, on: true, scope: record.scope, in: db) }
      try identity.audit.append(
        .init(actor: caller.actor, action: action, target: "\(order.id) \(Self.verb(request.action))", peer: peer, timeMs: now), in: db)
      let (shown, after) = try view(record, order, events + [event], now: now, in: db)
      var detail = Eduhub_Workorder_V1_OrderDetail()
      detail.order = shown
      detail.timeline = after.timeline
      return detail
    }
  }

  /// Stamps an event with this node's clock and writes it.
  func appendEvent(_ event: inout Event, scope: String, in db: Database) throws {
    event.hlc = store.replica.clock.now().rawValue
    event.node = identity.nodeID
    event.id = Self.eventID(order: event.orderID, hlc: event.hlc, node: event.node)
    try store.put(WorkOrderCollections.event, event.id, scope: scope, event, in: db)
  }

  /// An event's id: its order, its hybrid clock (hex) and its node, unique by construction.
  static func eventID(order: String, hlc: UInt64, node: String) -> String {
    "\(order)|\(String(hlc, radix: 16))|\(node)"
  }

  /// The action as the timeline names it (`verify and close`).
  public static func verbName(_ action: Eduhub_Workorder_V1_Action) -> String { verb(action) }

  static func verb(_ action: Eduhub_Workorder_V1_Action) -> String {
    switch action {
    case .accept: "accept"
    case .reassign: "reassign"
    case .escalate: "escalate"
    case .start: "start"
    case .askRequester: "ask the requester about"
    case .answer: "answer"
    case .resolve: "resolve"
    case .verifyClose: "verify and close"
    case .reopen: "reopen"
    case .reject: "reject"
    case .cancel: "cancel"
    case .autoClose: "auto-close"
    case .comment: "comment on"
    case .slaWarning: "warn about the SLA of"
    case .slaBreach: "record an SLA breach of"
    case .unspecified, .UNRECOGNIZED: "act on"
    }
  }
}
