import EduHubRPC
import Logging
import NIOCore
import ServiceLifecycle

/// `serve --console-listen`: the web console on a port of its own (HTTP/1.1 and HTTP/2, under TLS
/// when the node has a certificate). Stops with the node.
public struct ConsoleListener: Service {
  let server: RPCServer
  let host: String
  let port: Int
  let logger: Logger

  public init(console: Console, host: String, port: Int, tls: ServerTLSConfiguration?, logger: Logger) {
    var configuration = ServerConfiguration()
    configuration.httpHandler = console
    configuration.busyPollBudget = nil
    // A work order's attachment (10 MiB) in a multipart form, with room for the other fields.
    configuration.maxReceiveMessageSize = 11 << 20
    server = RPCServer(services: [], configuration: configuration, tls: tls, logger: logger)
    self.host = host
    self.port = port
    self.logger = logger
  }

  /// Starts listening; the address it listens on.
  public func start() async throws -> SocketAddress { try await server.start(host: host, port: port) }

  public func run() async throws {
    let address = try await start()
    logger.info("console served", metadata: ["console.address": "\(address.ipAddress ?? host):\(address.port ?? port)"])
    await withGracefulShutdownHandler {
      await server.waitUntilClosed()
    } onGracefulShutdown: {
      Task { await self.server.shutdownGracefully() }
    }
  }
}
