import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf

extension WorkOrderService {
  /// Whether the order is in the org queue of a caller handling orders at `handled`: its service
  /// org or assignee org lies there (both lie on the order's path).
  static func inOrgQueue(serviceOrg: String, assigneeOrg: String, path: String, handled: [String]) -> Bool {
    [serviceOrg, assigneeOrg].contains { org in
      guard let orgPath = ancestorPath(org, of: path) else { return false }
      return handled.contains { RecordStore.inScope(orgPath, $0) }
    }
  }

  public func listOrders(_ request: Eduhub_Workorder_V1_ListOrdersRequest, caller: Caller) throws -> Eduhub_Workorder_V1_ListOrdersResponse {
    let size = try Validate.pageSize(request.page.pageSize, default: 50, maximum: 500)
    // Ordered by a key that ascends: (deadline of a running resolution clock or the end of time,
    // minus the submission time, id). Newest first leaves the deadline out, so its pages stay
    // stable while orders move; the urgent order puts the earliest deadline (the overdue) first.
    let urgent = request.sort == .urgent
    let after = try PageToken.parse(request.page.pageToken, parts: 3).map { parts -> (Int64, Int64, String) in
      guard let due = Int64(parts[0]), let created = Int64(parts[1]), urgent || due == .max else {
        throw RPCError(.invalidArgument, "page_token is not valid")
      }
      return (due, created, parts[2])
    }
    return try store.read { db in
      try index.catchUp(self, in: db)
      let orgPath = request.orgCode.isEmpty ? nil : try identity.orgPath(request.orgCode, in: db)
      let handled = caller.scopes(for: .ordersHandle)
      // Who may read is `mayRead`, with the caller's reading scopes worked out once. Only the sort
      // key of a match is kept: moving whole orders while sorting 200,000 was most of a county's queue.
      let readable = caller.scopes(for: .ordersRead) + caller.scopes(for: .ordersHandle)
      let account = caller.accountID
      var matched: [(due: Int64, created: Int64, id: String)] = []
      index.withRows { rows, names, lists in
        Self.scan(rows, names: names, lists: lists, request: request, account: account, readable: readable, handled: handled, orgPath: orgPath) {
          row, id in
          let running = row.resolutionMinutes < 0
          matched.append((urgent && running && row.resolutionDueMs > 0 ? row.resolutionDueMs : .max, -row.createdMs, id))
        }
      }
      var response = Eduhub_Workorder_V1_ListOrdersResponse()
      response.total = Int64(matched.count)
      // The page is the `size` smallest keys after the token: picked in one pass rather than by
      // sorting every match (a county's queue matches tens of thousands).
      var page: [(due: Int64, created: Int64, id: String)] = []
      var rest = 0
      for key in matched where after.map({ (key.due, key.created, key.id) > $0 }) ?? true {
        rest += 1
        if page.count == size {
          guard let last = page.last, (key.due, key.created, key.id) < (last.due, last.created, last.id) else { continue }
          page.removeLast()
        }
        let at = page.firstIndex { (key.due, key.created, key.id) < ($0.due, $0.created, $0.id) } ?? page.count
        page.insert(key, at: at)
      }
      let now = identity.nowMs()
      for summary in page {
        guard let (record, order, events) = try load(summary.id, in: db) else { continue }
        response.orders.append(try view(record, order, events, now: now, in: db).order)
      }
      if let last = page.last, page.count < rest {
        response.page.nextPageToken = PageToken.make(["\(last.due)", "\(last.created)", last.id])
      }
      return response
    }
  }

