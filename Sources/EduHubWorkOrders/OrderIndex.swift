import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// What queues and statistics need of each order, held in memory as plain-number rows and caught
/// up from the change indexes of the three work order collections (so orders and events arriving by
/// sync count at once). The rows are saved in the store now and then (`OrderIndex+Snapshot`): a node
/// that served before starts from them and reads only the changes since, instead of deriving a
/// million orders from ten million events again.
final class OrderIndex: Sendable {
  /// What one order is now, derived from its record and events; the index keeps it as a `StatRow`.
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
    var reopenCount: Int32
    var everResolved: Bool
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

  /// An order as queues, statistics and the sweep see it: plain numbers (strings numbered in
  /// `Names`), so a pass over a million of them copies no reference and hashes no string.
  struct StatRow: Sendable, Equatable {
    var path: Int32
    var county: Int32
    var assignee: Int32
    var state: Int32
    var kind: Int32
    var priority: Int32
    var reopened: Bool
    var everResolved: Bool
    /// The order left this node's store (evicted from its scope): counted nowhere.
    var gone: Bool
    /// SLA marks recorded: 1 first-response warning, 2 its breach, 4 resolution warning, 8 its breach.
    var marks: UInt8
    var createdMs: Int64
    /// -1 until the first response came.
    var firstResponseMinutes: Int32
    var firstResponseTarget: Int32
    var firstResponseDueMs: Int64
    var firstResponseWarnMs: Int64
    /// -1 while the resolution clock runs (then `resolutionDueMs` tells when it breaches).
    var resolutionMinutes: Int32
    var resolutionTarget: Int32
    var resolutionDueMs: Int64
    var resolutionWarnMs: Int64
    /// When it was resolved, while it is resolved; `Int64.min` otherwise.
    var resolvedMs: Int64
    /// For queues (numbered in `Names`; -1 for none).
    var submitter: Int32
    var serviceOrg: Int32
    var assigneeOrg: Int32

    init(_ summary: Summary, names: inout Names) {
      func number(_ name: String) -> Int32 { name.isEmpty ? -1 : names.number(name) }
      path = names.number(summary.path)
      county = names.number(WorkOrderService.county(of: summary.path))
      assignee = number(summary.assignee)
      state = Int32(summary.state.rawValue)
      kind = Int32(summary.kind.rawValue)
      priority = Int32(summary.priority.rawValue)
      reopened = summary.reopenCount > 0
      everResolved = summary.everResolved
      gone = false
      marks = summary.marks
      createdMs = summary.createdMs
      firstResponseMinutes = summary.firstResponseMinutes.map { Int32(clamping: $0) } ?? -1
      firstResponseTarget = Int32(clamping: summary.firstResponseTarget)
      firstResponseDueMs = summary.firstResponseDueMs
      firstResponseWarnMs = summary.firstResponseWarnMs
      resolutionMinutes = summary.resolutionMinutes.map { Int32(clamping: $0) } ?? -1
      resolutionTarget = Int32(clamping: summary.resolutionTarget)
      resolutionDueMs = summary.resolutionDueMs
      resolutionWarnMs = summary.resolutionWarnMs
      resolvedMs = summary.resolvedMs ?? .min
      submitter = number(summary.submitter)
      serviceOrg = number(summary.serviceOrg)
      assigneeOrg = number(summary.assigneeOrg)
    }

    /// A row as saved (`OrderIndex+Snapshot`).
    init(
      path: Int32, county: Int32, assignee: Int32, state: Int32, kind: Int32, priority: Int32, reopened: Bool, everResolved: Bool,
      gone: Bool, marks: UInt8, createdMs: Int64, firstResponseMinutes: Int32, firstResponseTarget: Int32, firstResponseDueMs: Int64,
      firstResponseWarnMs: Int64, resolutionMinutes: Int32, resolutionTarget: Int32, resolutionDueMs: Int64, resolutionWarnMs: Int64,
      resolvedMs: Int64, submitter: Int32, serviceOrg: Int32, assigneeOrg: Int32
    ) {
      self.path = path
      self.county = county
      self.assignee = assignee
      self.state = state
      self.kind = kind
      self.priority = priority
      self.reopened = reopened
      self.everResolved = everResolved
      self.gone = gone
      self.marks = marks
      self.createdMs = createdMs
      self.firstResponseMinutes = firstResponseMinutes
      self.firstResponseTarget = firstResponseTarget
      self.firstResponseDueMs = firstResponseDueMs
      self.firstResponseWarnMs = firstResponseWarnMs
      self.resolutionMinutes = resolutionMinutes
      self.resolutionTarget = resolutionTarget
      self.resolutionDueMs = resolutionDueMs
      self.resolutionWarnMs = resolutionWarnMs
      self.resolvedMs = resolvedMs
      self.submitter = submitter
      self.serviceOrg = serviceOrg
      self.assigneeOrg = assigneeOrg
    }
  }

