// The sharing benchmark's client (issue 9), run by Tools/bench-sharing/run against a separate
// `eduhub serve` process.
//
//   setup      publishes a table of students (1,000,000 rows by default, ingested over client
//              streaming) and a point-lookup API over it, has the consumer granted both, and writes
//              what h2load needs into --out: the consumer's token, a framed CallApi request and its
//              JSON body.
//   subscribe  streams the whole table through Subscribe (rows/s, the server's peak RSS), then
//              times changes written at the source until they reach the open subscription (p50/p99).
import EduHubAPI
import EduHubRPC
import EduHubBenchSupport
import Foundation
import SwiftProtobuf

let port = Int(option("port", "0")) ?? 0
let serverPID = option("server-pid", "0")
let rowCount = Int(option("rows", "1000000")) ?? 1_000_000
let changeCount = Int(option("changes", "300")) ?? 300
let out = option("out", ".")
let password = ProcessInfo.processInfo.environment["BENCH_PASSWORD"] ?? ""
let table = "bench.students"
let api = "bench.lookup"

func field(
  _ name: String, _ type: Eduhub_Catalog_V1_FieldType, _ sensitivity: Eduhub_Common_V1_Sensitivity = .internal,
  _ masking: Eduhub_Common_V1_MaskingKind = .none
) -> Eduhub_Catalog_V1_SchemaField {
  var field = Eduhub_Catalog_V1_SchemaField()
  field.name = name
  field.type = type
  field.sensitivity = sensitivity
  field.masking = masking
  return field
}

func text(_ value: String) -> Eduhub_Catalog_V1_Value {
  var out = Eduhub_Catalog_V1_Value()
  out.text = value
  return out
}

let columns = ["student_id", "name", "birth_date", "school", "grade", "score"]

func row(_ index: Int, score: Int = 0) -> Eduhub_Catalog_V1_IngestRow {
  var row = Eduhub_Catalog_V1_IngestRow()
  var grade = Eduhub_Catalog_V1_Value()
  grade.integer = Int64(1 + index % 9)
  row.values = [
    text("S\(String(format: "%07d", index))"), text("学生\(index % 1000)"), text("201\(index % 8)-0\(1 + index % 9)-1\(index % 10)"),
    text("51170\(2 + index % 5)\(String(format: "%04d", index % 300))"), grade, text("\(60 + (index + score) % 40).5"),
  ]
  return row
}

func login(_ rpc: RPCClient, _ username: String) async throws -> CallOptions {
  var request = Eduhub_Identity_V1_LoginRequest()
  request.login = username
  request.password = password
  let token = try await Eduhub_Identity_V1_IdentityService.Client(rpc).login(request).accessToken
  return CallOptions(metadata: ["authorization": .string("Bearer " + token)])
}

func ingest(_ catalog: Eduhub_Catalog_V1_CatalogService.Client, _ rows: some Sequence<Eduhub_Catalog_V1_IngestRow>, options: CallOptions)
  async throws -> Eduhub_Catalog_V1_IngestRowsResponse
{
  try await catalog.ingestRows(options: options) { writer in
    var message = Eduhub_Catalog_V1_IngestRowsRequest()
    message.resourceCode = table
    message.columns = columns
    for row in rows {
      message.rows.append(row)
      if message.rows.count == 1000 {
        try await writer.write(message)
        message = Eduhub_Catalog_V1_IngestRowsRequest()
      }
    }
    if !message.rows.isEmpty || !message.resourceCode.isEmpty { try await writer.write(message) }
  }
}

