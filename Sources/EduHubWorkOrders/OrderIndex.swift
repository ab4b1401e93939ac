import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// What queues and statistics need of each order, held in memory and caught up from the change
/// indexes of the three work order collections (so orders and events arriving by sync count at once).
final class OrderIndex: Sendable {
  struct Summary: Sendable {
    var id: String
    var path: String
    var submitter: String
    var kind: Eduhub_Workorder_V1_OrderKind
    var priority: Eduhub_Workorder_V1_Priority
    var state: Eduhub_Workorder_V1_OrderState
    var serviceOrg: String
    var assigneeOrg: String
    var assignee: String
    var createdMs: Int64
    var updatedMs: Int64
    var reopenCount: Int32
    var everResolved: Bool
    var watchers: [String]
    /// Targets, in working minutes.
    var firstResponseTarget: Int64
    var resolutionTarget: Int64
    /// Working minutes to the first response, once it came.
    var firstResponseMinutes: Int64?
    /// When the first response clock breaches if no response comes.
    var firstResponseDueMs: Int64
    /// Resolution working minutes used while the clock is stopped (resolved, paused, ended); nil
    /// while it runs, then `resolutionDueMs` tells when it breaches.
    var resolutionMinutes: Int64?
    var resolutionDueMs: Int64
    /// When 80% of each target is used (the sweep's warnings).
    var firstResponseWarnMs: Int64
    var resolutionWarnMs: Int64
    /// SLA marks recorded: 1 first-response warning, 2 its breach, 4 resolution warning, 8 its breach.
    var marks: UInt8
    /// When it was resolved, while it is resolved.
    var resolvedMs: Int64?
  }

  /// An order as statistics count it: plain numbers (strings numbered in `Names`), so a pass over
  /// a million of them copies no reference and hashes no string.
  struct StatRow: Sendable {
    var path: Int32
    var county: Int32
    var assignee: Int32
    var state: Int32
    var kind: Int32
    var priority: Int32
    var reopened: Bool
    var everResolved: Bool
    var createdMs: Int64
    /// -1 until the first response came.
    var firstResponseMinutes: Int32
    var firstResponseTarget: Int32
    var firstResponseDueMs: Int64
    /// -1 while the resolution clock runs (then `resolutionDueMs` tells when it breaches).
    var resolutionMinutes: Int32
    var resolutionTarget: Int32
    var resolutionDueMs: Int64
    /// For queues (numbered in `Names`; -1 for none).
    var submitter: Int32
    var serviceOrg: Int32
    var assigneeOrg: Int32
  }

  /// Strings by number and numbers by string (paths, county codes, assignees).
  struct Names: Sendable {
    var names: [String] = []
    var numbers: [String: Int32] = [:]

    mutating func number(_ name: String) -> Int32 {
      if let known = numbers[name] { return known }
      names.append(name)
      numbers[name] = Int32(names.count - 1)
      return Int32(names.count - 1)
    }
  }

  private struct State {
    var orders: [String: Summary] = [:]
    var rows: [StatRow] = []
    var rowOf: [String: Int] = [:]
    /// The order of each row, and the rows whose order is gone (deleted by sync).
    var ids: [String] = []
    var gone: Set<Int> = []
    /// Row numbers by the number of their org path (a row whose path changed stays listed under
    /// the old one too: readers check `row.path`).
    var byPath: [[Int32]] = []
    var names = Names()
    var sequences: [String: Int64] = [:]

    mutating func set(_ id: String, _ summary: Summary?) {
      orders[id] = summary
      guard let summary else {
        if let index = rowOf[id] { gone.insert(index) }
        return
      }
      func number(_ name: String) -> Int32 { name.isEmpty ? -1 : names.number(name) }
      let row = StatRow(
        path: names.number(summary.path), county: names.number(WorkOrderService.county(of: summary.path)),
        assignee: summary.assignee.isEmpty ? -1 : names.number(summary.assignee), state: Int32(summary.state.rawValue),
        kind: Int32(summary.kind.rawValue), priority: Int32(summary.priority.rawValue), reopened: summary.reopenCount > 0,
        everResolved: summary.everResolved, createdMs: summary.createdMs,
        firstResponseMinutes: summary.firstResponseMinutes.map { Int32(clamping: $0) } ?? -1,
        firstResponseTarget: Int32(clamping: summary.firstResponseTarget), firstResponseDueMs: summary.firstResponseDueMs,
        resolutionMinutes: summary.resolutionMinutes.map { Int32(clamping: $0) } ?? -1,
        resolutionTarget: Int32(clamping: summary.resolutionTarget), resolutionDueMs: summary.resolutionDueMs,
        submitter: number(summary.submitter), serviceOrg: number(summary.serviceOrg), assigneeOrg: number(summary.assigneeOrg))
      let index: Int
      if let known = rowOf[id] {
        index = known
        let moved = rows[index].path != row.path
        rows[index] = row
        gone.remove(index)
        // Moves are rare: an order moved back to a path it was listed under is listed there once.
        guard moved, !byPath[Int(row.path)].contains(Int32(index)) else { return }
      } else {
        index = rows.count
        rowOf[id] = index
        rows.append(row)
        ids.append(id)
      }
      if byPath.count <= Int(row.path) { byPath += Array(repeating: [], count: Int(row.path) + 1 - byPath.count) }
      byPath[Int(row.path)].append(Int32(index))
    }
  }