  /// Strings by number and numbers by string (paths, county codes, accounts, orgs). Numbers are
  /// only ever added, so a saved prefix stays valid.
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

  struct State {
    var rows: [StatRow] = []
    /// The order of each row, and each order's row.
    var ids: [String] = []
    var rowOf: [String: Int32] = [:]
    /// Row numbers by the number of their org path (a row whose path changed stays listed under
    /// the old one too: readers check `row.path`).
    var byPath: [[Int32]] = []
    /// Row numbers by the number of the account that submitted them or is assigned them (a row
    /// whose assignee changed stays listed under the old one too: readers check the row).
    var byAccount: [Int32: [Int32]] = [:]
    var names = Names()
    /// Watch marks (not saved: an unwatch is a deletion, whose tombstone may be collected before
    /// the next start): the accounts watching each row, and the rows each account watches.
    var watchers: [Int32: [Int32]] = [:]
    var watching: [Int32: Set<Int32>] = [:]
    /// The last sequence of each collection the rows have seen; empty until the first load.
    var sequences: [String: Int64] = [:]
    /// What changed since the index was last saved.
    var saved = Saved()
    /// Where the rows came from at the first load.
    var origin = Origin.none

    mutating func set(_ id: String, _ summary: Summary?) {
      guard let summary else {
        if let index = rowOf[id] {
          rows[Int(index)].gone = true
          saved.touched(Int(index))
        }
        return
      }
      let row = StatRow(summary, names: &names)
      let index: Int
      if let known = rowOf[id] {
        index = Int(known)
        let moved = rows[index].path != row.path
        let listed = [rows[index].submitter, rows[index].assignee]
        rows[index] = row
        saved.touched(index)
        listByAccount(index, except: listed)
        // Moves are rare: an order moved back to a path it was listed under is listed there once.
        if moved, !byPath[Int(row.path)].contains(Int32(index)) { listByPath(index) }
        return
      }
      index = rows.count
      rowOf[id] = Int32(index)
      rows.append(row)
      ids.append(id)
      saved.touched(index)
      list(index)
    }

    /// Lists row `index` under its path and its submitter's and assignee's accounts.
    mutating func list(_ index: Int) {
      listByPath(index)
      listByAccount(index, except: [])
    }

    private mutating func listByPath(_ index: Int) {
      let path = Int(rows[index].path)
      if byPath.count <= path { byPath += Array(repeating: [], count: path + 1 - byPath.count) }
      byPath[path].append(Int32(index))
    }

    /// Lists row `index` under its submitter and assignee (once when they are one account), but
    /// not again under those it is listed under already.
    private mutating func listByAccount(_ index: Int, except listed: [Int32]) {
      for account in Set([rows[index].submitter, rows[index].assignee]) where account >= 0 && !listed.contains(account) {
        byAccount[account, default: []].append(Int32(index))
      }
    }

    /// Sets who watches the order of row `index`.
    mutating func setWatchers(_ index: Int32, _ accounts: [String]) {
      for account in watchers[index] ?? [] { watching[account]?.remove(index) }
      let numbers = Array(Set(accounts.map { names.number($0) })).sorted()
      watchers[index] = numbers.isEmpty ? nil : numbers
      for account in numbers { watching[account, default: []].insert(index) }
    }
  }

  /// Where the rows came from at the first load: the saved index, or every order and event.
  enum Origin: Sendable { case none, restored, built }

  var origin: Origin { state.withLock { $0.origin } }

  let state = Mutex(State())
  private let loading = Mutex(())
  /// One save at a time, so saves commit in the order they took their rows.
  let saving = Mutex(())

