import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import PropertyBased
import SwiftProtobuf
import Testing
@testable import EduHubWorkOrders

@Suite("Work orders: lifecycle, permissions, convergence, SLA in working time, Watch, statistics")
struct WorkOrderTests {
  func orders(_ world: IdentityWorld) -> Eduhub_Workorder_V1_WorkOrderService.Client { .init(world.rpc) }

  /// Call options of a teacher at the school and of a dispatcher of its county.
  func teacherAndDispatcher(_ world: IdentityWorld) async throws -> (teacher: CallOptions, dispatch: CallOptions) {
    try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
    try await world.account("dispatch", role: .dispatcher, org: "511702")
    return (try await world.options("teacher1"), try await world.options("dispatch"))
  }

  @Test("the urgent order leads with the earliest running deadline across pages; stopped clocks follow, newest first")
  func urgentQueue() async throws {
    try await withWorld { world in
      let (teacher, dispatch) = try await teacherAndDispatcher(world)
      func submit(_ title: String, _ priority: Eduhub_Workorder_V1_Priority) async throws -> Eduhub_Workorder_V1_WorkOrder {
        var request = WorkOrderFixture.submission(title)
        request.order.priority = priority
        return try await orders(world).submit(request, options: teacher)
      }
      let low = try await submit("低", .p4)
      let urgent = try await submit("紧急", .p1)
      let resolved = try await submit("已解决", .p1)
      let high = try await submit("高", .p2)
      for action in [Eduhub_Workorder_V1_Action.accept, .start, .resolve] {
        _ = try await orders(world).act(WorkOrderFixture.act(resolved.id, action, note: "处理"), options: dispatch)
      }
      // The due times follow the priorities' targets; the resolved order's clock has stopped.
      #expect(urgent.sla.resolutionDueMs < high.sla.resolutionDueMs && high.sla.resolutionDueMs < low.sla.resolutionDueMs)
      var list = Eduhub_Workorder_V1_ListOrdersRequest()
      list.queue = .myOrg
      list.sort = .urgent
      let expected = [urgent.id, high.id, low.id, resolved.id]
      #expect(try await orders(world).listOrders(list, options: dispatch).orders.map(\.id) == expected)
      // One at a time, the pages follow the same order and end.
      list.page.pageSize = 1
      var seen: [String] = []
      while true {
        let page = try await orders(world).listOrders(list, options: dispatch)
        seen += page.orders.map(\.id)
        guard !page.page.nextPageToken.isEmpty, seen.count <= expected.count else { break }
        list.page.pageToken = page.page.nextPageToken
      }
      #expect(seen == expected)
      // Newest first is unchanged, and a token of one order is refused by the other.
      list.sort = .newest
      list.page.pageToken = ""
      #expect(try await orders(world).listOrders(list, options: dispatch).orders.map(\.id) == [high.id])
      list.page.pageToken = try await {
        var urgentList = list
        urgentList.sort = .urgent
        urgentList.page.pageToken = ""
        return try await orders(world).listOrders(urgentList, options: dispatch).page.nextPageToken
      }()
      await expectStatus(.invalidArgument) { try await orders(world).listOrders(list, options: dispatch) }
    }
  }

  @Test("the whole loop: submit, accept, start, ask (paused), answer, resolve, verify and close; every illegal step refused")
  func lifecycle() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      try await world.account("teacher2", role: .teacher, org: IdentityWorld.otherSchool)
      try await world.account("dispatch", role: .dispatcher, org: "511702")
      let worker = try await world.account("worker", role: .dispatcher, org: "511702")
      let teacher = try await world.options("teacher1")
      let dispatch = try await world.options("dispatch")
      let submitted = try await orders(world).submit(WorkOrderFixture.submission(), options: teacher)
      #expect(submitted.state == .submitted && submitted.serviceOrgCode == "511702" && submitted.submittingOrgCode == IdentityWorld.school)
      #expect(submitted.sla.firstResponseTargetMinutes == 240 && submitted.watchers.count == 1)
      let id = submitted.id

      // Illegal steps name the state; permissions are checked; others' orders are invisible.
      var message = await expectStatus(.failedPrecondition) { try await orders(world).act(WorkOrderFixture.act(id, .verifyClose), options: teacher) }
      #expect(message.contains("SUBMITTED"))
      await expectStatus(.permissionDenied) { try await orders(world).act(WorkOrderFixture.act(id, .accept), options: teacher) }
      #expect(try world.auditEvents(action: "workorder.Act").contains { $0.outcome == "denied" })
      var get = Eduhub_Workorder_V1_GetOrderRequest()
      get.id = id
      await expectStatus(.notFound) { try await orders(world).getOrder(get, options: try await world.options("teacher2")) }
      await expectStatus(.invalidArgument) { try await orders(world).act(WorkOrderFixture.act(id, .reject), options: dispatch) }