  private let state = Mutex(State())
  private let loading = Mutex(())

  /// Runs `body` over the statistics rows (under the index's lock: no copy of a million rows).
  func withRows<T>(_ body: ([StatRow], Names) throws -> T) rethrows -> T {
    try state.withLock { state in try body(state.rows, state.names) }
  }

  /// The rows with what a list needs besides: each row's order id, the rows whose order is gone,
  /// and the row numbers of each org path.
  struct Lists {
    let ids: [String]
    let gone: Set<Int>
    let byPath: [[Int32]]
  }

  /// Runs `body` over the rows and their lists (under the index's lock).
  func withRows<T>(_ body: ([StatRow], Names, Lists) throws -> T) rethrows -> T {
    try state.withLock { state in try body(state.rows, state.names, Lists(ids: state.ids, gone: state.gone, byPath: state.byPath)) }
  }

  /// Catches up and returns every order's summary.
  func orders(_ service: WorkOrderService, in db: Database, stop: @Sendable () -> Bool = { false }) throws -> [String: Summary] {
    let store = service.store.records
    if state.withLock({ $0.sequences.isEmpty }) {
      // One first load at a time (a sweep and a query may both come first): the others wait for
      // it rather than load a million orders again beside it.
      try loading.withLock { _ in
        if state.withLock({ $0.sequences.isEmpty }) { try load(service, in: db, stop: stop) }
      }
    }
    let known = state.withLock { $0.sequences }
    var affected = Set<String>()
    var latest: [String: Int64] = [:]
    for collection in [WorkOrderCollections.order.name, WorkOrderCollections.event.name, WorkOrderCollections.watch.name] {
      let (records, _) = try store.changes(of: collection, after: known[collection] ?? 0, in: db)
      for record in records {
        affected.insert(collection == WorkOrderCollections.order.name ? record.id : String(record.id.prefix { $0 != "|" }))
      }
      latest[collection] = records.last?.sequence ?? known[collection] ?? 0
    }
    guard !affected.isEmpty else { return state.withLock { $0.orders } }
    let now = service.identity.nowMs()
    var summaries: [String: Summary?] = [:]
    for id in affected {
      summaries[id] = try service.load(id, in: db).map { record, order, events in
        try Self.summary(service, record, order, events, now: now, in: db)
      }
    }
    return state.withLock { state in
      // A concurrent catch-up from a newer snapshot may have gone further: keep the newest.
      let fresher = latest.allSatisfy { $0.value >= state.sequences[$0.key] ?? 0 }
      if fresher {
        for (id, summary) in summaries { state.set(id, summary) }
        state.sequences = latest
      }
      return state.orders
    }
  }

