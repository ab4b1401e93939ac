// The catalog benchmark's client (issue 8), run by Tools/bench-catalog/run against a separate
// `eduhub serve` process: publishes resources, streams rows, times searches, reads the server's RSS.
import EduHubAPI
import EduHubRPC
import EduHubBenchSupport
import EduHubStorage
import Foundation
import GRDB

let port = Int(option("port", "0")) ?? 0
let serverPID = option("server-pid", "0")
let resourceCount = Int(option("resources", "10000")) ?? 10_000
let rowCount = Int(option("rows", "5000000")) ?? 5_000_000
let searchCount = Int(option("searches", "2000")) ?? 2_000
let password = ProcessInfo.processInfo.environment["BENCH_PASSWORD"] ?? ""
/// Times searches only, against a node an earlier run filled (for profiling the search alone).
let searchOnly = CommandLine.arguments.contains("--search-only")

let words = ["学生", "教师", "学校", "成绩", "招生", "安全", "体质", "健康", "资助", "学籍", "课程", "考试", "食堂", "校车", "图书", "设备", "经费", "师资", "德育", "心理"]
let suffixes = ["基础数据", "统计", "名册", "记录", "台账", "监测数据", "明细", "汇总", "档案", "信息"]
let themes = ["student", "teacher", "school", "evaluation", "enrollment", "safety"]
let systems = ["学籍管理系统", "教师管理信息系统", "教育事业统计系统", "考试评价系统", "招生入学平台", "校园安全管理平台", "资助管理系统", "后勤管理平台"]
let counties = ["511702", "511703", "511722", "511723", "511724", "511725", "511781"]

func resource(_ index: Int) -> Eduhub_Catalog_V1_Resource {
  var random = SystemRandomNumberGenerator()
  var resource = Eduhub_Catalog_V1_Resource()
  resource.code = "bench.\(index)"
  let first = words[index % words.count], second = words[(index / words.count + index) % words.count]
  resource.name = "\(first)\(second)\(suffixes[index % suffixes.count])\(index)"
  resource.summary = "\(first)与\(second)相关的\(suffixes[(index / 7) % suffixes.count])，供各级教育部门共享使用"
  resource.theme = themes[index % themes.count]
  resource.type = [.table, .api, .file][index % 3]
  resource.publishingSystem = systems[Int.random(in: 0..<systems.count, using: &random)]
  resource.responsibleOrgCode = counties[index % counties.count]
  resource.exchangeForms = index % 2 == 0 ? ["数据库", "文件"] : ["接口"]
  resource.sharingClass = [.unconditional, .conditional, .notShared][index % 3 == 2 ? 1 : index % 2]
  resource.openingClass = .notOpen
  resource.updateCycle = "每月"
  resource.rowCount = 100
  var key = Eduhub_Catalog_V1_SchemaField()
  key.name = "record_id"
  key.type = .string
  key.description_p = "记录编号"
  var value = Eduhub_Catalog_V1_SchemaField()
  value.name = "amount"
  value.type = .decimal
  value.description_p = "\(second)数值"
  resource.fields = [key, value]
  if resource.type == .table { resource.dataset.ingested.keyFields = ["record_id"] }
  return resource
}

func main() async throws {
  let rpc = RPCClient(host: "127.0.0.1", port: port)
  defer { Task { await rpc.close() } }
  var login = Eduhub_Identity_V1_LoginRequest()
  login.login = "bench-steward"
  login.password = password
  let token = try await Eduhub_Identity_V1_IdentityService.Client(rpc).login(login).accessToken
  let options = CallOptions(metadata: ["authorization": .string("Bearer " + token)])
  let catalog = Eduhub_Catalog_V1_CatalogService.Client(rpc)

  if !searchOnly { try await fill(catalog, options: options) }
  // Three rounds, alternating the search with its floors: a Ping round trip over the same
  // connection, and SQLite FTS5 in process.
  let fts = try ftsFloor()
  var rounds: [(search: Figures, ping: Figures, fts: Figures)] = []
  for round in 1...3 {
    let search = try await timeSearches(catalog, options: options)
    let ping = try await timePings(Eduhub_Node_V1_NodeService.Client(rpc), options: options)
    let floor = try timeFTS5(fts)
    print(
      String(
        format: "round %d: SearchResources p50 %.2f ms, p99 %.2f ms (%.0f matches on average); Ping p50 %.2f ms, p99 %.2f ms; FTS5 p50 %.2f ms, p99 %.2f ms (%.0f matches)",
        round, search.p50, search.p99, search.matches, ping.p50, ping.p99, floor.p50, floor.p99, floor.matches))
    rounds.append((search, ping, floor))
  }
  func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
  print(
    String(
      format: "SearchResources (2-char query + org subtree + type, facets) over %d resources, %d calls a round, median of 3 rounds: p50 %.2f ms, p99 %.2f ms (target <= 1)",
      resourceCount + 1, searchCount, median(rounds.map(\.search.p50)), median(rounds.map(\.search.p99))))
  print(String(format: "floor: Ping, one call at a time: p50 %.2f ms, p99 %.2f ms", median(rounds.map(\.ping.p50)), median(rounds.map(\.ping.p99))))
  print(
    String(
      format: "floor: SQLite FTS5 (unigram+bigram tokens), in process, same queries and filters, a page of 20 by bm25 and the total, no facets: p50 %.2f ms, p99 %.2f ms",
      median(rounds.map(\.fts.p50)), median(rounds.map(\.fts.p99))))
}

