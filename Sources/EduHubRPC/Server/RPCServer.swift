import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A gRPC server: listens on one address and serves the methods of its services on every
/// connection, over plaintext HTTP/2 (h2c, prior knowledge) or TLS with ALPN `h2`.
public final class RPCServer: Sendable {
  public let configuration: ServerConfiguration
  private let router: RPCRouter
  private let tls: ServerTLSConfiguration?
  private let group: any EventLoopGroup
  private let logger: Logger

  private struct State {
    var listener: Acceptor?
    var connections: [ObjectIdentifier: any Channel] = [:]
    var shuttingDown = false
    var closedWaiters: [CheckedContinuation<Void, Never>] = []
    var finished = false
  }

  private let state = Mutex(State())
  private let pollers = BusyPollers()

  /// - Parameters:
  ///   - services: what the server answers; a later method with the same path replaces an earlier one.
  ///   - tls: serve TLS instead of plaintext.
  ///   - group: the event loops connections run on.
  public init(
    services: [any RPCService], configuration: ServerConfiguration = ServerConfiguration(),
    tls: ServerTLSConfiguration? = nil, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger
  ) {
    self.router = RPCRouter(services: services, observer: configuration.observer)
    self.configuration = configuration
    self.tls = tls
    self.group = group
    self.logger = logger
  }

  /// The names of the services served (for reflection).
  public var serviceNames: [String] { router.services }

  /// Binds and starts accepting connections.
  /// - Returns: the bound address (useful with port 0).
  /// - Throws: ``RPCError`` (UNAVAILABLE) when the address cannot be bound.
  @discardableResult
  public func start(host: String, port: Int) async throws -> SocketAddress {
    let acceptor = try Acceptor(host: host, port: port, logger: logger)
    state.withLock { $0.listener = acceptor }
    let address = acceptor.localAddress
    acceptor.start { [self] fd in adopt(fd) }
    logger.info("listening", metadata: ["rpc.address": "\(address.ipAddress ?? host):\(address.port ?? port)", "rpc.tls": "\(tls != nil)"])
    return address
  }

  /// Hands an accepted connection to an event loop.
  private func adopt(_ fd: Int32) {
    guard !state.withLock({ $0.shuttingDown }) else {
      Glibc.close(fd)
      return
    }
    let loop = group.next()
    let router = self.router
    let configuration = self.configuration
    let tls = self.tls
    let logger = self.logger
    ClientBootstrap(group: loop)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelOption(.maxMessagesPerRead, value: 16)
      .channelInitializer { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          let info = ConnectionInfo(remoteAddress: channel.remoteAddress, isSecure: tls != nil)
          let poller = configuration.busyPollBudget.map { self.pollers.poller(for: channel.eventLoop, budget: $0) }
          let handler = ServerConnectionHandler(
            router: router, configuration: configuration, connectionInfo: info, descriptor: fd, poller: poller,
            logger: logger)
          if let tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
          }
          try channel.pipeline.syncOperations.addHandler(handler)
          try self.register(channel)
        }
      }
      .withConnectedSocket(fd)
      .whenFailure { error in
        logger.debug("could not adopt a connection", metadata: ["error": "\(ErrorText.describe(error))"])
      }
  }

  /// Tracks a new connection; refuses it (and NIO closes it) once shutdown has begun.
  private func register(_ channel: any Channel) throws {
    let id = ObjectIdentifier(channel)
    let accepted = state.withLock { state -> Bool in
      guard !state.shuttingDown else { return false }
      state.connections[id] = channel
      return true
    }
    guard accepted else { throw RPCError(.unavailable, "the server is shutting down") }
    channel.closeFuture.whenComplete { [self] _ in
      let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
        state.connections[id] = nil
        return self.takeWaitersIfFinished(&state)
      }
      for waiter in waiters { waiter.resume() }
    }
  }

  private func takeWaitersIfFinished(_ state: inout State) -> [CheckedContinuation<Void, Never>] {
    guard state.shuttingDown, state.listener == nil, state.connections.isEmpty else { return [] }
    state.finished = true
    let waiters = state.closedWaiters
    state.closedWaiters.removeAll()
    return waiters
  }

  /// Stops accepting connections, asks every connection to finish its calls (GOAWAY), and after the
  /// grace period closes whatever is still open. Returns when every connection is closed.
  @discardableResult
  public func shutdownGracefully() async -> ShutdownOutcome {
    let (listener, connections) = state.withLock { state -> (Acceptor?, [any Channel]) in
      state.shuttingDown = true
      return (state.listener, Array(state.connections.values))
    }
    if let listener {
      listener.close()
      let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
        state.listener = nil
        return takeWaitersIfFinished(&state)
      }
      for waiter in waiters { waiter.resume() }
    } else {
      let waiters = state.withLock { takeWaitersIfFinished(&$0) }
      for waiter in waiters { waiter.resume() }
    }
    pollers.stopAll()
    for connection in connections {
      connection.pipeline.fireUserInboundEventTriggered(GracefulShutdownEvent())
    }
    let grace = configuration.shutdownGracePeriod
    let cut = NIOLockedValueBox(0)
    let deadline = group.any().scheduleTask(in: grace) { [self] in
      let remaining = state.withLock { Array($0.connections.values) }
      if !remaining.isEmpty {
        logger.warning("grace period over; closing connections", metadata: ["rpc.connections": "\(remaining.count)"])
      }
      cut.withLockedValue { $0 = remaining.count }
      for connection in remaining { connection.close(promise: nil) }
    }
    await waitUntilClosed()
    deadline.cancel()
    return ShutdownOutcome(connectionsCut: cut.withLockedValue { $0 })
  }

  /// What a graceful shutdown did.
  public struct ShutdownOutcome: Sendable, Equatable {
    /// Connections still open when the grace period ran out, closed with their calls cut.
    public var connectionsCut: Int
  }

  /// What ended the event loops' busy-polling spins so far (see `ServerConfiguration.busyPollBudget`).
  public var busyPolling: BusyPollStatistics { pollers.statistics }

  /// Returns when the server has shut down and every connection is closed.
  public func waitUntilClosed() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let done = state.withLock { state -> Bool in
        if state.finished { return true }
        state.closedWaiters.append(continuation)
        return false
      }
      if done { continuation.resume() }
    }
  }

  /// The number of open connections.
  public var connectionCount: Int { state.withLock { $0.connections.count } }
}
