import EduHubAPI
import EduHubIdentity
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
  }

  private struct State {
    var orders: [String: Summary] = [:]
    var sequences: [String: Int64] = [:]
  }

  private let state = Mutex(State())

  /// Catches up and returns every order's summary.
  func orders(_ service: WorkOrderService, in db: Database) throws -> [String: Summary] {
    let store = service.identity.store
    let known = state.withLock { $0.sequences }
    var affected = Set<String>()
    var latest: [String: Int64] = [:]
    for collection in [WorkOrderCollections.order, WorkOrderCollections.event, WorkOrderCollections.watch] {
      let (records, _) = try store.changes(of: collection, after: known[collection] ?? 0, in: db)
      for record in records {
        affected.insert(collection == WorkOrderCollections.order ? record.id : String(record.id.prefix { $0 != "|" }))
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
        for (id, summary) in summaries { state.orders[id] = summary }
        state.sequences = latest
      }
      return state.orders
    }
  }

  static func summary(
    _ service: WorkOrderService, _ record: StoredRecord, _ order: Eduhub_Workorder_V1_WorkOrder,
    _ events: [Eduhub_Workorder_V1_OrderEvent], now: Int64, in db: Database
  ) throws -> Summary {
    let derived = OrderMachine.derive(order, events: events, reopenWindowMs: service.reopenWindowMs)
    let target = service.sla.target(order.kind, order.priority)
    let calendar = service.sla.calendar
    var resolutionMinutes: Int64?
    var resolutionDue = Int64.max
    if let open = derived.running.last, open.end == nil {
      let before = derived.running.dropLast().reduce(Int64(0)) { $0 + calendar.workingMinutes(from: $1.start, to: $1.end ?? now) }
      resolutionDue = calendar.adding(minutes: max(0, target.resolution - before), to: open.start)
    } else {
      resolutionMinutes = derived.running.reduce(Int64(0)) { $0 + calendar.workingMinutes(from: $1.start, to: $1.end ?? now) }
    }
    let watchers = try service.identity.store.find(WorkOrderCollections.watch, index: "order", key: order.id, limit: 1000, in: db)
      .compactMap { try? Eduhub_Workorder_V1_OrderEvent(serializedBytes: $0.body).actor }
    return Summary(
      id: order.id, path: record.scope, submitter: order.submitter, kind: order.kind, priority: order.priority,
      state: derived.state, serviceOrg: derived.serviceOrg, assigneeOrg: derived.assigneeOrg, assignee: derived.assignee,
      createdMs: order.createdMs, updatedMs: derived.updatedMs, reopenCount: derived.reopenCount,
      everResolved: derived.timeline.contains { !$0.superseded && $0.action == .resolve }, watchers: watchers,
      firstResponseTarget: target.firstResponse, resolutionTarget: target.resolution,
      firstResponseMinutes: derived.firstResponseMs.map { calendar.workingMinutes(from: order.createdMs, to: $0) },
      firstResponseDueMs: calendar.adding(minutes: target.firstResponse, to: order.createdMs),
      resolutionMinutes: resolutionMinutes, resolutionDueMs: resolutionDue)
  }
}