      var detail = try await orders(world).act(WorkOrderFixture.act(id, .accept, version: 0, assignee: worker), options: dispatch)
      #expect(detail.order.state == .accepted && detail.order.assignee == worker && detail.order.version == 1)
      // A stale version is ABORTED.
      message = await expectStatus(.aborted) { try await orders(world).act(WorkOrderFixture.act(id, .start, version: 0 + 7), options: dispatch) }
      #expect(message.contains("version 1"))
      let workerOptions = try await world.options("worker")
      detail = try await orders(world).act(WorkOrderFixture.act(id, .start, version: 1), options: workerOptions)
      detail = try await orders(world).act(WorkOrderFixture.act(id, .askRequester, note: "请提供学生名单"), options: workerOptions)
      #expect(detail.order.state == .waitingRequester && detail.order.sla.paused)
      await expectStatus(.permissionDenied) { try await orders(world).act(WorkOrderFixture.act(id, .answer), options: workerOptions) }
      detail = try await orders(world).act(WorkOrderFixture.act(id, .answer, note: "名单已附"), options: teacher)
      detail = try await orders(world).act(WorkOrderFixture.act(id, .comment, note: "收到"), options: workerOptions)
      detail = try await orders(world).act(WorkOrderFixture.act(id, .resolve, note: "已补录身份证号"), options: workerOptions)
      #expect(detail.order.state == .resolved && detail.order.feedback == "已补录身份证号")
      detail = try await orders(world).act(WorkOrderFixture.act(id, .reopen, note: "还有一名未补"), options: teacher)
      #expect(detail.order.state == .inProgress && detail.order.reopenCount == 1)
      detail = try await orders(world).act(WorkOrderFixture.act(id, .resolve, note: "全部补录"), options: workerOptions)
      detail = try await orders(world).act(WorkOrderFixture.act(id, .verifyClose), options: teacher)
      #expect(detail.order.state == .closed)
      #expect(detail.timeline.map(\.action) == [.accept, .start, .askRequester, .answer, .comment, .resolve, .reopen, .resolve, .verifyClose])
      #expect(detail.timeline.allSatisfy { !$0.superseded })
      await expectStatus(.failedPrecondition) { try await orders(world).act(WorkOrderFixture.act(id, .cancel), options: teacher) }

      // Cancel before work starts; reject with a reason; escalate to the parent org.
      let second = try await orders(world).submit(WorkOrderFixture.submission("另一个问题"), options: teacher)
      detail = try await orders(world).act(WorkOrderFixture.act(second.id, .cancel), options: teacher)
      #expect(detail.order.state == .cancelled)
      let third = try await orders(world).submit(WorkOrderFixture.submission("第三个问题"), options: teacher)
      detail = try await orders(world).act(WorkOrderFixture.act(third.id, .escalate), options: dispatch)
      #expect(detail.order.serviceOrgCode == "511700")
      // The county's dispatcher no longer handles it; the city does.
      await expectStatus(.permissionDenied) { try await orders(world).act(WorkOrderFixture.act(third.id, .reject, note: "x"), options: dispatch) }
      try await world.account("city", role: .dispatcher, org: "511700")
      detail = try await orders(world).act(WorkOrderFixture.act(third.id, .reject, note: "不属于数据问题"), options: try await world.options("city"))
      #expect(detail.order.state == .rejected)

