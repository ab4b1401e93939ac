import EduHubRPC
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A node's plain HTTP: `GET /metrics` (when the metrics are served on this port), and everything
/// else to the next handler (the shared-API gateway), or 404 when there is none.
public struct NodeHTTP: HTTPHandler {
  let metrics: NodeMetrics?
  let next: (any HTTPHandler)?

  public init(metrics: NodeMetrics?, next: (any HTTPHandler)?) {
    self.metrics = metrics
    self.next = next
  }

  public func handle(_ request: HTTPRequest) async -> HTTPResponse {
    if let metrics, request.path == "/metrics" {
      guard request.method == "GET" else {
        return HTTPResponse(
          status: 405, headers: [("content-type", "text/plain; charset=utf-8"), ("allow", "GET")], body: Array("/metrics answers GET\n".utf8))
      }
      return HTTPResponse(status: 200, headers: [("content-type", NodeMetrics.contentType)], body: metrics.text())
    }
    if let next { return await next.handle(request) }
    return .text(404, "not found")
  }

  /// The next handler's inline answers (the gateway's point lookups); the metrics as a task.
  public func handleInline(_ request: HTTPRequest) -> HTTPResponse? {
    if metrics != nil, request.path == "/metrics" { return nil }
    guard let next else { return .text(404, "not found") }
    return next.handleInline(request)
  }

  public func refused(status: Int, message: String, path: Substring) -> HTTPResponse {
    next?.refused(status: status, message: message, path: path) ?? .text(status, message)
  }

  public func bodyLimit(method: String, path: Substring, headers: [(name: String, value: String)]) -> Int? {
    next?.bodyLimit(method: method, path: path, headers: headers)
  }
}

/// `--metrics-listen`: the metrics on an address of their own (HTTP/1.1 or HTTP/2, plaintext), for
/// a bureau that keeps them off the node's public port. Stops with the node.
public struct MetricsListener: Service {
  let server: RPCServer
  let host: String
  let port: Int
  let logger: Logger

  public init(metrics: NodeMetrics, host: String, port: Int, logger: Logger) {
    var configuration = ServerConfiguration()
    configuration.httpHandler = NodeHTTP(metrics: metrics, next: nil)
    configuration.busyPollBudget = nil
    server = RPCServer(services: [], configuration: configuration, logger: logger)
    self.host = host
    self.port = port
    self.logger = logger
  }

  public func run() async throws {
    let address = try await server.start(host: host, port: port)
    logger.info("metrics served", metadata: ["metrics.address": "\(address.ipAddress ?? host):\(address.port ?? port)"])
    await withGracefulShutdownHandler {
      await server.waitUntilClosed()
    } onGracefulShutdown: {
      Task { await self.server.shutdownGracefully() }
    }
  }
}
