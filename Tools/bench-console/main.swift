// The web console benchmark's load (issue 21), run by Tools/bench-console/run against a separate
// `eduhub serve --console-listen` process:
//   --port P --sessions N --seconds S [--accounts A] [--static]
// N browsers, each an HTTP/1.1 keep-alive connection that signs in through the form (as one of A
// accounts `bench-county-NN`) and then browses without pause: catalog search (a two-character
// query, sometimes a county facet), a resource's detail, the work-order queue. Prints pages/s and,
// per page, the latency the client saw and the time the node reported in `Server-Timing`.
// `--static` fetches the stylesheet instead, without signing in: the HTTP floor of the same server.
import EduHubBenchSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

let port = Int(option("port", "0")) ?? 0
let sessionCount = Int(option("sessions", "500")) ?? 500
let seconds = Double(option("seconds", "60")) ?? 60
let warmup = Double(option("warmup", "5")) ?? 5
let accountCount = Int(option("accounts", "20")) ?? 20
let resourceCount = Int(option("resources", "10000")) ?? 10_000
let password = ProcessInfo.processInfo.environment["BENCH_PASSWORD"] ?? ""
let staticOnly = CommandLine.arguments.contains("--static")
/// Pages a second all browsers together ask for (each waits its turn: people read a page before the
/// next); 0 asks without pause, which measures the node's capacity.
let rate = Double(option("rate", "0")) ?? 0

let words = ["学生", "教师", "学校", "成绩", "招生", "安全", "体质", "健康", "资助", "学籍", "课程", "考试", "食堂", "校车", "图书", "设备", "经费", "师资", "德育", "心理"]
let counties = ["511702", "511703", "511722", "511723", "511724", "511725", "511781"]

enum PageKind: Int, CaseIterable {
  case search, detail, queue, asset
  var name: String { ["search", "detail", "queue", "stylesheet"][rawValue] }
}

/// One page fetched: its kind, what the client waited and what the node said it spent (ms).
struct Sample {
  var kind: PageKind
  var clientMs: Double
  var serverMs: Double
  /// Seconds into the measured window the request was sent.
  var at: Double
}

struct BenchFailure: Error, CustomStringConvertible {
  var description: String
}

/// An answer as the client keeps it.
struct Answer {
  var status: Int
  var headers: HTTPHeaders
  var body: String
}

/// One browser: a keep-alive connection and its cookie jar.
struct Browser {
  let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
  var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
  var jar: [String: String] = [:]

  mutating func fetch(_ method: HTTPMethod, _ target: String, form: [(String, String)]? = nil) async throws -> Answer {
    var headers = HTTPHeaders([("host", "127.0.0.1:\(port)"), ("user-agent", "eduhub-bench-console")])
    if !jar.isEmpty { headers.add(name: "cookie", value: jar.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")) }
    var body: ByteBuffer?
    if let form {
      let encoded = form.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
      body = ByteBuffer(string: encoded)
      headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
      headers.add(name: "origin", value: "http://127.0.0.1:\(port)")
      headers.add(name: "sec-fetch-site", value: "same-origin")
      headers.add(name: "content-length", value: String(encoded.utf8.count))
    }
    try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: headers)))
    if let body { try await outbound.write(.body(.byteBuffer(body))) }
    try await outbound.write(.end(nil))
    var head: HTTPResponseHead?
    var collected = ByteBuffer()
    while let part = try await inbound.next() {
      switch part {
      case .head(let received): head = received
      case .body(var chunk): collected.writeBuffer(&chunk)
      case .end:
        guard let head else { throw BenchFailure(description: "an answer without a head") }
        for cookie in head.headers["set-cookie"] {
          let pair = cookie.prefix { $0 != ";" }.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
          guard pair.count == 2 else { continue }
          if cookie.contains("Max-Age=0;") { jar[String(pair[0])] = nil } else { jar[String(pair[0])] = String(pair[1]) }
        }
        return Answer(status: Int(head.status.code), headers: head.headers, body: String(buffer: collected))
      }
    }
    throw BenchFailure(description: "the server closed the connection")
  }

  /// Signs in through the form, as a person does.
  mutating func signIn(_ login: String) async throws {
    let form = try await fetch(.GET, "/login")
    guard let mark = form.body.range(of: "name=\"_csrf\" value=\"") else { throw BenchFailure(description: "no sign-in form") }
    let token = String(form.body[mark.upperBound...].prefix { $0 != "\"" })
    let answer = try await fetch(.POST, "/login", form: [("_csrf", token), ("login", login), ("password", password), ("next", "/catalog")])
    guard answer.status == 303, jar.keys.contains(where: { $0.hasSuffix("eduhub-access") }) else {
      throw BenchFailure(description: "sign-in as \(login) failed: \(answer.status)")
    }
  }
}

func encode(_ text: String) -> String {
  text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
}

/// What the page cost the node, from `Server-Timing: app;dur=…`.
func serverMs(_ headers: HTTPHeaders) -> Double {
  guard let value = headers.first(name: "server-timing"), let mark = value.range(of: "dur=") else { return -1 }
  return Double(value[mark.upperBound...]) ?? -1
}

/// A small deterministic generator: the mix of pages is the same every run.
struct SplitMix64 {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next(_ bound: Int) -> Int {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return Int((z ^ (z >> 31)) % UInt64(bound))
  }
}

/// What the browsers share: how many have signed in, and the measured window once all have (an
/// Argon2id check each takes a while): a few seconds of warm-up, then the measured seconds.
final class Start: Sendable {
  let signedIn = Atomic<Int>(0)
  let window = Mutex<(measureFrom: ContinuousClock.Instant, deadline: ContinuousClock.Instant)?>(nil)
}