      // Queues.
      var list = Eduhub_Workorder_V1_ListOrdersRequest()
      list.queue = .submittedByMe
      #expect(try await orders(world).listOrders(list, options: teacher).orders.map(\.id) == [third.id, second.id, id])
      list.queue = .assignedToMe
      #expect(try await orders(world).listOrders(list, options: workerOptions).orders.map(\.id) == [id])
      list.queue = .myOrg
      list.states = [.submitted, .rejected, .cancelled]
      list.page.pageSize = 1
      let first = try await orders(world).listOrders(list, options: dispatch)
      #expect(first.total == 1 && first.orders.map(\.id) == [second.id])
      #expect(try await orders(world).listOrders(list, options: try await world.options("teacher2")).total == 0)
    }
  }

  static func event(
    _ order: String, _ action: Eduhub_Workorder_V1_Action, hlc: UInt64, node: String, timeMs: Int64 = 0, assignee: String = ""
  ) -> Eduhub_Workorder_V1_OrderEvent {
    var event = Eduhub_Workorder_V1_OrderEvent()
    event.orderID = order
    event.action = action
    event.hlc = hlc
    event.node = node
    event.id = "\(order)|\(hlc)|\(node)"
    event.timeMs = timeMs
    event.assigneeOrgCode = assignee
    return event
  }

  @Test("any arrival order of the same events derives the same state and the same history")
  func convergenceProperty() async {
    var order = Eduhub_Workorder_V1_WorkOrder()
    order.id = "WO-1"
    order.serviceOrgCode = "511702"
    // Two nodes act on the same order while partitioned: the county accepts and starts, the city
    // rejects; plus comments and a duplicate delivery.
    let events = [
      Self.event("WO-1", .accept, hlc: 100, node: "county", assignee: "511702"),
      Self.event("WO-1", .reject, hlc: 101, node: "central"),
      Self.event("WO-1", .start, hlc: 102, node: "county"),
      Self.event("WO-1", .comment, hlc: 102, node: "central"),
      Self.event("WO-1", .resolve, hlc: 150, node: "county"),
      Self.event("WO-1", .verifyClose, hlc: 160, node: "school"),
    ]
    let reference = OrderMachine.derive(order, events: events, reopenWindowMs: 1000)
    // In (HLC, node) order the city's reject comes right after the accept: the county's work after
    // it is superseded, and every node shows that.
    #expect(reference.state == .rejected && reference.version == 2)
    #expect(reference.timeline.filter(\.superseded).map(\.action) == [.start, .resolve, .verifyClose])
    await propertyCheck(count: 200, input: Gen.int(in: 0...Int.max)) { seed in
      var random = SplitMix64(seed: UInt64(seed))
      var shuffled = events + [events[Int(random.next() % UInt64(events.count))]]
      shuffled.shuffle(using: &random)
      let derived = OrderMachine.derive(order, events: shuffled, reopenWindowMs: 1000)
      #expect(derived.state == reference.state && derived.version == reference.version)
      #expect(derived.timeline == reference.timeline)
    }
  }

  @Test("partitioned nodes act on the same order; after syncing both ways every node shows the same state and history")
  func partitionedNodes() async throws {
    try await withWorld { world in
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      let submitted = try await world.node.workOrders.submit(
        {
          var request = WorkOrderFixture.submission()
          request.order.submittingOrgCode = IdentityWorld.school
          return request
        }(), caller: .operator(name: "school"), peer: "test")
      try await county.client.syncOnce()
      // Partitioned: the county accepts and starts; central (the city) rejects.
      _ = try county.node.workOrders.act(WorkOrderFixture.act(submitted.id, .accept), caller: .operator(name: "county"), peer: "test")
      _ = try county.node.workOrders.act(WorkOrderFixture.act(submitted.id, .start), caller: .operator(name: "county"), peer: "test")
      _ = try world.node.workOrders.act(WorkOrderFixture.act(submitted.id, .reject, note: "重复"), caller: .operator(name: "city"), peer: "test")
      try await county.client.syncOnce()
      try await county.client.syncOnce()
      var get = Eduhub_Workorder_V1_GetOrderRequest()
      get.id = submitted.id
      let atCentral = try world.node.workOrders.getOrder(get, caller: .operator(name: "x"))
      let atCounty = try county.node.workOrders.getOrder(get, caller: .operator(name: "x"))
      #expect(atCentral.timeline == atCounty.timeline && atCentral.timeline.count == 3)
      #expect(atCentral.order.state == atCounty.order.state && atCentral.order.version == atCounty.order.version)
      #expect(atCentral.timeline.filter(\.superseded).count >= 1)
      #expect(atCentral.timeline.contains { $0.superseded && $0.supersededReason.contains("not valid in state") })
      await county.close()
    }
  }

  @Test("working time: weekends, a public holiday, an exchanged working day, a pause and a reopen")
  func slaClocks() {
    let calendar = WorkCalendar.china2026
    func at(_ text: String) -> Int64 {  // "2026-09-30 09:00" China time
      let parts = text.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" }).compactMap { Int($0) }
      var components = DateComponents()
      (components.year, components.month, components.day, components.hour, components.minute) = (parts[0], parts[1], parts[2], parts[3], parts[4])
      components.timeZone = TimeZone(identifier: "Asia/Shanghai")
      return Int64(Calendar(identifier: .gregorian).date(from: components)!.timeIntervalSince1970 * 1000)
    }
    // A weekday: 09:00-11:00 is 120 minutes; over lunch counts only working hours.
    #expect(calendar.workingMinutes(from: at("2026-11-30 09:00"), to: at("2026-11-30 11:00")) == 120)
    #expect(calendar.workingMinutes(from: at("2026-11-30 11:30"), to: at("2026-11-30 14:30")) == 60)
    // Friday 17:00 to Monday 09:00: 30 minutes on Friday, 30 on Monday.
    #expect(calendar.workingMinutes(from: at("2026-11-27 17:00"), to: at("2026-11-30 09:00")) == 60)
    // National Day: 30 September 17:00 to 8 October 09:00 is Sep 30's 30 minutes and Oct 8's 30.
    #expect(calendar.workingMinutes(from: at("2026-09-30 17:00"), to: at("2026-10-08 09:00")) == 60)
    // Saturday 10 October is worked in exchange: a full day of 420 minutes.
    #expect(calendar.workingMinutes(from: at("2026-10-10 00:00"), to: at("2026-10-11 00:00")) == 420)
    #expect(calendar.workingMinutes(from: at("2026-10-11 00:00"), to: at("2026-10-12 00:00")) == 0)
    // Adding is the inverse: 240 working minutes after Friday 16:00 is Monday 11:00.
    #expect(calendar.adding(minutes: 240, to: at("2026-11-27 16:00")) == at("2026-11-30 11:00"))

    // Clocks of an order: submitted Friday 16:00, accepted Monday 09:00, in progress, waiting for
    // the requester Monday 10:00 to Wednesday 10:00 (paused), resolved Wednesday 11:00, reopened
    // Wednesday 14:00, resolved again Wednesday 15:00.
    var order = Eduhub_Workorder_V1_WorkOrder()
    order.id = "WO-S"
    order.kind = .dataQuality
    order.priority = .p2
    order.createdMs = at("2026-11-27 16:00")
    let events = [
      Self.event("WO-S", .accept, hlc: 1, node: "n", timeMs: at("2026-11-30 09:00")),
      Self.event("WO-S", .start, hlc: 2, node: "n", timeMs: at("2026-11-30 09:00")),
      Self.event("WO-S", .askRequester, hlc: 3, node: "n", timeMs: at("2026-11-30 10:00")),
      Self.event("WO-S", .answer, hlc: 4, node: "n", timeMs: at("2026-12-02 10:00")),
      Self.event("WO-S", .resolve, hlc: 5, node: "n", timeMs: at("2026-12-02 11:00")),
      Self.event("WO-S", .reopen, hlc: 6, node: "n", timeMs: at("2026-12-02 14:00")),
      Self.event("WO-S", .resolve, hlc: 7, node: "n", timeMs: at("2026-12-02 15:00")),
    ]
    let derived = OrderMachine.derive(order, events: events, reopenWindowMs: 7 * 86_400_000)
    let sla = SlaPolicy(calendar: calendar).clocks(order, derived, now: at("2026-12-10 09:00"))
    // First response: Friday 16:00-17:30 (90) + Monday 08:30-09:00 (30).
    #expect(sla.firstResponseMinutes == 120 && !sla.firstResponseBreached)
    // Resolution: 90 + Monday 08:30-10:00 (90) + Wednesday 10:00-11:00 (60) + 14:00-15:00 (60).
    #expect(sla.resolutionMinutes == 300 && !sla.resolutionBreached && !sla.paused)
    // A reopen after the window is superseded.
    let late = events.prefix(5) + [Self.event("WO-S", .reopen, hlc: 9, node: "n", timeMs: at("2026-12-20 09:00"))]
    let closedLate = OrderMachine.derive(order, events: Array(late), reopenWindowMs: 7 * 86_400_000)
    #expect(closedLate.state == .resolved && closedLate.timeline.last?.supersededReason == "the reopen period had passed")
  }

  @Test("Watch from cursor 0 pages through the history with bounded reads and misses no order")
  func watchPages() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let teacher = try await world.options("teacher1")
      var submitted: Set<String> = []
      for index in 0..<7 { submitted.insert(try await orders(world).submit(WorkOrderFixture.submission("缺失 \(index)"), options: teacher).id) }
      let service = world.node.workOrders
      var cursor: Int64 = 0
      var seen: Set<String> = []
      var rounds = 0
      while rounds < 100 {
        rounds += 1
        let (changes, through) = try world.identity.store.read { db in
          try service.changes(after: cursor, for: .operator(name: "test"), page: 2, in: db)
        }
        // A page of two writes of each of the three collections at most.
        #expect(changes.count <= 6)
        seen.formUnion(changes.map(\.order.id))
        if through == cursor { break }
        cursor = through
      }
      #expect(rounds > 3, "seven orders with their events should take several pages of two")
      #expect(seen.isSuperset(of: submitted))
      // Over RPC from cursor 0 as well: every order the teacher submitted arrives.
      var request = Eduhub_Workorder_V1_WatchRequest()
      request.cursor = "0"
      let streamed = try await orders(world).watch(request, options: teacher) { stream in
        var ids: Set<String> = []
        for try await change in stream {
          ids.insert(change.order.id)
          if ids.isSuperset(of: submitted) { break }
        }
        return ids
      }
      #expect(streamed.isSuperset(of: submitted))
    }
  }

  @Test("Watch delivers a state change at once, and a stream resumed from its cursor misses nothing")
  func watchAndResume() async throws {
    try await withWorld { world in
      let (teacher, dispatch) = try await teacherAndDispatcher(world)
      let order = try await orders(world).submit(WorkOrderFixture.submission(), options: teacher)
      // The teacher watches; the dispatcher accepts.
      let first = try await orders(world).watch(Eduhub_Workorder_V1_WatchRequest(), options: teacher) { stream in
        let waiter = Task {
          try await Task.sleep(for: .milliseconds(100))
          return try await orders(world).act(WorkOrderFixture.act(order.id, .accept), options: dispatch)
        }
        var received: [Eduhub_Workorder_V1_OrderChange] = []
        for try await change in stream {
          received.append(change)
          break
        }
        _ = try await waiter.value
        return received
      }
      #expect(first.count == 1 && first[0].order.state == .accepted && first[0].events.map(\.action) == [.accept])
      // While no stream is open: two more steps. Resuming from the cursor delivers both.
      _ = try await orders(world).act(WorkOrderFixture.act(order.id, .start), options: dispatch)
      _ = try await orders(world).act(WorkOrderFixture.act(order.id, .comment, note: "处理中"), options: dispatch)
      var resume = Eduhub_Workorder_V1_WatchRequest()
      resume.cursor = first[0].cursor
      let missed = try await orders(world).watch(resume, options: teacher) { stream in
        var events: [Eduhub_Workorder_V1_Action] = []
        for try await change in stream {
          events += change.events.map(\.action)
          if events.count >= 2 { break }
        }
        return events
      }
      #expect(missed == [.start, .comment])
      await expectStatus(.invalidArgument) {
        var bad = Eduhub_Workorder_V1_WatchRequest()
        bad.cursor = "x"
        return try await orders(world).watch(bad, options: teacher) { stream in
          for try await _ in stream {}
        }
      }
    }
  }

  @Test("statistics agree with a brute-force count over generated orders")
  func statistics() async throws {
    try await withWorld { world in
      let service = world.node.workOrders
      var random = SplitMix64(seed: 7)
      let schools = [IdentityWorld.school, IdentityWorld.otherSchool]
      let actions: [[Eduhub_Workorder_V1_Action]] = [[], [.accept], [.accept, .start], [.accept, .start, .resolve], [.cancel], [.reject]]
      for index in 0..<40 {
        var request = WorkOrderFixture.submission("问题\(index)", kind: [.dataQuality, .dataRequest, .safetyHazard][index % 3])
        request.order.priority = [.p1, .p2, .p3, .p4][Int(random.next() % 4)]
        request.order.submittingOrgCode = schools[index % 2]
        let order = try await service.submit(request, caller: .operator(name: "s"), peer: "t")
        for action in actions[Int(random.next() % UInt64(actions.count))] {
          _ = try service.act(WorkOrderFixture.act(order.id, action, note: "说明"), caller: .operator(name: "s"), peer: "t")
        }
      }
      var request = Eduhub_Workorder_V1_StatsRequest()
      let all = try service.getStats(request, caller: .operator(name: "s"))
      var list = Eduhub_Workorder_V1_ListOrdersRequest()
      list.page.pageSize = 500
      let orders = try service.listOrders(list, caller: .operator(name: "s")).orders
      #expect(all.total == 40 && orders.count == 40)
      var byState: [String: Int64] = [:]
      for order in orders { byState[OrderMachine.name(order.state), default: 0] += 1 }
      #expect(all.byState == byState)
      let responded = orders.filter { $0.state != .submitted && $0.state != .cancelled }
        .map(\.sla.firstResponseMinutes).sorted()
      #expect(all.firstResponse.count == Int64(responded.count))
      if !responded.isEmpty { #expect(all.firstResponse.medianMinutes == responded[(responded.count + 1) / 2 - 1]) }
      // One county only.
      request.orgCode = "511702"
      let county = try service.getStats(request, caller: .operator(name: "s"))
      #expect(county.total == Int64(orders.filter { $0.orgPath.hasPrefix("511700/511702/") }.count))
      #expect(county.byOrg.keys.sorted() == ["511702"])
    }
  }

  @Test("the order index is saved and read back at a start: queues, statistics and watches as before, changes after the save counted; rows of other SLA rules or damaged ones are rebuilt")
  func savedIndex() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let teacher = try await world.options("teacher1")
      let service = world.node.workOrders
      let actions: [[Eduhub_Workorder_V1_Action]] = [[], [.accept], [.accept, .start], [.accept, .start, .resolve], [.reject]]
      var ids: [String] = []
      for index in 0..<25 {
        var request = WorkOrderFixture.submission("问题\(index)", kind: [.dataQuality, .dataRequest, .safetyHazard][index % 3])
        request.order.priority = [.p1, .p2, .p3, .p4][index % 4]
        request.order.submittingOrgCode = [IdentityWorld.school, IdentityWorld.otherSchool][index % 2]
        let order = try await service.submit(request, caller: .operator(name: "s"), peer: "t")
        ids.append(order.id)
        for action in actions[index % actions.count] {
          _ = try service.act(WorkOrderFixture.act(order.id, action, note: "说明"), caller: .operator(name: "s"), peer: "t")
        }
      }
      func watch(_ id: String, _ on: Bool) async throws {
        var request = Eduhub_Workorder_V1_WatchOrderRequest()
        request.orderID = id
        request.watch = on
        _ = try await orders(world).setWatch(request, options: teacher)
      }
      // The teacher watches orders of its own.
      var own: [String] = []
      for index in 0..<3 { own.append(try await orders(world).submit(WorkOrderFixture.submission("自己的 \(index)"), options: teacher).id) }
      for id in own { try await watch(id, true) }
      try service.warmUp()
      #expect(service.index.origin == .built)
      // After the save: a new order, a step on an old one, a watch dropped and one added.
      let late = try await orders(world).submit(WorkOrderFixture.submission("保存之后"), options: teacher)
      _ = try service.act(WorkOrderFixture.act(ids[0], .accept, note: "受理"), caller: .operator(name: "s"), peer: "t")
      try await watch(own[1], false)
      try await watch(late.id, true)
      func seen(_ service: WorkOrderService) async throws -> [String] {
        var stats = Eduhub_Workorder_V1_StatsRequest()
        var out = [try service.getStats(stats, caller: .operator(name: "s")).textFormatString()]
        stats.orgCode = "511702"
        out.append(try service.getStats(stats, caller: .operator(name: "s")).textFormatString())
        var list = Eduhub_Workorder_V1_ListOrdersRequest()
        list.page.pageSize = 500
        list.sort = .urgent
        out.append(try service.listOrders(list, caller: .operator(name: "s")).orders.map { "\($0.id) \($0.state)" }.joined(separator: ","))
        list.queue = .watched
        list.sort = .newest
        out.append(try await orders(world).listOrders(list, options: teacher).orders.map(\.id).sorted().joined(separator: ","))
        return out
      }
      let expected = try await seen(service)
      #expect(expected[0].contains("total: 29"))
      #expect(expected[3] == ([late.id, own[0], own[2]].sorted().joined(separator: ",")))
      // A start on the same store reads the saved rows and the changes since.
      let restarted = WorkOrderService(identity: world.identity, sla: service.sla, reopenWindowMs: service.reopenWindowMs)
      #expect(try await seen(restarted) == expected)
      #expect(restarted.index.origin == .restored)
      // The same caught up three writes at a time (a long absence is read in rounds).
      let paged = WorkOrderService(identity: world.identity, sla: service.sla, reopenWindowMs: service.reopenWindowMs)
      try world.identity.store.read { db in try paged.index.catchUp(paged, in: db, page: 3) }
      #expect(try await seen(paged) == expected)
      #expect(paged.index.origin == .restored)
      // Other SLA rules: the saved rows are not theirs.
      var rules = service.sla
      rules.warningShare = 0.7
      let other = WorkOrderService(identity: world.identity, sla: rules, reopenWindowMs: service.reopenWindowMs)
      _ = try await seen(other)
      #expect(other.index.origin == .built)
      // A damaged chunk: rebuilt, with the same answers.
      try world.identity.store.transaction { db in try world.identity.store.records.setBlob(OrderIndex.rowsKey(0), [1, 2, 3], in: db) }
      let damaged = WorkOrderService(identity: world.identity, sla: service.sla, reopenWindowMs: service.reopenWindowMs)
      #expect(try await seen(damaged) == expected)
      #expect(damaged.index.origin == .built)
    }
  }

  @Test("the sweep: SLA warning then breach (escalated to the service org's admins), auto-close after the silent period")
  func sweep() async throws {
    try await withWorld { world in
      let admin = try await world.account("county-admin", role: .countyAdmin, org: "511702")
      let service = world.node.workOrders
      var request = WorkOrderFixture.submission("紧急：数据无法访问", kind: .accessProblem)
      request.order.priority = .p1
      request.order.submittingOrgCode = IdentityWorld.school
      let order = try await service.submit(request, caller: .operator(name: "s"), peer: "t")
      let calendar = service.sla.calendar
      var report = try service.sweep(now: calendar.adding(minutes: 50, to: order.createdMs))
      #expect(report.warnings == 1 && report.breaches == 0)
      // Sweeping again records nothing new.
      report = try service.sweep(now: calendar.adding(minutes: 55, to: order.createdMs))
      #expect(report.warnings == 0)
      report = try service.sweep(now: calendar.adding(minutes: 61, to: order.createdMs))
      #expect(report.breaches == 1)
      var get = Eduhub_Workorder_V1_GetOrderRequest()
      get.id = order.id
      var detail = try service.getOrder(get, caller: .operator(name: "s"))
      #expect(detail.timeline.map(\.action) == [.slaWarning, .slaBreach] && detail.order.watchers.contains(admin))
      #expect(detail.order.version == 0 && detail.order.state == .submitted)
      // Resolved and silent past the period: closed by the system.
      for action: Eduhub_Workorder_V1_Action in [.accept, .start, .resolve] {
        _ = try service.act(WorkOrderFixture.act(order.id, action, note: "已处理"), caller: .operator(name: "s"), peer: "t")
      }
      report = try service.sweep(now: world.identity.nowMs() + 8 * 86_400_000)
      #expect(report.autoClosed == 1)
      detail = try service.getOrder(get, caller: .operator(name: "s"))
      #expect(detail.order.state == .closed && detail.timeline.last?.action == .autoClose)
    }
  }

  @Test("a sync conflict becomes a work order for the record's org steward, its values masked for the steward")
  func conflictsBecomeOrders() async throws {
    try await withWorld { world in
      let steward = try await world.account("school-steward", role: .dataSteward, org: IdentityWorld.school)
      let county = try await CountyNode.enroll(in: world, clearance: .clear)
      try await county.client.syncOnce()
      try edit(county.node.replica, IdentityWorld.student) { $0.phone = "13900000001" }
      try edit(world.identity.replica, IdentityWorld.student) { $0.phone = "13900000002" }
      try await county.client.syncOnce()
      try await county.client.syncOnce()
      var created = 0
      for node in [world.node, county.node] {
        created += try node.workOrders.sweep().conflictOrders
        #expect(try node.workOrders.sweep().conflictOrders == 0)  // once per conflict
      }
      #expect(created >= 1)
      var list = Eduhub_Workorder_V1_ListOrdersRequest()
      list.kind = .syncConflict
      let found = try world.node.workOrders.listOrders(list, caller: .operator(name: "s")).orders
        + county.node.workOrders.listOrders(list, caller: .operator(name: "s")).orders
      let order = try #require(found.first)
      #expect(order.recordRef == "person/\(IdentityWorld.student)" && order.assignee == steward && order.state == .accepted)
      // The pupil is a child: a steward without clearance sees neither number (contacts are removed).
      #expect(order.description_p.contains("（已隐藏）"), "\(order.description_p)")
      #expect(!order.description_p.contains("13900000001"))
      #expect(!order.description_p.contains("13900000002"))
      await county.close()
    }
  }

  @Test("attachments stream in and out whole; one over 10 MiB is refused with nothing stored")
  func attachments() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      try await world.account("teacher2", role: .teacher, org: IdentityWorld.otherSchool)
      let teacher = try await world.options("teacher1")
      let order = try await orders(world).submit(WorkOrderFixture.submission(), options: teacher)
      let content = (0..<(600 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
      func upload(_ bytes: [UInt8], options: CallOptions) async throws -> Eduhub_Workorder_V1_Attachment {
        try await orders(world).addAttachment(options: options) { writer in
          for (index, start) in stride(from: 0, to: bytes.count, by: 100 << 10).enumerated() {
            var chunk = Eduhub_Workorder_V1_AttachmentChunk()
            if index == 0 {
              chunk.orderID = order.id
              chunk.fileName = "名单.xlsx"
              chunk.contentType = "application/vnd.ms-excel"
            }
            chunk.data = Data(bytes[start..<min(bytes.count, start + (100 << 10))])
            try await writer.write(chunk)
          }
        }
      }
      let attachment = try await upload(content, options: teacher)
      #expect(attachment.size == Int64(content.count) && attachment.chunks == 3 && attachment.fileName == "名单.xlsx")
      var get = Eduhub_Workorder_V1_GetAttachmentRequest()
      get.id = attachment.id
      let downloaded = try await orders(world).getAttachment(get, options: teacher) { stream in
        var head: Eduhub_Workorder_V1_Attachment?
        var bytes: [UInt8] = []
        for try await chunk in stream {
          if chunk.hasAttachment { head = chunk.attachment } else { bytes += chunk.data }
        }
        return (head, bytes)
      }
      #expect(downloaded.0?.digest == attachment.digest && downloaded.1 == content)
      var detail = Eduhub_Workorder_V1_GetOrderRequest()
      detail.id = order.id
      let shown = try await orders(world).getOrder(detail, options: teacher)
      #expect(shown.attachments.map(\.id) == [attachment.id] && shown.timeline.last?.note.contains("名单.xlsx") == true)
      // Not readable, not attachable, for another school's teacher.
      await expectStatus(.notFound) { try await orders(world).getAttachment(get, options: try await world.options("teacher2")) { stream in
          for try await _ in stream {}
        }
      }
      await expectStatus(.notFound) { try await upload([1, 2, 3], options: try await world.options("teacher2")) }
      // Over the limit: refused, and no metadata, chunk or event written.
      let before = try world.identity.store.records.database.read { db in try world.identity.store.records.lastSequence(in: db) }
      await expectStatus(.resourceExhausted) { try await upload([UInt8](repeating: 7, count: (10 << 20) + 1), options: teacher) }
      let after = try world.identity.store.records.database.read { db in try world.identity.store.records.lastSequence(in: db) }
      #expect(after == before)
    }
  }

  @Test("group commit: concurrent writes share transactions, and one that fails rolls back alone")
  func groupCommit() async throws {
    try await withWorld(seed: false) { world in
      let identity = world.identity
      let results = await withTaskGroup(of: (Int, Bool).self) { group in
        for index in 0..<64 {
          group.addTask {
            do {
              try await identity.store.batched { db in
                var mark = Eduhub_Workorder_V1_OrderEvent()
                mark.orderID = "WO-T-\(index)"
                try identity.replica.write(
                  [.init(collection: WorkOrderCollections.watch.name, id: "WO-T-\(index)|a", scope: "", body: try mark.serializedBytes())],
                  in: db)
                if index % 10 == 3 { throw RPCError(.failedPrecondition, "refused after writing") }
              }
              return (index, true)
            } catch {
              return (index, false)
            }
          }
        }
        var out: [Int: Bool] = [:]
        for await (index, ok) in group { out[index] = ok }
        return out
      }
      for index in 0..<64 {
        let stored = try identity.store.records.get(WorkOrderCollections.watch, "WO-T-\(index)|a") != nil
        #expect(results[index] == (index % 10 != 3) && stored == results[index], "\(index)")
      }
    }
  }

  @Test("the calendar and SLA targets come from a configuration: a new year's holidays, hours, targets; bad input refused")
  func calendarConfiguration() throws {
    let policy = try SlaConfiguration.policy(from: [
      "periods": ["09:00-12:00", "13:00-18:00"],
      "years": [2027: ["holidays": ["2027-01-01"], "workdays": ["2027-01-02"]]],
      "targets": ["P1": [30, 300]],
    ] as [String: Any])
    #expect(policy.calendar.periods == [540...720, 780...1080])
    #expect(policy.target(.dataQuality, .p1) == (30, 300) && policy.target(.dataQuality, .p4) == (840, 4200))
    let calendar = policy.calendar
    let newYear = Int64(1_798_732_800_000)  // 2027-01-01 00:00 UTC+8 is 2026-12-31 16:00 UTC
    // Friday 1 January 2027 is a holiday, Saturday the 2nd is worked: 8 hours.
    #expect(calendar.workingMinutes(from: newYear, to: newYear + 86_400_000) == 0)
    #expect(calendar.workingMinutes(from: newYear + 86_400_000, to: newYear + 2 * 86_400_000) == 480)
    for bad: [String: Any] in [
      ["periods": ["17:00-09:00"]], ["years": [2027: ["holidays": ["2026-12-31"]]]], ["targets": ["P9": [1, 2]]],
      ["targets": ["P1": [600, 60]]], ["colour": "blue"], ["periods": ["08:00-12:00", "11:00-13:00"]],
    ] {
      #expect(throws: SlaConfiguration.Problem.self) { try SlaConfiguration.policy(from: bad) }
    }
  }
}