/// A timing's median and 99th percentile in milliseconds, and the average number of matches.
struct Figures {
  var p50: Double, p99: Double, matches: Double

  init(_ micros: [Double], matches: [Int64] = []) {
    let sorted = micros.sorted()
    p50 = percentile(sorted, 0.5) / 1000
    p99 = percentile(sorted, 0.99) / 1000
    self.matches = Double(matches.reduce(0, +)) / Double(max(1, matches.count))
  }
}

/// The transport's floor: a Ping round trip, one call at a time, over the same connection.
func timePings(_ node: Eduhub_Node_V1_NodeService.Client, options: CallOptions) async throws -> Figures {
  var latencies: [Double] = []
  for index in 0..<(searchCount + 100) {
    let began = DispatchTime.now().uptimeNanoseconds
    _ = try await node.ping(Eduhub_Node_V1_PingRequest(), options: options)
    if index >= 100 { latencies.append(Double(DispatchTime.now().uptimeNanoseconds - began) / 1000) }
  }
  return Figures(latencies)
}

/// The search floor the issue names: the same resources in SQLite FTS5 with CJK unigram and bigram
/// tokens (`SearchText`), in process.
func ftsFloor() throws -> DatabaseQueue {
  let queue = try DatabaseQueue()
  try queue.write { db in
    try db.execute(sql: "CREATE TABLE resource (id INTEGER PRIMARY KEY, code TEXT, org TEXT, type INTEGER)")
    try db.execute(sql: "CREATE VIRTUAL TABLE resource_text USING fts5 (text, tokenize = 'unicode61')")
    for index in 0..<resourceCount {
      let r = resource(index)
      try db.execute(sql: "INSERT INTO resource VALUES (?, ?, ?, ?)", arguments: [index + 1, r.code, r.responsibleOrgCode, r.type.rawValue])
      let text = ([r.name, r.code, r.theme, r.publishingSystem, r.summary] + r.exchangeForms + r.fields.flatMap { [$0.name, $0.description_p] })
        .map(SearchText.indexString).joined(separator: " ")
      try db.execute(sql: "INSERT INTO resource_text (rowid, text) VALUES (?, ?)", arguments: [index + 1, text])
    }
  }
  return queue
}

/// The same queries and filters against the FTS5 floor: the page of 20 by bm25 and the total.
func timeFTS5(_ queue: DatabaseQueue) throws -> Figures {
  var latencies: [Double] = []
  var totals: [Int64] = []
  try queue.read { db in
    for index in 0..<(searchCount + 100) {
      let began = DispatchTime.now().uptimeNanoseconds
      let match = SearchText.matchExpression(words[index % words.count]) ?? ""
      let filter = "FROM resource_text JOIN resource ON resource.id = resource_text.rowid WHERE resource_text MATCH ? AND resource.org = ? AND resource.type = ?"
      let arguments: StatementArguments = [match, counties[index % counties.count], Eduhub_Catalog_V1_ResourceType.table.rawValue]
      let page = try String.fetchAll(db, sql: "SELECT resource.code \(filter) ORDER BY bm25(resource_text) LIMIT 20", arguments: arguments)
      let total = try Int64.fetchOne(db, sql: "SELECT count(*) \(filter)", arguments: arguments) ?? 0
      if index >= 100 {
        latencies.append(Double(DispatchTime.now().uptimeNanoseconds - began) / 1000)
        totals.append(total)
        precondition(page.count == min(Int(total), 20))
      }
    }
  }
  return Figures(latencies, matches: totals)
}

