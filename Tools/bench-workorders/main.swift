// The work order benchmark (issue 10), run by Tools/bench-workorders/run.
//   generate --data DIR --orders N: writes N orders with about 10 events each straight into a node
//     (as `eduhub seed` writes people), spread over the past year and the city's schools.
//   measure --port P ...: against `eduhub serve`: submit throughput over gRPC, statistics latency for
//     the city and for one county, and how soon a state change reaches a watcher.
import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubWorkOrders
import EduHubBenchSupport
import Foundation
import Logging
import SwiftProtobuf

// MARK: generate

func generate() throws {
  let directory = option("data", "")
  let count = Int(option("orders", "1000000")) ?? 1_000_000
  let node = try NodeData.load(directory).open(logger: Logger(label: "bench"))
  let replica = node.replica
  let schools = try replica.store.database.read { db in
    try replica.store.records(IdentityCollections.org, limit: 100_000, in: db).filter {
      (try? Eduhub_Identity_V1_Org(serializedBytes: $0.body))?.kind == .school
    }
  }
  guard !schools.isEmpty else { throw RPCError(.failedPrecondition, "seed the node first") }
  var random = SplitMix64(seed: 2026)
  let now = Int64(Date().timeIntervalSince1970 * 1000)
  let year: Int64 = 365 * 86_400_000
  let kinds: [Eduhub_Workorder_V1_OrderKind] = [.dataRequest, .dataQuality, .dataCorrection, .accessProblem, .safetyHazard]
  // Paths of events: most orders are closed, some still open at each step.
  let paths: [[Eduhub_Workorder_V1_Action]] = [
    [.accept, .start, .askRequester, .answer, .resolve, .verifyClose],
    [.accept, .start, .resolve, .verifyClose],
    [.accept, .start, .resolve, .reopen, .resolve, .verifyClose],
    [.accept, .start, .resolve],
    [.accept, .start],
    [.accept],
    [],
    [.reject],
    [.cancel],
  ]
  let weights = [30, 25, 5, 10, 10, 5, 5, 5, 5]
  var hlc: UInt64 = HybridLogicalClock.systemMilliseconds() << 16
  let start = Date()
  var events = 0
  var writes: [Replica.Write] = []
  writes.reserveCapacity(12_000)
  for index in 0..<count {
    let school = schools[random.next(schools.count)]
    var order = Eduhub_Workorder_V1_WorkOrder()
    order.id = String(format: "WO-B-%08d", index)
    order.kind = kinds[random.next(kinds.count)]
    order.priority = [.p1, .p2, .p3, .p4][random.next(4)]
    order.title = "数据问题 \(index)"
    order.description_p = "学校上报的数据问题，需要核实处理"
    order.submitter = "bench-teacher"
    order.submittingOrgCode = school.id
    let parts = school.scope.split(separator: "/")
    order.serviceOrgCode = String(parts.count >= 2 ? parts[1] : parts[0])
    order.createdMs = now - Int64(random.next(Int(year / 1000))) * 1000
    writes.append(.init(collection: WorkOrderCollections.order.name, id: order.id, scope: school.scope, body: try order.serializedBytes()))
    var pick = random.next(100)
    var path: [Eduhub_Workorder_V1_Action] = []
    for (candidate, weight) in zip(paths, weights) {
      if pick < weight { path = candidate; break }
      pick -= weight
    }
    // Comments pad the history to about ten events an order.
    var actions = path
    while actions.count < 11, !path.isEmpty { actions.insert(.comment, at: 1 + random.next(actions.count)) }
    var time = order.createdMs
    for action in actions {
      time += Int64(1 + random.next(6 * 3600)) * 1000
      hlc += 1
      var event = Eduhub_Workorder_V1_OrderEvent()
      event.id = "\(order.id)|\(String(hlc, radix: 16))|bench"
      event.orderID = order.id
      event.action = action
      event.actor = "bench-worker"
      event.hlc = hlc
      event.node = "bench"
      event.timeMs = min(time, now)
      if action == .accept { event.assigneeOrgCode = order.serviceOrgCode; event.assignee = "bench-worker" }
      if action == .comment || action == .resolve || action == .reject || action == .askRequester { event.note = "处理说明" }
      writes.append(.init(collection: WorkOrderCollections.event.name, id: event.id, scope: school.scope, body: try event.serializedBytes()))
      events += 1
    }
    if writes.count >= 10_000 {
      try replica.write(writes)
      writes.removeAll(keepingCapacity: true)
    }
    if index % 100_000 == 99_999 {
      FileHandle.standardError.write(Data("  generated \(index + 1) orders, \(events) events, \(Int(Date().timeIntervalSince(start))) s\n".utf8))
    }
  }
  try replica.write(writes)
  print(String(format: "generated %d orders with %d events in %.0f s", count, events, Date().timeIntervalSince(start)))
  Task { await node.close() }
  Thread.sleep(forTimeInterval: 1)
}

// MARK: measure

