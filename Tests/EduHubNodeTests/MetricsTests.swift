import EduHubAPI
import EduHubRPC
import EduHubTestSupport
import Foundation
import Testing

/// `GET /metrics` of a real `eduhub serve`: what it counts, that Prometheus's own linter takes it,
/// that the counts follow a load exactly, and that `--metrics-listen` moves it off the node's port.
@Suite("Metrics of a serving node", .serialized)
struct MetricsTests {
  /// A node initialised in a temporary directory and served as its own process.
  final class ServedNode {
    let root: String
    let port = freePort()
    let process = Process()

    /// - Parameter seeded: with the small seed's orgs and people.
    init(extra: [String] = [], seeded: Bool = false) throws {
      root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-metrics-\(UUID())").path
      try #require(try run(["init", "--data", root]).status == 0)
      if seeded { try #require(try run(["seed", "--data", root]).status == 0) }
      process.executableURL = binary
      process.arguments = ["serve", "--data", root, "--listen", "127.0.0.1:\(port)", "--log-level", "error"] + extra
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
    }

    /// Health checks: public (a node serving its data asks a token of every other method).
    var health: Grpc_Health_V1_Health.Client { .init(RPCClient(host: "127.0.0.1", port: port)) }

    /// Checks health until the node answers (it may still be starting).
    func waitUntilServing() async throws {
      for _ in 0..<300 {
        if (try? await health.check(options: CallOptions(timeout: .seconds(5)))) != nil { return }
        try await Task.sleep(for: .milliseconds(100))
      }
      Issue.record("the node did not start serving")
    }

    func stop() {
      process.terminate()
      process.waitUntilExit()
      try? FileManager.default.removeItem(atPath: root)
    }
  }

  /// The body of `GET url` over HTTP/1.1 (curl), and its status.
  static func get(_ url: String, method: String = "GET") async throws -> (status: Int, body: String) {
    let result = try await ChildProcess.run("/usr/bin/curl", ["-sS", "-X", method, "-w", "\n%{http_code}", url])
    let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
  }

  /// The value of one series (`name{labels}` exactly as exposed), or nil when it is absent.
  static func value(_ series: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
      return Double(line.dropFirst(series.count + 1).split(separator: " ").first ?? "")
    }
    return nil
  }

  static let check = #"service="grpc.health.v1.Health",method="Check""#
  static let ping = #"service="eduhub.node.v1.NodeService",method="Ping""#
  static let getPerson = #"service="eduhub.identity.v1.IdentityService",method="GetPerson""#