func setup(_ rpc: RPCClient) async throws {
  let publisher = try await login(rpc, "bench-steward")
  let consumer = try await login(rpc, "bench-consumer")
  let catalog = Eduhub_Catalog_V1_CatalogService.Client(rpc)
  let sharing = Eduhub_Sharing_V1_SharingService.Client(rpc)
  var resource = Eduhub_Catalog_V1_Resource()
  resource.code = table
  resource.name = "学生基础数据（基准）"
  resource.type = .table
  resource.responsibleOrgCode = "511700"
  resource.sharingClass = .unconditional
  resource.openingClass = .notOpen
  resource.fields = [
    field("student_id", .string), field("name", .string, .sensitive, .name), field("birth_date", .date, .sensitive, .birthDate),
    field("school", .string), field("grade", .integer), field("score", .decimal),
  ]
  resource.dataset.ingested.keyFields = ["student_id"]
  var publish = Eduhub_Catalog_V1_PublishResourceRequest()
  publish.resource = resource
  _ = try await catalog.publishResource(publish, options: publisher)
  let started = Date()
  let ingested = try await ingest(catalog, (0..<rowCount).lazy.map { row($0) }, options: publisher)
  print(String(format: "setup: %d rows ingested in %.1f s", ingested.rowCount, Date().timeIntervalSince(started)))

  var lookup = Eduhub_Catalog_V1_Resource()
  lookup.code = api
  lookup.name = "按学号查询学生（基准）"
  lookup.type = .api
  lookup.responsibleOrgCode = "511700"
  lookup.sharingClass = .unconditional
  lookup.openingClass = .notOpen
  lookup.api.datasetCode = table
  lookup.api.fields = ["student_id", "name", "school", "grade", "score"]
  var id = Eduhub_Catalog_V1_ApiParameter()
  id.name = "id"
  id.field = "student_id"
  id.required = true
  lookup.api.parameters = [id]
  publish.resource = lookup
  _ = try await catalog.publishResource(publish, options: publisher)

  for code in [table, api] {
    var request = Eduhub_Sharing_V1_RequestAccessRequest()
    request.terms.resourceCode = code
    request.terms.consumer.kind = .org
    request.terms.consumer.id = "511703"
    request.terms.purpose = "基准测试"
    request.terms.masking = .masked
    request.terms.ratePerSecond = 100_000
    request.terms.dailyQuota = 1_000_000_000
    let granted = try await sharing.requestAccess(request, options: consumer)
    guard granted.state == .approved else { throw RPCError(.failedPrecondition, "the bench grant was not approved at once") }
  }
  // What h2load sends: the consumer's token, one CallApi request (framed) and its JSON body.
  var call = Eduhub_Sharing_V1_CallApiRequest()
  call.apiCode = api
  call.parameters = ["id": "S0004242"]
  let answer = try await sharing.callApi(call, options: consumer)
  guard answer.rows.count == 1, answer.rows[0].masked else { throw RPCError(.internalError, "the bench lookup did not answer one masked row") }
  let message: [UInt8] = try call.serializedBytes()
  let framed = [0] + withUnsafeBytes(of: UInt32(message.count).bigEndian, Array.init) + message
  let token = consumer.metadata["authorization"] ?? ""
  try Data(framed).write(to: URL(fileURLWithPath: out + "/callapi.bin"))
  try Data(#"{"id": "S0004242"}"#.utf8).write(to: URL(fileURLWithPath: out + "/callapi.json"))
  try Data(token.utf8).write(to: URL(fileURLWithPath: out + "/token.txt"))
}

func subscribe(_ rpc: RPCClient) async throws {
  let consumer = try await login(rpc, "bench-consumer")
  let publisher = try await login(rpc, "bench-steward")
  let sharing = Eduhub_Sharing_V1_SharingService.Client(rpc)
  let catalog = Eduhub_Catalog_V1_CatalogService.Client(rpc)
  var request = Eduhub_Sharing_V1_SubscribeRequest()
  request.resourceCode = table
  request.batchSize = 2000
  // The peak is the process's since it started (the ingest, the calls); reset it (Linux
  // clear_refs 5) so that the figure is the subscription's own.
  try? Data("5".utf8).write(to: URL(fileURLWithPath: "/proc/\(serverPID)/clear_refs"))
  let before = processMemory(pid: serverPID)
  let started = Date()
  let (rows, cursor) = try await sharing.subscribe(request, options: consumer) { stream -> (Int, String) in
    var rows = 0
    for try await message in stream {
      rows += message.changes.count
      if message.snapshotDone { return (rows, message.cursor) }
    }
    return (rows, "")
  }
  let seconds = Date().timeIntervalSince(started)
  let memory = processMemory(pid: serverPID)
  print(
    String(
      format: "Subscribe, snapshot of %d rows (masked, 6 fields), batches of 2,000: %.0f rows/s (%.1f s); server RSS %.0f MiB before, %.0f MiB after, peak during the subscription %.0f MiB",
      rows, Double(rows) / seconds, seconds, before.rss, memory.rss, memory.peak))

  // Change latency: a subscription resumed at the end of the snapshot; each change is one IngestRows
  // call of one row, timed from before the call until the subscriber holds the row.
  request.cursor = cursor
  request.batchSize = 500
  let arrivals = AsyncStream<(String, Date)>.makeStream()
  let listener = Task {
    try await sharing.subscribe(request, options: consumer) { stream in
      for try await message in stream {
        let now = Date()
        for change in message.changes { arrivals.continuation.yield((change.key, now)) }
      }
    }
  }
  var latencies: [Double] = []
  var iterator = arrivals.stream.makeAsyncIterator()
  for index in 0..<changeCount {
    let sent = Date()
    _ = try await ingest(catalog, [row(index * 997 % max(rowCount, 1), score: index + 1)], options: publisher)
    while let (key, at) = await iterator.next() {
      if key == "S\(String(format: "%07d", index * 997 % max(rowCount, 1)))" {
        latencies.append(at.timeIntervalSince(sent) * 1000)
        break
      }
    }
  }
  listener.cancel()
  latencies.sort()
  print(
    String(
      format: "change at the source -> open subscriber (%d changes, IngestRows call included): p50 %.2f ms, p99 %.2f ms (target < 50 ms)",
      latencies.count, percentile(latencies, 0.5), percentile(latencies, 0.99)))
  print(String(format: "subscription throughput target >= 200,000 rows/s: %@; server peak RSS < 200 MiB: %@",
    Double(rows) / seconds >= 200_000 ? "met" : "MISSED", memory.peak < 200 ? "met" : "MISSED"))
}

/// The call log's count of the consumer's calls and failures (h2load counts HTTP 200 as success,
/// while a gRPC error also comes with HTTP 200: the log tells).
func stats(_ rpc: RPCClient) async throws {
  let consumer = try await login(rpc, "bench-consumer")
  let stats = try await Eduhub_Sharing_V1_SharingService.Client(rpc).getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: consumer)
  let calls = stats.stats.reduce(0) { $0 + $1.calls }
  let failures = stats.stats.reduce(0) { $0 + $1.failures }
  print("call log: \(calls) calls, \(failures) failed")
  if failures > 0 { exit(2) }
}

let rpc = RPCClient(host: "127.0.0.1", port: port)
do {
  switch CommandLine.arguments.dropFirst().first {
  case "setup": try await setup(rpc)
  case "subscribe": try await subscribe(rpc)
  case "stats": try await stats(rpc)
  default: print("usage: eduhub-bench-sharing setup|subscribe|stats --port N [--server-pid P] [--rows N] [--out DIR]")
  }
} catch {
  print("bench: \(error)")
  await rpc.close()
  exit(1)
}
await rpc.close()
