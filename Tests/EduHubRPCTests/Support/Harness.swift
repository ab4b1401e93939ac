import Foundation
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Logging
import NIOCore
import NIOPosix

/// A server on 127.0.0.1 with a free port, and clients for it.
struct Harness {
  let server: RPCServer
  let port: Int
  let echo: EchoService

  static func start(
    configuration: ServerConfiguration = testServerConfiguration(),
    tls: ServerTLSConfiguration? = nil, services: [any RPCService] = [],
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws -> Harness {
    let echo = EchoService()
    var logger = Logger(label: "test.server")
    logger.logLevel = .warning
    let server = RPCServer(
      services: [echo] + services, configuration: configuration, tls: tls, group: group, logger: logger)
    let address = try await server.start(host: "127.0.0.1", port: 0)
    return Harness(server: server, port: address.port ?? 0, echo: echo)
  }

  func client(
    configuration: ClientConfiguration = ClientConfiguration(), tls: ClientTLSConfiguration? = nil
  ) -> RPCClient {
    RPCClient(host: "127.0.0.1", port: port, tls: tls, configuration: configuration)
  }

  func stop() async {
    await server.shutdownGracefully()
  }
}

func testServerConfiguration() -> ServerConfiguration {
  var configuration = ServerConfiguration()
  configuration.shutdownGracePeriod = .seconds(5)
  configuration.busyPollBudget = nil
  return configuration
}

/// Runs `body` with a started harness and always stops it.
func withHarness<R>(
  configuration: ServerConfiguration = testServerConfiguration(), tls: ServerTLSConfiguration? = nil,
  _ body: (Harness) async throws -> R
) async throws -> R {
  let harness = try await Harness.start(configuration: configuration, tls: tls)
  do {
    let result = try await body(harness)
    await harness.stop()
    return result
  } catch {
    await harness.stop()
    throw error
  }
}

/// The RPC status `body` failed with, nil if it succeeded (any other error becomes UNKNOWN).
func rpcError(_ body: () async throws -> Void) async -> RPCError? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error
  } catch {
    return RPCError(.unknown, "not an RPCError: \(error)")
  }
}
