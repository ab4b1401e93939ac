import Logging
import NIOCore
import Tracing
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization

/// A gRPC client: one HTTP/2 connection to one server, multiplexing every concurrent call.
///
/// Connects on the first call and again after the connection is lost or the server sends GOAWAY,
/// so a long-lived client survives server restarts. Generated client stubs wrap it.
public final class RPCClient: Sendable {
  public let host: String
  public let port: Int
  public let configuration: ClientConfiguration
  private let tls: ClientTLSConfiguration?
  private let group: any EventLoopGroup
  private let logger: Logger

  fileprivate enum ConnectionState {
    case idle
    case connecting(EventLoopFuture<ClientConnectionHandler>)
    case ready(any Channel, ClientConnectionHandler)
    case closed
  }

  private let state = LockedConnectionState()

  public init(
    host: String, port: Int, tls: ClientTLSConfiguration? = nil,
    configuration: ClientConfiguration = ClientConfiguration(),
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "eduhub.rpc.client", factory: { _ in SwiftLogNoOpLogHandler() })
  ) {
    self.host = host
    self.port = port
    self.tls = tls
    self.configuration = configuration
    self.group = group
    self.logger = logger
  }

  // MARK: Calls

  /// A call with one request and one response.
  public func unary<Request: Message, Response: Message>(
    _ method: RPCMethodDescriptor, request: Request, options: CallOptions = CallOptions(),
    responseType: Response.Type = Response.self
  ) async throws -> Response {
    try await unaryWithMetadata(method, request: request, options: options, responseType: responseType).message
  }

  /// A call with one request and one response, returned with its headers and trailers.
  public func unaryWithMetadata<Request: Message, Response: Message>(
    _ method: RPCMethodDescriptor, request: Request, options: CallOptions = CallOptions(),
    responseType: Response.Type = Response.self
  ) async throws -> RPCResponse<Response> {
    let framed = try MessageFramer.frame(request)
    var attempt = 0
    var result: ClientUnaryResult
    while true {
      attempt += 1
      let (handler, stream) = try await prepare(method, options)
      stream.setRequest(framed)
      let promise = stream.eventLoop.makePromise(of: ClientUnaryResult.self)
      stream.unaryPromise = promise
      do {
        result = try await run(stream, on: handler) { try await promise.futureResult.get() }
        break
      } catch is RPCError where stream.isRetryable && attempt < 4 && !Task.isCancelled {
        // Never seen by the server (its connection was going away, or it refused the stream):
        // safe to send again, on a fresh connection if need be.
        continue
      }
    }
    return RPCResponse(
      message: try MessageCoding.decode(Response.self, from: result.message), headers: result.headers,
      trailers: result.trailers)
  }

  /// A call with one request and a stream of responses, read by `body`.
  public func serverStreaming<Request: Message, Response: Message, Result: Sendable>(
    _ method: RPCMethodDescriptor, request: Request, options: CallOptions = CallOptions(),
    responseType: Response.Type = Response.self,
    _ body: (RPCStream<Response>) async throws -> Result
  ) async throws -> Result {
    let framed = try MessageFramer.frame(request)
    let (handler, stream) = try await prepare(method, options)
    stream.setRequest(framed)
    let inbound = stream.makeInbound()
    return try await run(stream, on: handler) { try await body(RPCStream(queue: inbound)) }
  }

  /// A call with a stream of requests, written by `body`, and one response.
  public func clientStreaming<Request: Message, Response: Message>(
    _ method: RPCMethodDescriptor, options: CallOptions = CallOptions(),
    requestType: Request.Type = Request.self, responseType: Response.Type = Response.self,
    _ body: (RPCWriter<Request>) async throws -> Void
  ) async throws -> Response {
    let (handler, stream) = try await prepare(method, options)
    let outbound = stream.makeOutbound()
    let promise = stream.eventLoop.makePromise(of: ClientUnaryResult.self)
    stream.unaryPromise = promise
    let result = try await run(stream, on: handler) {
      try await body(RPCWriter(queue: outbound))
      outbound.finish()
      return try await promise.futureResult.get()
    }
    return try MessageCoding.decode(Response.self, from: result.message)
  }

  /// A call with streams both ways; `body` writes requests and reads responses, concurrently if it
  /// likes. Requests end when `body` calls ``RPCWriter/finish()`` or returns.
  public func bidirectionalStreaming<Request: Message, Response: Message, Result: Sendable>(
    _ method: RPCMethodDescriptor, options: CallOptions = CallOptions(),
    requestType: Request.Type = Request.self, responseType: Response.Type = Response.self,
    _ body: (RPCWriter<Request>, RPCStream<Response>) async throws -> Result
  ) async throws -> Result {
    let (handler, stream) = try await prepare(method, options)
    let outbound = stream.makeOutbound()
    let inbound = stream.makeInbound()
    return try await run(stream, on: handler) {
      let result = try await body(RPCWriter(queue: outbound), RPCStream(queue: inbound))
      outbound.finish()
      return result
    }
  }

  /// Closes the connection; calls in flight fail with UNAVAILABLE, later calls reconnect.
  public func close() async {
    let channel: (any Channel)? = state.withLock { state in
      defer { state = .idle }
      if case .ready(let channel, _) = state { return channel }
      return nil
    }
    try? await channel?.close()
  }

  // MARK: Plumbing

  private func prepare(_ method: RPCMethodDescriptor, _ options: CallOptions) async throws
    -> (ClientConnectionHandler, ClientStream)
  {
    let (channel, handler) = try await connection()
    var metadata = options.metadata
    let span = RPCTracing.isEnabled ? RPCTracing.clientSpan(method, metadata: &metadata) : nil
    let stream = ClientStream(
      method: method, metadata: metadata, deadline: options.deadline,
      maxReceiveMessageSize: configuration.maxReceiveMessageSize, eventLoop: channel.eventLoop)
    stream.span = span
    return (handler, stream)
  }

  /// Starts `stream` on the connection, runs `body`, and resets the stream if the caller is cancelled
  /// or leaves before the call ended.
  private func run<Result>(
    _ stream: ClientStream, on handler: ClientConnectionHandler, _ body: () async throws -> Result
  ) async throws -> Result {
    let loop = stream.eventLoop
    let span = stream.span
    loop.execute { handler.start(stream) }
    do {
      let result = try await withTaskCancellationHandler {
        try await body()
      } onCancel: {
        loop.execute { stream.cancel() }
      }
      loop.execute { stream.cancel() }
      if let span { RPCTracing.end(span, code: .ok) }
      return result
    } catch {
      loop.execute { stream.cancel() }
      if let span { RPCTracing.end(span, code: (error as? RPCError)?.code ?? .unknown) }
      if let rpc = error as? RPCError { throw rpc }
      if error is CancellationError { throw RPCError(.cancelled, "the call was cancelled") }
      throw error
    }
  }

  private func connection() async throws -> (any Channel, ClientConnectionHandler) {
    enum Step {
      case ready(any Channel, ClientConnectionHandler)
      case wait(EventLoopFuture<ClientConnectionHandler>)
      case connect(EventLoopPromise<ClientConnectionHandler>)
    }
    let step = state.withLock { state -> Step in
      switch state {
      case .ready(let channel, let handler) where channel.isActive:
        return .ready(channel, handler)
      case .connecting(let future):
        return .wait(future)
      case .idle, .closed, .ready:
        // A ready connection whose channel is no longer active is replaced at once.
        let promise = group.any().makePromise(of: ClientConnectionHandler.self)
        state = .connecting(promise.futureResult)
        return .connect(promise)
      }
    }
    switch step {
    case .ready(let channel, let handler):
      return (channel, handler)
    case .wait(let future):
      let handler = try await future.get()
      guard let channel = state.withLock({ state -> (any Channel)? in
        if case .ready(let channel, let current) = state, current === handler { return channel }
        return nil
      }) else { return try await connection() }
      return (channel, handler)
    case .connect(let promise):
      do {
        let (channel, handler) = try await connect()
        state.withLock { $0 = .ready(channel, handler) }
        promise.succeed(handler)
        return (channel, handler)
      } catch {
        state.withLock { $0 = .idle }
        let failure = RPCError(.unavailable, "cannot connect to \(host):\(port): \(ErrorText.describe(error))")
        promise.fail(failure)
        throw failure
      }
    }
  }

  private func connect() async throws -> (any Channel, ClientConnectionHandler) {
    let tls = self.tls
    let host = self.host
    let authority = port == (tls == nil ? 80 : 443) ? host : "\(host):\(port)"
    let handler = ClientConnectionHandler(
      configuration: configuration, authority: authority, scheme: tls == nil ? "http" : "https", logger: logger)
    // Compared by identity, not held weakly: a weak reference would put every retain of the
    // handler on Swift's slow path.
    let handlerID = ObjectIdentifier(handler)
    let state = self.state
    handler.onUnusable = {
      state.withLock { state in
        if case .ready(_, let current) = state, ObjectIdentifier(current) == handlerID { state = .idle }
      }
    }
    let bootstrap = ClientBootstrap(group: group)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls {
            let sslHandler = try NIOSSLClientHandler(
              context: tls.context, serverHostname: tls.serverHostname ?? (host.isIPAddress ? nil : host))
            try channel.pipeline.syncOperations.addHandler(sslHandler)
          }
          try channel.pipeline.syncOperations.addHandler(handler)
        }
      }
    let channel = try await bootstrap.connect(host: host, port: port).get()
    return (channel, handler)
  }
}

extension RPCWriter {
  /// Ends the stream of requests (or responses); the peer sees the end once everything was sent.
  public func finish() {
    queue.finish()
  }
}

extension String {
  fileprivate var isIPAddress: Bool {
    (try? SocketAddress(ipAddress: self, port: 0)) != nil
  }
}

/// The client's connection state, in a class of its own so that the connection's callbacks can hold
/// it without holding the client.
private final class LockedConnectionState: Sendable {
  private let mutex = Mutex(RPCClient.ConnectionState.idle)

  func withLock<R>(_ body: (inout RPCClient.ConnectionState) -> R) -> R {
    mutex.withLock { body(&$0) }
  }
}