  /// The rows a list keeps, with what `mayRead` and the queue decide worked out once per org
  /// path (or org triple), not once per order: a pass over a million rows copies no string.
  static func scan(
    _ rows: [OrderIndex.StatRow], names: OrderIndex.Names, lists: OrderIndex.Lists, request: Eduhub_Workorder_V1_ListOrdersRequest,
    account: String, readable: [String], handled: [String], orgPath: String?, found: (OrderIndex.StatRow, String) -> Void
  ) {
    let me = account.isEmpty ? nil : names.numbers[account]
    // What depends on the path alone, decided once per path (a few thousand), not per order.
    let reads = names.names.map { name in readable.contains { Caller.covers($0, name) } }
    let inOrg = names.names.map { name in orgPath.map { RecordStore.inScope(name, $0) } ?? true }
    // Only the rows of paths the caller reads are looked at (a county's share of the city's, not
    // all of them), and those the caller submitted or is assigned elsewhere.
    var candidates: [Int]
    if request.queue == .watched {
      // A person's own few: the rows the account watches, in row order.
      candidates = me.map { (lists.watching[$0] ?? []).map(Int.init).sorted() } ?? []
    } else {
      candidates = []
      for path in lists.byPath.indices where reads[path] && inOrg[path] {
        for index in lists.byPath[path] where rows[Int(index)].path == Int32(path) { candidates.append(Int(index)) }
      }
      if let me {
        var elsewhere = Set<Int>()
        for index in lists.byAccount[me] ?? [] {
          let row = rows[Int(index)]
          guard row.submitter == me || row.assignee == me, !reads[Int(row.path)] else { continue }
          elsewhere.insert(Int(index))
        }
        candidates += elsewhere.sorted()
      }
    }
    struct Triple: Hashable { var service, assignee, path: Int32 }
    var orgQueue: [Triple: Bool] = [:]
    var states = [Bool](repeating: request.states.isEmpty, count: 64)
    for state in request.states where (0..<64).contains(state.rawValue) { states[state.rawValue] = true }
    let kind = Int32(request.kind.rawValue), priority = Int32(request.priority.rawValue)
    for index in candidates {
      let row = rows[index]
      if row.gone { continue }
      let path = Int(row.path)
      let mine = me != nil && (row.submitter == me || row.assignee == me)
      guard mine || reads[path], inOrg[path] else { continue }
      guard (0..<64).contains(row.state), states[Int(row.state)] else { continue }
      if kind != 0, row.kind != kind { continue }
      if priority != 0, row.priority != priority { continue }
      switch request.queue {
      case .submittedByMe: guard me != nil, row.submitter == me else { continue }
      case .assignedToMe: guard me != nil, row.assignee == me else { continue }
      case .myOrg:
        let key = Triple(service: row.serviceOrg, assignee: row.assigneeOrg, path: row.path)
        let member: Bool
        if let known = orgQueue[key] {
          member = known
        } else {
          func name(_ number: Int32) -> String { number < 0 ? "" : names.names[Int(number)] }
          member = inOrgQueue(serviceOrg: name(row.serviceOrg), assigneeOrg: name(row.assigneeOrg), path: names.names[path], handled: handled)
          orgQueue[key] = member
        }
        guard member else { continue }
      default: break
      }
      found(row, lists.ids[index])
    }
  }

  // MARK: Statistics

  public func getStats(_ request: Eduhub_Workorder_V1_StatsRequest, caller: Caller) throws -> Eduhub_Workorder_V1_Stats {
    try store.read { db in
      try index.catchUp(self, in: db)
      let orgPath = request.orgCode.isEmpty ? nil : try identity.orgPath(request.orgCode, in: db)
      let now = identity.nowMs()
      return index.withRows { rows, names in
        // Which submitting orgs count: decided once per org path, not once per order.
        let included = names.names.map { path in
          if let orgPath, !RecordStore.inScope(path, orgPath) { return false }
          return Self.readsSubtree(path, caller)
        }
        return Self.stats(rows, names: names, now: now, from: request.fromMs, to: request.toMs) { included[Int($0.path)] }
      }
    }
  }

