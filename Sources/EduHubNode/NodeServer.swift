import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubSharing
import EduHubSync
import EduHubWorkOrders
import EduHubRPC
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// Where and how a node serves.
public struct NodeServerConfiguration: Sendable {
  public var host: String
  public var port: Int
  public var identity: NodeIdentity
  public var tls: ServerTLSConfiguration?
  public var rpc: ServerConfiguration

  public init(
    host: String, port: Int, identity: NodeIdentity, tls: ServerTLSConfiguration? = nil,
    rpc: ServerConfiguration = ServerConfiguration()
  ) {
    self.host = host
    self.port = port
    self.identity = identity
    self.tls = tls
    self.rpc = rpc
  }
}

/// A node's RPC server as a long-running service: serves until a graceful shutdown (SIGTERM or
/// SIGINT through a `ServiceGroup`), then lets calls in flight finish within the grace period.
public final class NodeServer: Service, Sendable {
  public let configuration: NodeServerConfiguration
  public let server: RPCServer
  public let health: HealthService
  private let logger: Logger
  private let bound: EventLoopPromise<SocketAddress>

  /// - Parameter services: the node's own services besides Node, Health and Reflection.
  public init(
    configuration: NodeServerConfiguration, services: [any RPCService] = [],
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
  ) {
    self.configuration = configuration
    self.logger = logger
    let node = NodeInfoService(identity: configuration.identity)
    let all: [any RPCService] = [node] + services
    var names = all.flatMap { $0.methods.map(\.descriptor.service) }
    names.append(Grpc_Health_V1_Health.name)
    names.append(Grpc_Reflection_V1_ServerReflection.name)
    names.append(Grpc_Reflection_V1alpha_ServerReflection.name)
    var unique: [String] = []
    for name in names where !unique.contains(name) { unique.append(name) }
    let health = HealthService(services: unique)
    self.health = health
    self.server = RPCServer(
      services: all + [health, ReflectionService(serviceNames: unique)],
      configuration: configuration.rpc, tls: configuration.tls, group: group, logger: logger)
    self.bound = group.any().makePromise(of: SocketAddress.self)
  }

  /// The address the server listens on, once it does.
  public var boundAddress: SocketAddress {
    get async throws { try await bound.futureResult.get() }
  }

  public func run() async throws {
    let address: SocketAddress
    do {
      address = try await server.start(host: configuration.host, port: configuration.port)
    } catch {
      bound.fail(error)
      throw error
    }
    bound.succeed(address)
    logger.info(
      "node serving",
      metadata: [
        "node.id": "\(configuration.identity.nodeID)", "node.role": "\(configuration.identity.role.rawValue)",
        "rpc.address": "\(address.ipAddress ?? configuration.host):\(address.port ?? configuration.port)",
      ])
    await withGracefulShutdownHandler {
      await server.waitUntilClosed()
    } onGracefulShutdown: {
      self.logger.info("graceful shutdown: draining calls")
      self.health.markAllNotServing()
      Task { await self.server.shutdownGracefully() }
    }
    logger.info("node stopped")
  }
}

extension NodeServer {
  /// Runs a node until SIGTERM or SIGINT, then drains it: the `eduhub serve` main loop.
  /// - Parameter eventLoops: event-loop threads; nil uses NIO's shared group (one per core).
  /// - Parameter services: the node's services besides Node, Health and Reflection.
  /// - Parameter background: what the node repeats while it serves; stopped before the server drains.
  /// - Parameter observability: what must outlive the server (a trace exporter: the spans of the
  ///   calls drained at shutdown still leave); started first, stopped last.
  public static func serve(
    _ configuration: NodeServerConfiguration, services: [any RPCService] = [], background: [any Service] = [],
    observability: [any Service] = [], eventLoops: Int? = nil, logger: Logger
  ) async throws {
    let loops: any EventLoopGroup =
      eventLoops.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) } ?? MultiThreadedEventLoopGroup.singleton
    let node = NodeServer(configuration: configuration, services: services, group: loops, logger: logger)
    // Shut down in reverse order: the background loops stop first, then the server drains, then
    // what observes it.
    let group = ServiceGroup(
      services: observability + [node] + background, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
      logger: logger)
    try await group.run()
  }
}

extension OpenNode {
  /// The node's services and, with them, the authenticator every call but the public ones passes.
  public func services(configuration: inout ServerConfiguration) -> [any RPCService] {
    let authenticator = Authenticator(identity: identity)
    configuration.interceptor = authenticator
    configuration.httpHandler = ApiGateway(sharing: sharing, authenticator: authenticator)
    return [IdentityEndpoints(identity), sync, CatalogEndpoints(catalog), workOrders, SharingEndpoints(sharing)]
  }
}
