import Synchronization

/// A plain HTTP request that reached the server instead of a gRPC call: HTTP/1.1, or HTTP/2 with a
/// content type other than `application/grpc`. Served on the same port as gRPC by the server's
/// ``HTTPHandler`` (JSON gateways such as `POST /v1/apis/{code}`).
public struct HTTPRequest: Sendable {
  /// GET, POST, …
  public var method: String
  /// The request target: path and query.
  public var target: String
  /// Header names in lower case, in the order received.
  public var headers: [(name: String, value: String)]
  public var body: [UInt8]
  /// The peer's address, as `ipv4:127.0.0.1:50000`.
  public var peer: String
  /// "HTTP/1.1" or "HTTP/2".
  public var version: String
  public var isSecure: Bool

  public init(
    method: String, target: String, headers: [(name: String, value: String)], body: [UInt8], peer: String, version: String,
    isSecure: Bool
  ) {
    self.method = method
    self.target = target
    self.headers = headers
    self.body = body
    self.peer = peer
    self.version = version
    self.isSecure = isSecure
  }

  /// The first value of header `name` (lower case).
  public func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }

  /// The path without the query.
  public var path: Substring { target.prefix { $0 != "?" } }

  /// The query's parameters (percent-decoded; `+` is a space).
  public var query: [String: String] {
    guard let mark = target.firstIndex(of: "?") else { return [:] }
    var out: [String: String] = [:]
    for pair in target[target.index(after: mark)...].split(separator: "&") {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      func decode(_ text: Substring) -> String {
        PercentEncoding.decode(text.utf8.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
      }
      out[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
    }
    return out
  }
}

/// The answer to an ``HTTPRequest``.
public struct HTTPResponse: Sendable {
  public var status: Int
  /// Headers besides content-length (which the server sets).
  public var headers: [(name: String, value: String)]
  public var body: [UInt8]

  public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
    self.status = status
    self.headers = headers
    self.body = body
  }

  /// A plain-text answer.
  public static func text(_ status: Int, _ message: String) -> HTTPResponse {
    HTTPResponse(status: status, headers: [("content-type", "text/plain; charset=utf-8")], body: Array((message + "\n").utf8))
  }
}

/// Serves the plain HTTP requests of a server's port.
public protocol HTTPHandler: Sendable {
  func handle(_ request: HTTPRequest) async -> HTTPResponse

  /// The answer to a request that is cheap to answer and never blocks, given on the event loop
  /// that read it (no thread hop, no task); nil runs `handle` as a task. By default, nil.
  func handleInline(_ request: HTTPRequest) -> HTTPResponse?

  /// The answer to a request the server refused before handing it over (a body over the limit:
  /// `status` 413), so that a handler answers in its own shape. By default, plain text.
  /// - Parameter path: the request's path (no query).
  func refused(status: Int, message: String, path: Substring) -> HTTPResponse

  /// The largest body this request may carry, decided from its head before any of the body is
  /// buffered (a sign-in form needs a few KiB, an upload MiBs); nil leaves the server's limit.
  /// The server's own limit still applies.
  func bodyLimit(method: String, path: Substring, headers: [(name: String, value: String)]) -> Int?
}

extension HTTPHandler {
  public func handleInline(_ request: HTTPRequest) -> HTTPResponse? { nil }
  public func refused(status: Int, message: String, path: Substring) -> HTTPResponse { .text(status, message) }
  public func bodyLimit(method: String, path: Substring, headers: [(name: String, value: String)]) -> Int? { nil }
}

/// The bytes of plain-HTTP request bodies every connection of a server holds at once (bodies being
/// received and bodies whose request is being served). Past its limit a request is answered 503
/// instead of buffered: without it, 256 streams on each of a few connections could each hold a
/// body of the largest size and exhaust the node's memory before anyone is authenticated.
public final class HTTPBodyBudget: Sendable {
  public let limit: Int
  private let used = Atomic<Int>(0)

  public init(limit: Int) { self.limit = limit }

  /// Takes `bytes` from the budget; false (nothing taken) when they do not fit.
  func reserve(_ bytes: Int) -> Bool {
    var current = used.load(ordering: .relaxed)
    while true {
      guard current + bytes <= limit else { return false }
      let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
      if exchanged { return true }
      current = original
    }
  }

  func release(_ bytes: Int) {
    if bytes > 0 { used.subtract(bytes, ordering: .relaxed) }
  }

  /// Bytes held now.
  public var inUse: Int { used.load(ordering: .relaxed) }
}