  @Test("calls are counted per method and status code, timed in a histogram; connections, database and logs are reported; promtool accepts it")
  func counts() async throws {
    let served = try ServedNode()
    defer { served.stop() }
    try await served.waitUntilServing()
    let before = try await Self.get("http://127.0.0.1:\(served.port)/metrics")
    #expect(before.status == 200)
    let checksBefore = Self.value("eduhub_rpc_handled_total{\(Self.check),code=\"OK\"}", in: before.body) ?? 0
    for _ in 0..<25 { _ = try await served.health.check() }
    // A call without a token: refused by the interceptor, counted with its status.
    var request = Eduhub_Identity_V1_GetPersonRequest()
    request.id = "S5117030001-0002"
    await #expect(throws: RPCError.self) {
      _ = try await Eduhub_Identity_V1_IdentityService.Client(RPCClient(host: "127.0.0.1", port: served.port)).getPerson(request)
    }
    // A node's Ping asks a token too.
    await #expect(throws: RPCError.self) { _ = try await Eduhub_Node_V1_NodeService.Client(RPCClient(host: "127.0.0.1", port: served.port)).ping() }
    // HTTP/2 (prior knowledge) gets the same text as HTTP/1.1.
    let scrape = try await ChildProcess.run("/usr/bin/curl", ["-sS", "--http2-prior-knowledge", "http://127.0.0.1:\(served.port)/metrics"])
    let text = scrape.output
    #expect(Self.value("eduhub_rpc_handled_total{\(Self.check),code=\"OK\"}", in: text) == checksBefore + 25)
    #expect(Self.value("eduhub_rpc_started_total{\(Self.check)}", in: text).map { $0 >= checksBefore + 25 } == true)
    #expect(Self.value("eduhub_rpc_handling_seconds_count{\(Self.check)}", in: text) == checksBefore + 25)
    #expect(Self.value("eduhub_rpc_handled_total{\(Self.getPerson),code=\"UNAUTHENTICATED\"}", in: text) == 1)
    #expect(Self.value("eduhub_rpc_handled_total{\(Self.getPerson),code=\"OK\"}", in: text) == 0)
    #expect(Self.value("eduhub_rpc_handled_total{\(Self.ping),code=\"UNAUTHENTICATED\"}", in: text) == 1)
    #expect(Self.value("eduhub_rpc_connections", in: text).map { $0 >= 1 } == true)
    #expect(Self.value("eduhub_database_size_bytes", in: text).map { $0 > 0 } == true)
    #expect(Self.value("eduhub_database_wal_size_bytes", in: text) != nil)
    #expect(Self.value("eduhub_audit_backlog_entries", in: text) != nil)
    #expect(Self.value("eduhub_call_log_backlog_entries", in: text) != nil)
    #expect(Self.value("eduhub_sync_last_success_timestamp_seconds", in: text) == 0)  // no upstream
    // Nothing a client sends becomes a label: an unknown path is not a series.
    #expect(!text.contains("NoSuchMethod"))
    // Prometheus's linter takes the whole exposition.
    let lint = try await Self.promtool(text)
    #expect(lint.status == 0, "promtool check metrics: \(lint.output)")
    // Only GET.
    let post = try await Self.get("http://127.0.0.1:\(served.port)/metrics", method: "POST")
    #expect(post.status == 405)
  }

  @Test("under load from many callers the counts follow exactly, never going back between scrapes")
  func underLoad() async throws {
    let served = try ServedNode()
    defer { served.stop() }
    try await served.waitUntilServing()
    let series = "eduhub_rpc_handled_total{\(Self.check),code=\"OK\"}"
    let start = Self.value(series, in: try await Self.get("http://127.0.0.1:\(served.port)/metrics").body) ?? 0
    let client = served.health
    let port = served.port
    let scrapes = try await withThrowingTaskGroup(of: [Double].self) { group in
      for _ in 0..<8 {
        group.addTask {
          for _ in 0..<250 { _ = try await client.check() }
          return []
        }
      }
      group.addTask {
        var seen: [Double] = []
        for _ in 0..<10 {
          seen.append(Self.value(series, in: try await Self.get("http://127.0.0.1:\(port)/metrics").body) ?? 0)
          try await Task.sleep(for: .milliseconds(20))
        }
        return seen
      }
      var all: [Double] = []
      for try await seen in group { all += seen }
      return all
    }
    #expect(zip(scrapes, scrapes.dropFirst()).allSatisfy { $0 <= $1 }, "\(scrapes)")
    let text = try await Self.get("http://127.0.0.1:\(served.port)/metrics").body
    #expect(Self.value(series, in: text) == start + 2000)
    #expect(Self.value("eduhub_rpc_handling_seconds_count{\(Self.check)}", in: text) == start + 2000)
  }

  @Test("--metrics-listen serves the metrics on their own address and takes them off the node's port")
  func ownAddress() async throws {
    let metricsPort = freePort()
    let served = try ServedNode(extra: ["--metrics-listen", "127.0.0.1:\(metricsPort)"])
    defer { served.stop() }
    try await served.waitUntilServing()
    _ = try await served.health.check()
    let own = try await Self.get("http://127.0.0.1:\(metricsPort)/metrics")
    #expect(own.status == 200)
    #expect(Self.value("eduhub_rpc_handled_total{\(Self.check),code=\"OK\"}", in: own.body).map { $0 >= 1 } == true)
    let onNodePort = try await Self.get("http://127.0.0.1:\(served.port)/metrics")
    #expect(onNodePort.status == 404)
    #expect(!onNodePort.body.contains("eduhub_rpc"))
    let elsewhere = try await Self.get("http://127.0.0.1:\(metricsPort)/v1/apis/x")
    #expect(elsewhere.status == 404)
  }

  @Test("a malformed --metrics-listen is refused before the node starts")
  func badAddress() throws {
    let result = try run(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "nowhere"])
    #expect(result.status != 0)
    #expect(result.errors.contains("--metrics-listen"))
  }

  /// `promtool check metrics` on `text` (Debian's prometheus package, which Tools/setup installs).
  static func promtool(_ text: String) async throws -> (status: Int32, output: String) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID()).txt").path
    try text.write(toFile: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: file) }
    let promtool = try #require(
      ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) },
      "promtool is missing: run Tools/setup (Debian's prometheus package)")
    return try await ChildProcess.run("/bin/sh", ["-c", "\(promtool) check metrics < '\(file)' 2>&1"])
  }
}
