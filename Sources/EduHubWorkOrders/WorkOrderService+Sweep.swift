import EduHubAPI
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf

extension WorkOrderService {
  /// What one sweep did.
  public struct SweepReport: Sendable, Hashable {
    public var autoClosed = 0
    public var warnings = 0
    public var breaches = 0
    public var conflictOrders = 0

    public init() {}
  }

  /// Loads the order index now (a node with a million orders takes a minute or so), so the first
  /// list or statistics call after a start does not wait for it.
  /// - Parameter stop: asked between pages of 5,000 orders; true ends the load (CancellationError).
  public func warmUp(stop: @escaping @Sendable () -> Bool = { false }) throws {
    try store.read { db in try index.catchUp(self, in: db, stop: stop) }
    try index.save(self)
  }

  /// Saves the order index's changes (`OrderIndex+Snapshot`) if the last save is at least
  /// `olderThanMs` old: the sweep saves every five minutes, `serve` at its stop.
  public func saveIndex(olderThanMs: Int64 = 0) throws {
    // What was written since the last query is read first (only once the index is loaded: a stop
    // does not wait for a first load).
    if index.loaded { try store.read { db in try index.catchUp(self, in: db) } }
    try index.save(self, olderThanMs: olderThanMs)
  }

  /// The system's account name on this node (the actor of its events).
  var systemActor: String { "system:\(identity.nodeID)" }

  /// The periodic work of the system (`eduhub serve` runs it every minute): resolved orders silent
  /// for the auto-close period are closed; SLA clocks past 80% get a warning and past their target
  /// a breach, which also makes the administrators of the assignee org (or the service org) watch
  /// the order; sync conflicts logged since the last sweep become work orders.
  @discardableResult
  public func sweep(now: Int64? = nil) throws -> SweepReport {
    let now = now ?? identity.nowMs()
    var report = SweepReport()
    try store.read { db in try index.catchUp(self, in: db) }
    // Only orders whose clocks or silence call for a step are opened (the index knows when); at
    // most `sweepLimit` a run, `sweepBatch` to a transaction, so a backlog (a node back after
    // weeks) is worked off over a few runs without holding the writer from everyone else.
    let due = index.withRows { rows, _, lists in
      rows.indices.lazy.filter { !rows[$0].gone && self.needsSweep(rows[$0], now: now) }.prefix(Self.sweepLimit).map { lists.ids[$0] }
    }
    for batch in Array(due).chunked(Self.sweepBatch) {
      try store.transaction { db in
        for id in batch { try sweep(id, now: now, report: &report, in: db) }
      }
    }
    report.conflictOrders = try conflictOrders(now: now)
    try index.save(self, olderThanMs: 300_000)
    return report
  }

  static let sweepLimit = 5_000
  static let sweepBatch = 200

  /// One order's step of the sweep, in the caller's transaction (re-checked on the stored events).
  func sweep(_ id: String, now: Int64, report: inout SweepReport, in db: Database) throws {
    guard let (record, order, events) = try load(id, in: db) else { return }
    let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
    if derived.state == .resolved, let resolved = derived.resolvedMs, now - resolved > autoCloseAfterMs {
      try system(.autoClose, order, note: "验收期满自动关闭", scope: record.scope, now: now, in: db)
      report.autoClosed += 1
      return
    }
    let clocks = sla.clocks(order, derived, now: now)
    let share = sla.warningShare
    let checks: [(clock: OrderMachine.Clock, used: Int64, target: Int64, running: Bool)] = [
      (.firstResponse, clocks.firstResponseMinutes, clocks.firstResponseTargetMinutes,
       derived.firstResponseMs == nil && derived.state == .submitted),
      (.resolution, clocks.resolutionMinutes, clocks.resolutionTargetMinutes,
       derived.running.last.map { $0.end == nil } ?? false),
    ]
    for check in checks where check.running {
      if check.used > check.target, !derived.slaMarks.contains(OrderMachine.slaMark(.slaBreach, check.clock)) {
        try system(.slaBreach, order, note: check.clock.rawValue, scope: record.scope, now: now, in: db)
        try escalate(order, derived, scope: record.scope, in: db)
        report.breaches += 1
      } else if Double(check.used) >= share * Double(check.target), check.used <= check.target,
        !derived.slaMarks.contains(OrderMachine.slaMark(.slaWarning, check.clock))
      {
        try system(.slaWarning, order, note: check.clock.rawValue, scope: record.scope, now: now, in: db)
        report.warnings += 1
      }
    }
  }

  /// Whether the sweep has something to do for the order at `now`.
  func needsSweep(_ row: OrderIndex.StatRow, now: Int64) -> Bool {
    if row.resolvedMs != .min, now - row.resolvedMs > autoCloseAfterMs { return true }
    if row.firstResponseMinutes < 0, row.state == Int32(Eduhub_Workorder_V1_OrderState.submitted.rawValue) {
      if now > row.firstResponseDueMs, row.marks & 2 == 0 { return true }
      if now > row.firstResponseWarnMs, now <= row.firstResponseDueMs, row.marks & 1 == 0 { return true }
    }
    if row.resolutionMinutes < 0 {
      if now > row.resolutionDueMs, row.marks & 8 == 0 { return true }
      if now > row.resolutionWarnMs, now <= row.resolutionDueMs, row.marks & 4 == 0 { return true }
    }
    return false
  }