/// Publishes the resources and streams the rows.
func fill(_ catalog: Eduhub_Catalog_V1_CatalogService.Client, options: CallOptions) async throws {
  // 1. Resources, eight callers at a time.
  var start = Date()
  try await withThrowingTaskGroup(of: Void.self) { group in
    for worker in 0..<8 {
      group.addTask {
        for index in stride(from: worker, to: resourceCount, by: 8) {
          var request = Eduhub_Catalog_V1_PublishResourceRequest()
          request.resource = resource(index)
          _ = try await catalog.publishResource(request, options: options)
        }
      }
    }
    try await group.waitForAll()
  }
  let publishSeconds = Date().timeIntervalSince(start)
  print(String(format: "publish %d resources: %.1f s (%.0f/s)", resourceCount, publishSeconds, Double(resourceCount) / publishSeconds))

  // 2. Rows over client streaming into one ingested table, 1,000 rows a message.
  var table = Eduhub_Catalog_V1_PublishResourceRequest()
  table.resource = resource(0)
  table.resource.code = "bench.rows"
  table.resource.name = "学生成绩明细（基准）"
  table.resource.responsibleOrgCode = "511700"
  table.resource.fields = [
    { var f = Eduhub_Catalog_V1_SchemaField(); f.name = "record_id"; f.type = .string; return f }(),
    { var f = Eduhub_Catalog_V1_SchemaField(); f.name = "school_code"; f.type = .string; return f }(),
    { var f = Eduhub_Catalog_V1_SchemaField(); f.name = "name"; f.type = .string; f.sensitivity = .sensitive; f.masking = .name; return f }(),
    { var f = Eduhub_Catalog_V1_SchemaField(); f.name = "score"; f.type = .decimal; return f }(),
    { var f = Eduhub_Catalog_V1_SchemaField(); f.name = "exam_date"; f.type = .date; return f }(),
  ]
  table.resource.type = .table
  table.resource.dataset.ingested.keyFields = ["record_id"]
  _ = try await catalog.publishResource(table, options: options)
  let before = processMemory(pid: serverPID)
  var peakDuring = before.rss
  start = Date()
  let response = try await catalog.ingestRows(options: options) { writer in
    var first = Eduhub_Catalog_V1_IngestRowsRequest()
    first.resourceCode = "bench.rows"
    first.columns = ["record_id", "school_code", "name", "score", "exam_date"]
    try await writer.write(first)
    var sent = 0
    while sent < rowCount {
      var message = Eduhub_Catalog_V1_IngestRowsRequest()
      message.rows.reserveCapacity(1000)
      for index in sent..<min(rowCount, sent + 1000) {
        var row = Eduhub_Catalog_V1_IngestRow()
        var id = Eduhub_Catalog_V1_Value(), school = Eduhub_Catalog_V1_Value(), name = Eduhub_Catalog_V1_Value()
        var score = Eduhub_Catalog_V1_Value(), date = Eduhub_Catalog_V1_Value()
        id.text = "R\(index)"
        school.text = "51170200\(10 + index % 90)"
        name.text = "王芳"
        score.decimal = "\(60 + index % 40).5"
        date.date = "2026-06-18"
        row.values = [id, school, name, score, date]
        message.rows.append(row)
      }
      sent += message.rows.count
      try await writer.write(message)
      if sent % 250_000 == 0 {
        let now = processMemory(pid: serverPID)
        peakDuring = max(peakDuring, now.rss)
        FileHandle.standardError.write(
          Data(String(format: "  %d rows, %.0f rows/s, server RSS %.0f MiB\n", sent, Double(sent) / Date().timeIntervalSince(start), now.rss).utf8))
      }
    }
  }
  let ingestSeconds = Date().timeIntervalSince(start)
  let after = processMemory(pid: serverPID)
  print(
    String(
      format: "ingest %d rows over client streaming: %.1f s = %.0f rows/s (target >= 100,000); rejected %d; server RSS %.0f MiB before, peak %.0f MiB during (target < 200), VmHWM %.0f MiB",
      response.upserted, ingestSeconds, Double(response.upserted) / ingestSeconds, response.rejected, before.rss, max(peakDuring, after.rss), after.peak))
}

/// Times searches through the RPC: a two-character Chinese query and two filters (a county's
/// subtree and a type), one call at a time.
func timeSearches(_ catalog: Eduhub_Catalog_V1_CatalogService.Client, options: CallOptions) async throws -> Figures {
  var latencies: [Double] = []
  var totals: [Int64] = []
  for index in 0..<(searchCount + 100) {
    var search = Eduhub_Catalog_V1_SearchResourcesRequest()
    search.query = words[index % words.count]
    search.orgCode = counties[index % counties.count]
    search.type = .table
    let began = DispatchTime.now().uptimeNanoseconds
    let found = try await catalog.searchResources(search, options: options)
    let micros = Double(DispatchTime.now().uptimeNanoseconds - began) / 1000
    if index >= 100 {  // the first hundred warm up
      latencies.append(micros)
      totals.append(found.total)
    }
  }
  return Figures(latencies, matches: totals)
}

do {
  try await main()
} catch {
  FileHandle.standardError.write(Data("bench-catalog: \(error)\n".utf8))
  exit(1)
}