func main() async throws {
  let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
  let start = Start()
  let setupStart = ContinuousClock.now
  var setupSeconds = 0.0
  let samples = try await withThrowingTaskGroup(of: [Sample].self) { tasks in
    for index in 0..<sessionCount {
      tasks.addTask { try await browseWhenReady(index: index, group: group, start: start) }
    }
    while start.signedIn.load(ordering: .relaxed) < sessionCount { try await Task.sleep(for: .milliseconds(20)) }
    let now = ContinuousClock.now
    setupSeconds = Double((now - setupStart).components.seconds)
    start.window.withLock { $0 = (now + .seconds(warmup), now + .seconds(warmup) + .seconds(seconds)) }
    // The runner starts its browser measurements on this line.
    FileHandle.standardOutput.write(Data(String(format: "browsing: %d sessions signed in after %.0f s\n", sessionCount, setupSeconds).utf8))
    var all: [Sample] = []
    for try await part in tasks { all += part }
    return all
  }
  try await group.shutdownGracefully()
  report(samples, setupSeconds: setupSeconds)
}

/// A browser that signs in, waits for the window to be set, then browses until its end.
func browseWhenReady(index: Int, group: any EventLoopGroup, start: Start) async throws -> [Sample] {
  let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
    channel.eventLoop.makeCompletedFuture {
      try channel.pipeline.syncOperations.addHTTPClientHandlers()
      return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
    }
  }
  return try await channel.executeThenClose { inbound, outbound in
    var browser = Browser(outbound: outbound, inbound: inbound.makeAsyncIterator())
    if !staticOnly {
      try await browser.signIn(String(format: "bench-county-%02d", index % accountCount))
    }
    start.signedIn.add(1, ordering: .relaxed)
    var window = start.window.withLock { $0 }
    while window == nil {
      try await Task.sleep(for: .milliseconds(20))
      window = start.window.withLock { $0 }
    }
    guard let (measureFrom, deadline) = window else { return [] }
    var random = SplitMix64(seed: UInt64(index) &* 7919 &+ 1)
    var samples: [Sample] = []
    // Paced: every browser asks once per `sessions / rate` seconds, at its own phase.
    let period: Duration = rate > 0 ? .nanoseconds(Int64(Double(sessionCount) / rate * 1e9)) : .zero
    var next = measureFrom - .seconds(warmup) + period * (Double(random.next(1000)) / 1000)
    while ContinuousClock.now < deadline {
      if rate > 0 {
        if next > ContinuousClock.now { try await Task.sleep(until: next, clock: .continuous) }
        next += period
      }
      let kind: PageKind
      let target: String
      if staticOnly {
        (kind, target) = (.asset, "/assets/console.css")
      } else {
        switch random.next(10) {
        case 0..<4:
          let facet = random.next(3) == 0 ? "&org=" + counties[random.next(counties.count)] : ""
          (kind, target) = (.search, "/catalog?q=" + encode(words[random.next(words.count)]) + facet)
        case 4..<7: (kind, target) = (.detail, "/catalog/bench.\(random.next(resourceCount))")
        default: (kind, target) = (.queue, "/orders")
        }
      }
      let began = ContinuousClock.now
      let answer = try await browser.fetch(.GET, target)
      let elapsed = ContinuousClock.now - began
      guard answer.status == 200 else { throw BenchFailure(description: "\(target): \(answer.status) \(answer.body.prefix(200))") }
      if began >= measureFrom {
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        let offset = began - measureFrom
        let at = Double(offset.components.seconds) + Double(offset.components.attoseconds) / 1e18
        samples.append(Sample(kind: kind, clientMs: ms, serverMs: serverMs(answer.headers), at: at))
      }
    }
    return samples
  }
}

func report(_ samples: [Sample], setupSeconds: Double) {
  let label = staticOnly ? "static floor" : rate > 0 ? String(format: "pages at %.0f/s asked", rate) : "pages without pause"
  print(
    String(
      format: "%@: %d sessions, %.0f s measured (sign-in of all took %.0f s): %d answers = %.0f/s", label, sessionCount, seconds,
      setupSeconds, samples.count, Double(samples.count) / seconds))
  for kind in PageKind.allCases {
    let mine = samples.filter { $0.kind == kind }
    guard !mine.isEmpty else { continue }
    let client = mine.map(\.clientMs).sorted()
    let server = mine.map(\.serverMs).filter { $0 >= 0 }.sorted()
    print(
      String(
        format: "  %@ (%d): server p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; client p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", kind.name, mine.count,
        percentile(server, 0.5), percentile(server, 0.95), percentile(server, 0.99), percentile(client, 0.5), percentile(client, 0.95),
        percentile(client, 0.99)))
  }
  let server = samples.map(\.serverMs).filter { $0 >= 0 }.sorted()
  let client = samples.map(\.clientMs).sorted()
  print(
    String(
      format: "  all: server p95 %.1f ms, client p95 %.1f ms", percentile(server, 0.95), percentile(client, 0.95)))
  // Where a tail comes from: answers over a second, by the second of the window they were asked in.
  let slow = samples.filter { $0.clientMs > 1000 }
  if !slow.isEmpty {
    let seconds = Dictionary(grouping: slow) { Int($0.at) }.sorted { $0.key < $1.key }
      .map { "\($0.key) s: \($0.value.count) (server max \(String(format: "%.0f", $0.value.map(\.serverMs).max() ?? 0)) ms)" }
    print("  answers over 1 s: \(slow.count), asked at " + seconds.joined(separator: ", "))
  }
}

do {
  try await main()
} catch {
  FileHandle.standardError.write(Data("bench-console: \(error)\n".utf8))
  exit(1)
}