  /// The first load: orders, their events and their watch marks walked in id order together (an
  /// event's and a mark's id start with their order's), one order in memory at a time.
  private func load(_ service: WorkOrderService, in db: Database, stop: () -> Bool) throws {
    let store = service.store.records
    let through = try store.lastSequence(in: db)
    let now = service.identity.nowMs()
    /// One collection read in pages by id.
    struct Walk {
      let collection: String
      var page: [StoredRecord] = []
      var index = 0
      var after = ""
      var done = false
      mutating func peek(_ store: RecordStore, _ db: Database) throws -> StoredRecord? {
        if index == page.count, !done {
          page = try store.byID(collection, after: after, limit: 5000, in: db)
          index = 0
          done = page.count < 5000
          after = page.last?.id ?? after
        }
        return index < page.count ? page[index] : nil
      }
    }
    var orders = Walk(collection: WorkOrderCollections.order.name)
    var events = Walk(collection: WorkOrderCollections.event.name)
    var watches = Walk(collection: WorkOrderCollections.watch.name)
    var loaded: [String: Summary] = [:]
    // Records met before their order (an id that extends another, "…12" and "…123|…") wait here.
    var early: [String: [StoredRecord]] = [:]
    while let record = try orders.peek(store, db) {
      orders.index += 1
      if orders.index == 1, stop() { throw CancellationError() }
      let prefix = record.id + "|"
      func group(_ walk: inout Walk, _ kind: String) throws -> [StoredRecord] {
        var out = early.removeValue(forKey: kind + record.id) ?? []
        while let next = try walk.peek(store, db), next.id < prefix || next.id.hasPrefix(prefix) {
          walk.index += 1
          guard !next.deleted else { continue }
          if next.id.hasPrefix(prefix) {
            out.append(next)
          } else {
            early[kind + String(next.id.prefix { $0 != "|" }), default: []].append(next)
          }
        }
        return out
      }
      let orderEvents = try group(&events, "e").map { try Eduhub_Workorder_V1_OrderEvent(serializedBytes: $0.body) }
      let watchers = try group(&watches, "w").compactMap { try? Eduhub_Workorder_V1_OrderEvent(serializedBytes: $0.body).actor }
      guard !record.deleted else { continue }
      let order = try WorkOrderCollections.order.decode(record)
      loaded[record.id] = Self.summary(service, record, order, orderEvents, watchers: watchers, now: now)
    }
    state.withLock { state in
      guard state.sequences.isEmpty else { return }
      state.rows.reserveCapacity(loaded.count)
      state.ids.reserveCapacity(loaded.count)
      for (id, summary) in loaded { state.set(id, summary) }
      state.sequences = [WorkOrderCollections.order.name: through, WorkOrderCollections.event.name: through, WorkOrderCollections.watch.name: through]
    }
  }

  static func summary(
    _ service: WorkOrderService, _ record: StoredRecord, _ order: Eduhub_Workorder_V1_WorkOrder,
    _ events: [Eduhub_Workorder_V1_OrderEvent], now: Int64, in db: Database
  ) throws -> Summary {
    summary(service, record, order, events, watchers: try service.watchers(of: order.id, in: db), now: now)
  }

  static func summary(
    _ service: WorkOrderService, _ record: StoredRecord, _ order: Eduhub_Workorder_V1_WorkOrder,
    _ events: [Eduhub_Workorder_V1_OrderEvent], watchers: [String], now: Int64
  ) -> Summary {
    let derived = OrderMachine.derive(order, events: events, reopenWindowMs: service.reopenWindowMs)
    let target = service.sla.target(order.kind, order.priority)
    let sla = service.sla
    let calendar = sla.calendar
    let share = sla.warningShare
    let resolutionDue = sla.resolutionInstant(reaching: target.resolution, derived, now: now)
    let resolutionWarn = sla.resolutionInstant(reaching: Int64(share * Double(target.resolution)), derived, now: now)
    // Minutes are kept while the clock stands (resolved, paused, ended); a running one has a due time.
    let resolutionMinutes = resolutionDue == nil ? sla.resolutionUsed(derived, now: now) : nil
    return Summary(
      id: order.id, path: record.scope, submitter: order.submitter, kind: order.kind, priority: order.priority,
      state: derived.state, serviceOrg: derived.serviceOrg, assigneeOrg: derived.assigneeOrg, assignee: derived.assignee,
      createdMs: order.createdMs, updatedMs: derived.updatedMs, reopenCount: derived.reopenCount,
      everResolved: derived.timeline.contains { !$0.superseded && $0.action == .resolve }, watchers: watchers,
      firstResponseTarget: target.firstResponse, resolutionTarget: target.resolution,
      firstResponseMinutes: derived.firstResponseMs.map { calendar.workingMinutes(from: order.createdMs, to: $0) },
      firstResponseDueMs: calendar.adding(minutes: target.firstResponse, to: order.createdMs),
      resolutionMinutes: resolutionMinutes, resolutionDueMs: resolutionDue ?? .max,
      firstResponseWarnMs: calendar.adding(minutes: Int64(share * Double(target.firstResponse)), to: order.createdMs),
      resolutionWarnMs: resolutionWarn ?? .max,
      marks: [
        (OrderMachine.slaMark(.slaWarning, .firstResponse), UInt8(1)), (OrderMachine.slaMark(.slaBreach, .firstResponse), 2),
        (OrderMachine.slaMark(.slaWarning, .resolution), 4), (OrderMachine.slaMark(.slaBreach, .resolution), 8),
      ].reduce(UInt8(0)) { marks, known in derived.slaMarks.contains(known.0) ? marks | known.1 : marks },
      resolvedMs: derived.state == .resolved ? derived.resolvedMs : nil)
  }
}