  /// The statistics of the rows `include` keeps, submitted in [from, to).
  static func stats(
    _ rows: [OrderIndex.StatRow], names: OrderIndex.Names, now: Int64, from: Int64, to: Int64,
    include: (OrderIndex.StatRow) -> Bool
  ) -> Eduhub_Workorder_V1_Stats {
    var stats = Eduhub_Workorder_V1_Stats()
    var byState = [Int64](repeating: 0, count: 16), byKind = [Int64](repeating: 0, count: 16)
    var byPriority = [Int64](repeating: 0, count: 8)
    var byName = [Int64](repeating: 0, count: names.names.count), byAssignee = [Int64](repeating: 0, count: names.names.count)
    var backlog = [Int64](repeating: 0, count: 5)
    var firstResponse = MinuteCounts(), resolution = MinuteCounts()
    var firstMet = 0, firstCounted = 0, resolutionMet = 0, resolutionCounted = 0, resolved = 0, reopened = 0
    let open = Set([1, 2, 3, 4].map(Int32.init))  // submitted, accepted, in progress, waiting
    for row in rows {
      guard !row.gone, from == 0 || row.createdMs >= from, to == 0 || row.createdMs < to, include(row) else { continue }
      stats.total += 1
      byState[Int(row.state & 15)] += 1
      byKind[Int(row.kind & 15)] += 1
      byPriority[Int(row.priority & 7)] += 1
      byName[Int(row.county)] += 1
      if row.assignee >= 0 { byAssignee[Int(row.assignee)] += 1 }
      let isOpen = open.contains(row.state)
      if row.firstResponseMinutes >= 0 {
        firstResponse.add(row.firstResponseMinutes)
        firstCounted += 1
        if row.firstResponseMinutes <= row.firstResponseTarget { firstMet += 1 }
      } else if isOpen, now > row.firstResponseDueMs {
        firstCounted += 1  // breached and still waiting
      }
      let stopped = row.resolutionMinutes >= 0
      if stopped, row.state == 5 || row.state == 6 {  // resolved, closed
        resolution.add(row.resolutionMinutes)
        resolutionCounted += 1
        if row.resolutionMinutes <= row.resolutionTarget { resolutionMet += 1 }
      } else if !stopped, now > row.resolutionDueMs {
        resolutionCounted += 1
      } else if stopped, row.state == 4, row.resolutionMinutes > row.resolutionTarget {
        resolutionCounted += 1
      }
      if row.everResolved {
        resolved += 1
        if row.reopened { reopened += 1 }
      }
      if isOpen {
        let days = (now - row.createdMs) / 86_400_000
        backlog[days < 1 ? 0 : days < 3 ? 1 : days < 7 ? 2 : days < 30 ? 3 : 4] += 1
      }
    }
    for state in Eduhub_Workorder_V1_OrderState.allCases where byState[state.rawValue & 15] > 0 {
      stats.byState[OrderMachine.name(state)] = byState[state.rawValue & 15]
    }
    for kind in Eduhub_Workorder_V1_OrderKind.allCases where byKind[kind.rawValue & 15] > 0 {
      stats.byKind[kindName(kind)] = byKind[kind.rawValue & 15]
    }
    for (priority, count) in byPriority.enumerated() where count > 0 { stats.byPriority["P\(priority)"] = count }
    for (number, count) in byName.enumerated() where count > 0 { stats.byOrg[names.names[number]] = count }
    for (number, count) in byAssignee.enumerated() where count > 0 { stats.byAssignee[names.names[number]] = count }
    for (bucket, count) in zip(["<1d", "1-3d", "3-7d", "7-30d", ">30d"], backlog) where count > 0 { stats.backlogByAge[bucket] = count }
    stats.firstResponse = firstResponse.durations()
    stats.resolution = resolution.durations()
    stats.firstResponseAttainment = firstCounted == 0 ? 0 : Double(firstMet) / Double(firstCounted)
    stats.resolutionAttainment = resolutionCounted == 0 ? 0 : Double(resolutionMet) / Double(resolutionCounted)
    stats.reopenRate = resolved == 0 ? 0 : Double(reopened) / Double(resolved)
    return stats
  }

  /// Working-minute durations counted by value (minutes are bounded, so percentiles come from the
  /// counts without sorting a million numbers).
  struct MinuteCounts {
    var counts: [Int32: Int64] = [:]
    var small = [Int64](repeating: 0, count: 1 << 16)
    var total: Int64 = 0

    mutating func add(_ minutes: Int32) {
      total += 1
      if minutes < 1 << 16 { small[Int(minutes)] += 1 } else { counts[minutes, default: 0] += 1 }
    }

    /// Median and p90 by nearest rank.
    func durations() -> Eduhub_Workorder_V1_Durations {
      var out = Eduhub_Workorder_V1_Durations()
      out.count = total
      guard total > 0 else { return out }
      func rank(_ p: Double) -> Int64 {
        let wanted = max(1, Int64((Double(total) * p).rounded(.up)))
        var seen: Int64 = 0
        for (minutes, count) in small.enumerated() where count > 0 {
          seen += count
          if seen >= wanted { return Int64(minutes) }
        }
        for minutes in counts.keys.sorted() {
          seen += counts[minutes] ?? 0
          if seen >= wanted { return Int64(minutes) }
        }
        return 0
      }
      out.medianMinutes = rank(0.5)
      out.p90Minutes = rank(0.9)
      return out
    }
  }

  static func isOpen(_ state: Eduhub_Workorder_V1_OrderState) -> Bool {
    ![.resolved, .closed, .rejected, .cancelled].contains(state)
  }