func measure() async throws {
  let port = Int(option("port", "0")) ?? 0
  let password = ProcessInfo.processInfo.environment["BENCH_PASSWORD"] ?? ""
  let submits = Int(option("submits", "20000")) ?? 20_000
  let callers = Int(option("callers", "64")) ?? 64
  let rpc = RPCClient(host: "127.0.0.1", port: port)
  func token(_ user: String) async throws -> CallOptions {
    var login = Eduhub_Identity_V1_LoginRequest()
    login.login = user
    login.password = password
    let pair = try await Eduhub_Identity_V1_IdentityService.Client(rpc).login(login)
    return CallOptions(metadata: ["authorization": .string("Bearer " + pair.accessToken)])
  }
  let teacher = try await token("bench-teacher")
  let city = try await token("bench-city")
  let orders = Eduhub_Workorder_V1_WorkOrderService.Client(rpc)

  let only = option("only", "")
  var stats = Eduhub_Workorder_V1_StatsRequest()
  var began = Date()
  if only.isEmpty || only == "stats" {
  // Statistics: the first call loads every order into memory.
  let all = try await orders.getStats(stats, options: city)
  print(String(format: "first GetStats (loads %d orders into memory): %.1f s", all.total, Date().timeIntervalSince(began)))
  for (label, org) in [("city", ""), ("county 511702", "511702")] {
    stats.orgCode = org
    var latencies: [Double] = []
    var total: Int64 = 0
    for _ in 0..<200 {
      let start = DispatchTime.now().uptimeNanoseconds
      total = try await orders.getStats(stats, options: city).total
      latencies.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    latencies.sort()
    print(
      String(
        format: "GetStats for the %@ (%d orders), 200 calls: p50 %.1f ms, p99 %.1f ms (target < %d ms)", label, total,
        percentile(latencies, 0.5), percentile(latencies, 0.99), org.isEmpty ? 200 : 50))
  }

  }
  if only.isEmpty || only == "submit" {
  // Submit: many callers at a time (schools filing at once).
  began = Date()
  try await withThrowingTaskGroup(of: Void.self) { group in
    for worker in 0..<callers {
      group.addTask {
        for index in stride(from: worker, to: submits, by: callers) {
          var request = Eduhub_Workorder_V1_SubmitRequest()
          request.order.kind = .dataQuality
          request.order.priority = .p3
          request.order.title = "基准工单 \(index)"
          _ = try await orders.submit(request, options: teacher)
        }
      }
    }
    try await group.waitForAll()
  }
  let seconds = Date().timeIntervalSince(began)
  print(
    String(
      format: "Submit over gRPC, %d concurrent callers: %d orders in %.1f s = %.0f orders/s (target >= 10,000)", callers, submits,
      seconds, Double(submits) / seconds))
  }
  if only.isEmpty || only == "watch" {

  // Watch: how soon a change made by one caller reaches another's open stream.
  var submit = Eduhub_Workorder_V1_SubmitRequest()
  submit.order.kind = .dataRequest
  submit.order.priority = .p2
  submit.order.title = "Watch 基准"
  let watched = try await orders.submit(submit, options: teacher)
  let latencies = try await orders.watch(Eduhub_Workorder_V1_WatchRequest(), options: teacher) { stream in
    var iterator = stream.makeAsyncIterator()
    // A stream without a cursor starts where the server stands when the call reaches it, which may
    // be after a comment sent at once: comment until one arrives, so no measured change is missed.
    let warmUp = Task {
      var round = 0
      while !Task.isCancelled {
        var act = Eduhub_Workorder_V1_ActRequest()
        act.orderID = watched.id
        act.action = .comment
        act.note = "预热 \(round)"
        _ = try? await orders.act(act, options: city)
        round += 1
        try? await Task.sleep(for: .milliseconds(100))
      }
    }
    while let change = try await iterator.next() {
      if change.events.contains(where: { $0.note.hasPrefix("预热") }) { break }
    }
    warmUp.cancel()
    _ = await warmUp.result
    var out: [Double] = []
    for index in 0..<300 {
      var act = Eduhub_Workorder_V1_ActRequest()
      act.orderID = watched.id
      act.action = .comment
      act.note = "进展 \(index)"
      let start = DispatchTime.now().uptimeNanoseconds
      _ = try await orders.act(act, options: city)
      while let change = try await iterator.next() {
        if change.events.contains(where: { $0.note == act.note }) { break }
      }
      out.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    return out.sorted()
  }
  print(
    String(
      format: "Watch: a comment by the city reaches the submitter's stream, 300 changes: p50 %.1f ms, p99 %.1f ms (target < 50 ms; includes the Act call)",
      percentile(latencies, 0.5), percentile(latencies, 0.99)))
  }
  await rpc.close()
}

do {
  if CommandLine.arguments.dropFirst().first == "generate" { try generate() } else { try await measure() }
} catch {
  FileHandle.standardError.write(Data("bench-workorders: \(error)\n".utf8))
  exit(1)
}