  /// Runs `body` over the rows (under the index's lock: no copy of a million rows).
  func withRows<T>(_ body: ([StatRow], Names) throws -> T) rethrows -> T {
    try state.withLock { state in try body(state.rows, state.names) }
  }

  /// The rows with what a list needs besides: each row's order id, the row numbers of each org
  /// path, and the rows each account watches.
  struct Lists {
    let ids: [String]
    let byPath: [[Int32]]
    let byAccount: [Int32: [Int32]]
    let watching: [Int32: Set<Int32>]
  }

  /// Runs `body` over the rows and their lists (under the index's lock).
  func withRows<T>(_ body: ([StatRow], Names, Lists) throws -> T) rethrows -> T {
    try state.withLock { state in
      try body(state.rows, state.names, Lists(ids: state.ids, byPath: state.byPath, byAccount: state.byAccount, watching: state.watching))
    }
  }

  static let collections = [WorkOrderCollections.order.name, WorkOrderCollections.event.name, WorkOrderCollections.watch.name]

  /// Brings the rows up to `db`: the first time from the saved index (or, without one, from every
  /// order and event), then from the changes since.
  /// - Parameter stop: asked between pages of a first load; true ends it (CancellationError).
  func catchUp(_ service: WorkOrderService, in db: Database, page: Int = catchUpPage, stop: @Sendable () -> Bool = { false }) throws {
    let store = service.store.records
    if !loaded {
      // One first load at a time (a sweep and a query may both come first): the others wait for
      // it rather than load a million orders again beside it.
      try loading.withLock { _ in
        guard !loaded else { return }
        if try !restore(service, in: db) { try load(service, in: db, stop: stop) }
      }
    }
    // In rounds of at most `catchUpPage` writes per collection, so a long absence (a node that
    // saved its rows hours of writes ago) is read with bounded memory. Each order is derived from
    // the snapshot's whole state, so reading the collections' changes in separate pages is safe.
    while true {
      let known = state.withLock { $0.sequences }
      var affected = Set<String>()
      var latest: [String: Int64] = [:]
      var more = false
      for collection in Self.collections {
        let (records, evicted) = try store.changes(of: collection, after: known[collection] ?? 0, limit: page, in: db)
        more = more || records.count == page
        let through = records.count == page ? records.last?.sequence ?? 0 : .max
        var last = max(records.last?.sequence ?? 0, known[collection] ?? 0)
        for record in records { affected.insert(WorkOrderCollections.orderID(of: record.id, in: collection)) }
        for (sequence, id) in evicted where sequence <= through {
          affected.insert(WorkOrderCollections.orderID(of: id, in: collection))
          last = max(last, sequence)
        }
        latest[collection] = last
      }
      guard !affected.isEmpty else { return }
      let now = service.identity.nowMs()
      var summaries: [String: (Summary, [String])?] = [:]
      for id in affected {
        summaries[id] = try service.load(id, in: db).map { record, order, events in
          (Self.summary(service, record, order, events, now: now), try service.watchers(of: order.id, in: db))
        }
      }
      let applied = state.withLock { state in
        // A concurrent catch-up from a newer snapshot may have gone further: keep the newest.
        guard latest.allSatisfy({ $0.value >= state.sequences[$0.key] ?? 0 }) else { return false }
        for (id, found) in summaries {
          state.set(id, found?.0)
          if let index = state.rowOf[id] { state.setWatchers(index, found?.1 ?? []) }
        }
        state.sequences = latest
        return true
      }
      guard applied, more else { return }
    }
  }

  /// Writes read per collection in one round of a catch-up.
  static let catchUpPage = 4096

  /// Whether the first load has happened (a catch-up after it reads only changes).
  var loaded: Bool { state.withLock { !$0.sequences.isEmpty } }

  static func summary(
    _ service: WorkOrderService, _ record: StoredRecord, _ order: Eduhub_Workorder_V1_WorkOrder,
    _ events: [Eduhub_Workorder_V1_OrderEvent], now: Int64
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
      createdMs: order.createdMs, reopenCount: derived.reopenCount,
      everResolved: derived.timeline.contains { !$0.superseded && $0.action == .resolve },
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