  static func kindName(_ kind: Eduhub_Workorder_V1_OrderKind) -> String {
    switch kind {
    case .dataRequest: "DATA_REQUEST"
    case .dataQuality: "DATA_QUALITY"
    case .dataCorrection: "DATA_CORRECTION"
    case .accessProblem: "ACCESS_PROBLEM"
    case .safetyHazard: "SAFETY_HAZARD"
    case .syncConflict: "SYNC_CONFLICT"
    case .unspecified, .UNRECOGNIZED: "UNSPECIFIED"
    }
  }

  // MARK: Watch

  /// Streams changes of the orders `caller` watches, submitted, or is assigned (in person or as a
  /// handler of the assignee org), from `request.cursor` (a store sequence) until the caller goes.
  public func watch(_ request: Eduhub_Workorder_V1_WatchRequest, caller: Caller, send: (Eduhub_Workorder_V1_OrderChange) async throws -> Void)
    async throws
  {
    var cursor: Int64
    if request.cursor.isEmpty {
      cursor = try store.read { db in try store.records.lastSequence(in: db) }
    } else {
      guard let parsed = Int64(request.cursor), parsed >= 0 else { throw Validate.invalid("cursor is not valid") }
      cursor = parsed
    }
    let signal = store.records.changed
    while !Task.isCancelled {
      let generation = signal.generation
      let (changes, through) = try store.read { db in try self.changes(after: cursor, for: caller, in: db) }
      for change in changes { try await send(change) }
      if through == cursor {
        await signal.wait(after: generation, timeout: .seconds(1))
      }
      cursor = through
    }
  }

  /// Writes a Watch reads at most, per collection, per round: a stream started from cursor 0 on a
  /// city's millions of orders pages through them with bounded memory.
  static let watchPage = 1000

  /// The changes after `cursor` relevant to `caller`, one per order, in the order of their last
  /// change; and the sequence they run through (at most a page of each collection's writes: the
  /// next call goes on from there).
  func changes(after cursor: Int64, for caller: Caller, page: Int = watchPage, in db: Database) throws
    -> ([Eduhub_Workorder_V1_OrderChange], Int64)
  {
    var newEvents: [String: [Eduhub_Workorder_V1_OrderEvent]] = [:]
    var lastSequence: [String: Int64] = [:]
    let collections = [WorkOrderCollections.order.name, WorkOrderCollections.event.name, WorkOrderCollections.watch.name]
    let pages = try collections.map { try store.records.changes(of: $0, after: cursor, limit: page, in: db).records }
    // Through the lowest last sequence among full pages (beyond it a collection may hold unread
    // writes), else through everything read.
    let full = pages.filter { $0.count == page }.compactMap { $0.last?.sequence }
    let through = full.min() ?? pages.compactMap { $0.last?.sequence }.max() ?? cursor
    for (collection, records) in zip(collections, pages) {
      for record in records where record.sequence <= through {
        let orderID = WorkOrderCollections.orderID(of: record.id, in: collection)
        lastSequence[orderID] = max(lastSequence[orderID] ?? 0, record.sequence)
        if collection == WorkOrderCollections.event.name, !record.deleted, let event = try? WorkOrderCollections.event.decode(record) {
          newEvents[orderID, default: []].append(event)
        }
      }
    }
    let handled = caller.scopes(for: .ordersHandle)
    let now = identity.nowMs()
    var out: [(Int64, Eduhub_Workorder_V1_OrderChange)] = []
    for (orderID, sequence) in lastSequence {
      guard let (record, order, events) = try load(orderID, in: db) else { continue }
      let (shown, derived) = try view(record, order, events, now: now, in: db)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller) else { continue }
      var mine = order.submitter == caller.accountID || derived.assignee == caller.accountID
        || shown.watchers.contains(caller.accountID)
      if !mine {
        mine = Self.inOrgQueue(serviceOrg: derived.serviceOrg, assigneeOrg: derived.assigneeOrg, path: record.scope, handled: handled)
      }
      guard mine else { continue }
      var change = Eduhub_Workorder_V1_OrderChange()
      change.order = shown
      let ids = Set((newEvents[orderID] ?? []).map(\.id))
      change.events = derived.timeline.filter { ids.contains($0.id) }
      change.cursor = String(sequence)
      out.append((sequence, change))
    }
    out.sort { $0.0 < $1.0 }
    // Each change carries the cursor of its own last write; the last one carries `through`, so a
    // client resuming from it skips the irrelevant writes too.
    var changes = out.map(\.1)
    if !changes.isEmpty { changes[changes.count - 1].cursor = String(through) }
    return (changes, through)
  }
}