  /// How long a resolved order waits for its requester before it closes itself.
  var autoCloseAfterMs: Int64 { reopenWindowMs }

  /// Writes an event of the system.
  func system(
    _ action: Eduhub_Workorder_V1_Action, _ order: Order, note: String, scope: String, now: Int64, in db: Database
  ) throws {
    var event = Event()
    event.orderID = order.id
    event.action = action
    event.actor = systemActor
    event.timeMs = now
    event.note = note
    try appendEvent(&event, scope: scope, in: db)
  }

  /// On a breach: the administrators of the assignee org (or of the service org) watch the order.
  func escalate(_ order: Order, _ derived: OrderMachine.Derived, scope: String, in db: Database) throws {
    let org = derived.assigneeOrg.isEmpty ? derived.serviceOrg : derived.assigneeOrg
    for account in try identity.holders(of: [.cityAdmin, .countyAdmin, .schoolAdmin], at: org, in: db) {
      try setWatch(order.id, account: account, on: true, scope: scope, in: db)
    }
  }

  // MARK: Sync conflicts

  static let conflictCursor = "workorder.conflicts"

  /// Turns conflicts logged since the last sweep into work orders of kind sync conflict: one per
  /// conflict, in the record's org, assigned to that org's data steward when it has one. The values
  /// are shown masked as a steward (who does not read people in clear) may see them.
  func conflictOrders(now: Int64) throws -> Int {
    try store.transaction { db in
      let after = try store.records.meta(Self.conflictCursor, in: db).map { bytes in
        bytes.reduce(Int64(0)) { $0 << 8 | Int64($1) }
      } ?? 0
      let found = try store.records.conflicts(afterID: after, limit: 500, in: db)
      var created = 0
      for (id, conflict, scope) in found {
        guard let scope, let orgCode = scope.split(separator: "/").last.map(String.init),
          try identity.org(orgCode, in: db) != nil
        else { continue }
        var order = Order()
        order.id = "WO-CONFLICT-\(identity.nodeID)-\(id)"
        guard try store.records.get(WorkOrderCollections.order, order.id, in: db) == nil else { continue }
        // The record as a steward who reads people masked may name it (a row keyed by ID number
        // by its table only): the order is read by every handler and reaches masked nodes.
        let current = try store.records.get(conflict.collection, conflict.recordID, in: db)
        let recordID = try shownID(conflict, current, in: db)
        order.kind = .syncConflict
        order.priority = .p3
        order.title = "同步冲突：\(conflict.collection)/\(recordID) 字段 \(conflict.field)"
        order.description_p = try describe(conflict, current, recordID: recordID)
        order.submitter = systemActor
        order.submittingOrgCode = orgCode
        order.serviceOrgCode = orgCode
        order.recordRef = "\(conflict.collection)/\(recordID)"
        order.createdMs = now
        try store.put(WorkOrderCollections.order, order.id, scope: scope, order, in: db)
        if let steward = try identity.holders(of: [.dataSteward], at: orgCode, in: db).first {
          var event = Event()
          event.orderID = order.id
          event.action = .accept
          event.actor = systemActor
          event.timeMs = now
          event.assigneeOrgCode = orgCode
          event.assignee = steward
          event.note = "分派给本单位数据管理员"
          try appendEvent(&event, scope: scope, in: db)
          try setWatch(order.id, account: steward, on: true, scope: scope, in: db)
        }
        created += 1
      }
      if let last = found.last?.id {
        try store.records.setMeta(Self.conflictCursor, (0..<8).reversed().map { UInt8(truncatingIfNeeded: last >> ($0 * 8)) }, in: db)
      }
      return created
    }
  }

  /// Both values of a conflicting field, masked for a reader without clearance.
  /// - Parameters: current: the record as stored (nil if gone); recordID: its id as shown.
  func describe(_ conflict: RecordStore.Conflict, _ current: StoredRecord?, recordID: String) throws -> String {
    let winning = current.flatMap { try? WireFields(parsing: $0.body)[conflict.field] } ?? []
    let losing = conflict.losingValue
    func shown(_ raw: [UInt8]) -> String { identity.shownConflictValue(raw, of: conflict, current: current) }
    return "记录 \(conflict.collection)/\(recordID) 的字段 \(conflict.field) 在两个节点上被同时修改。\n"
      + "保留的值：\(shown(winning))\n被覆盖的值：\(shown(losing))"
  }

  /// The conflicting record's id as a steward without clear reads may see it.
  func shownID(_ conflict: RecordStore.Conflict, _ current: StoredRecord?, in db: Database) throws -> String {
    guard let current else { return conflict.recordID }
    var maskers = RecordMaskers(identity: identity)
    return try maskers.shownID(current, for: .staff(subject: "steward", grants: []), on: identity.today, in: db)
  }
}

extension Array {
  /// The array in consecutive pieces of at most `size`.
  func chunked(_ size: Int) -> [ArraySlice<Element>] {
    stride(from: 0, to: count, by: size).map { self[$0..<Swift.min(count, $0 + size)] }
  }
}
