import CEduHubNghttp2
import Logging
import NIOCore
import NIOHTTP1

/// One server-side HTTP/2 connection: a libnghttp2 session driven by NIO reads and writes.
///
/// Everything here runs on the channel's event loop. Tasks that run handlers come back to it with
/// `eventLoop.execute`; that is why the type is `@unchecked Sendable`: its state is never touched
/// off the loop.
final class ServerConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  let router: RPCRouter
  let configuration: ServerConfiguration
  let logger: Logger
  let connectionInfo: ConnectionInfo

  private(set) var session: Nghttp2Session?
  private(set) var context: ChannelHandlerContext?
  private(set) var eventLoop: (any EventLoop)?
  /// Open streams by id. nghttp2 does not report the close of streams still open when the session is
  /// deleted, so the connection owns every stream and ends them itself on teardown.
  /// An intrusive list (no hashing per call): each stream links to the next and the previous.
  private var streams = StreamList()

  private var readInProgress = false
  private var flushScheduled = false
  private var sawFirstBytes = false
  /// The connection went to the HTTP/1 handler: nothing of HTTP/2 may be written any more.
  private var handedOver = false

  private var timer: RepeatedTask?
  /// Keepalive, idleness, draining, the reset budget, closing: decided by the machine, carried out here.
  private var manager: ServerConnectionStateMachine


  /// When the current read or flush began: what the calls' observer is told, one clock read per
  /// batch of calls rather than two per call.
  private(set) var clock = NIODeadline.now()

  /// The connection's socket, for the busy poller.
  private let descriptor: Int32
  /// The event loop's busy poller, if the server spins.
  let poller: BusyPoller?

  init(
    router: RPCRouter, configuration: ServerConfiguration, connectionInfo: ConnectionInfo, descriptor: Int32 = -1,
    poller: BusyPoller? = nil, logger: Logger
  ) {
    self.router = router
    self.configuration = configuration
    self.manager = ServerConnectionStateMachine(limits: .init(configuration), now: .now())
    self.connectionInfo = connectionInfo
    self.descriptor = descriptor
    self.poller = poller
    self.logger = logger
  }

  /// Runs `body` on this connection's event loop, from any thread.
  func execute(_ body: @escaping @Sendable () -> Void) {
    if let poller { poller.execute(body) } else { eventLoop?.execute(body) }
  }

  // MARK: Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.eventLoop = context.eventLoop
    let userData = Unmanaged.passUnretained(self).toOpaque()
    guard
      let session = Nghttp2Session(
        server: true, callbacks: ServerCallbacks.shared, userData: userData,
        // nghttp2's own limiter stays as a backstop behind ours.
        resetBurst: configuration.streamResetBurst * 2, resetRate: configuration.streamResetRatePerSecond * 2)
    else {
      logger.error("could not create an HTTP/2 session")
      context.close(promise: nil)
      return
    }
    self.session = session
    session.announce(
      HTTP2Settings(
        maxConcurrentStreams: configuration.maxConcurrentStreams,
        initialWindowSize: configuration.streamWindowSize,
        maxHeaderListSize: configuration.maxHeaderListSize),
      connectionWindow: configuration.connectionWindowSize)
    startTimer(context: context)
    if descriptor >= 0 { poller?.register(descriptor) }
    configuration.observer?.connectionOpened()
    // Our SETTINGS go out with the answer to the client's first bytes, so that a client speaking
    // HTTP/1 gets a clean HTTP/1 answer.
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    teardown()
    self.context = nil
  }

  func channelInactive(context: ChannelHandlerContext) {
    teardown()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let session else { return }
    let buffer = unwrapInboundIn(data)
    let now = NIODeadline.now()
    clock = now
    manager.received(now: now)
    if !sawFirstBytes {
      sawFirstBytes = true
      if HTTP1Detector.looksLikeHTTP1(buffer) {
        if let http = configuration.httpHandler {
          switchToHTTP1(context: context, handler: http, data: data)
        } else {
          rejectHTTP1(context: context)
        }
        return
      }
    }
    readInProgress = true
    let failure = session.receive(buffer)
    readInProgress = false
    if let failure {
      logger.debug(
        "closing connection after a protocol error",
        metadata: ["rpc.peer": "\(connectionInfo.peer)", "h2.error": "\(failure)"])
      flush()
      closeNow()
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    flush()
    context.fireChannelReadComplete()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { flush() }
    context.fireChannelWritabilityChanged()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug("connection error", metadata: ["rpc.peer": "\(connectionInfo.peer)", "error": "\(error)"])
    closeNow()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is GracefulShutdownEvent {
      beginDrain()
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  // MARK: Output

  /// Moves whatever nghttp2 has to send into the channel, while the channel accepts it.
  func flush() {
    guard let session, let context, !manager.closing, !handedOver else { return }
    // Streams close while nghttp2 sends their ends: they read the time of this flush.
    if configuration.observer != nil { clock = .now() }
    switch session.send(to: context) {
    case .failed(let error):
      logger.debug("HTTP/2 send failed", metadata: ["h2.error": "\(error)"])
      closeNow()
      return
    case .sent(let wrote):
      if wrote { poller?.activity() }
    }
    let closes = manager.closesAfterFlush(
      wantsRead: session.wantsRead, wantsWrite: session.wantsWrite,
      streamsOpen: !streams.isEmpty)
    if closes { closeNow() }
  }

  /// Flushes once at the end of the current event-loop turn, coalescing the completions of many calls.
  func scheduleFlush() {
    guard !readInProgress, !flushScheduled, let eventLoop else { return }
    flushScheduled = true
    eventLoop.execute {
      self.flushScheduled = false
      self.flush()
    }
  }

  // MARK: Streams

  fileprivate func beginHeaders(streamID: Int32) -> Int32 {
    guard let session else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
    let stream = ServerStream(id: streamID, connection: self)
    streams.insert(stream)
    session.setUserData(ofStream: streamID, Unmanaged.passUnretained(stream).toOpaque())
    manager.streamOpened()
    return 0
  }

  /// Runs `body` with stream `id` if it is open; nil if it is not. The stream is owned by `streams`
  /// for as long as nghttp2 knows it, so no retain is needed.
  @inline(__always)
  fileprivate func withStream<R>(_ id: Int32, _ body: (ServerStream) -> R) -> R? {
    guard let pointer = session?.userData(ofStream: id) else { return nil }
    return Unmanaged<ServerStream>.fromOpaque(pointer)._withUnsafeGuaranteedRef(body)
  }

  fileprivate func streamClosed(id: Int32, errorCode: UInt32) {
    guard let stream = withStream(id, { $0 }) else { return }
    streams.remove(stream)
    stream.closed(errorCode: errorCode)
    if streams.isEmpty, manager.lastStreamClosed(now: .now()) { scheduleFlush() }
  }

  fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) {
    switch frame.type {
    case FrameType.headers:
      withStream(frame.streamID) { stream in
        if frame.headersCategory == NGHTTP2_HCAT_REQUEST { stream.headersComplete() }
        if frame.endsStream { stream.requestEnded() }
      }
    case FrameType.data:
      if frame.endsStream { withStream(frame.streamID) { $0.requestEnded() } }
    case FrameType.ping:
      if frame.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 { manager.pingAcknowledged() }
    case FrameType.goaway:
      // The client will open no new stream; close once the open ones finish.
      if manager.goawayReceived(streamsOpen: !streams.isEmpty) { scheduleFlush() }
    case FrameType.rstStream:
      streamResetReceived()
    default:
      break
    }
  }

  /// Acknowledges received bytes to the connection's flow-control window.
  func consumeConnection(_ count: Int) {
    session?.consumeConnection(count)
  }

  /// Acknowledges received bytes to a stream's flow-control window.
  func consumeStream(_ id: Int32, _ count: Int) {
    session?.consumeStream(id, count)
  }

  /// Counts a client's stream reset against its budget; a client that resets faster than the
  /// configured rate (the HTTP/2 rapid-reset attack) loses the connection with ENHANCE_YOUR_CALM.
  private func streamResetReceived() {
    guard let session, manager.streamReset(now: .now()) == .enhanceYourCalm else { return }
    logger.warning("closing connection: too many stream resets", metadata: ["rpc.peer": "\(connectionInfo.peer)"])
    session.goaway(NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
    // Streams still open are abandoned: the client is hostile.
    streams.forEach { $0.closed(errorCode: NGHTTP2_CANCEL.rawValue) }
    scheduleFlush()
    eventLoop?.scheduleTask(in: .milliseconds(100)) { [self] in closeNow() }
  }

  // MARK: Life cycle

  private func startTimer(context: ChannelHandlerContext) {
    guard let tick = manager.tickInterval else { return }
    // A strong capture, released when teardown cancels the timer: a weak one would give the
    // handler a side table and put every retain and release of it on Swift's slow path.
    timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in
      self.tick()
    }
  }

  private func tick() {
    guard let session else { return }
    switch manager.tick(now: .now()) {
    case .none:
      break
    case .closeUnanswered:
      logger.debug("closing connection: keepalive ping unanswered", metadata: ["rpc.peer": "\(connectionInfo.peer)"])
      closeNow()
    case .drainIdle:
      logger.debug("closing idle connection", metadata: ["rpc.peer": "\(connectionInfo.peer)"])
      beginDrain()
    case .ping:
      session.ping()
      flush()
    }
  }

  /// Stops taking new streams (GOAWAY naming the last stream processed) and closes once the open
  /// ones have finished.
  func beginDrain() {
    guard let session, manager.beginDrain() else { return }
    session.goaway(NGHTTP2_NO_ERROR.rawValue)
    flush()
  }

  private func closeNow() {
    guard manager.close() else { return }
    context?.close(promise: nil)
  }

  private func teardown() {
    if descriptor >= 0, session != nil { poller?.unregister(descriptor) }
    if session != nil { configuration.observer?.connectionClosed() }
    timer?.cancel()
    timer = nil
    let open = streams.removeAll()
    for stream in open { stream.closed(errorCode: NGHTTP2_CANCEL.rawValue) }
    session = nil
  }

  /// Hands the connection to NIO's HTTP/1 codec and the HTTP handler: this handler (and its HTTP/2
  /// session) leaves the pipeline and the first bytes go to the codec.
  private func switchToHTTP1(context: ChannelHandlerContext, handler: any HTTPHandler, data: NIOAny) {
    handedOver = true
    do {
      let pipeline = context.pipeline.syncOperations
      try pipeline.configureHTTPServerPipeline(position: .after(self), withPipeliningAssistance: true, withErrorHandling: true)
      // Idle keep-alive connections are closed (the HTTP/2 handler's timers leave with it).
      try pipeline.addHandler(IdleStateHandler(allTimeout: configuration.httpKeepAliveTimeout), position: .after(self))
      try pipeline.addHandler(
        HTTP1ConnectionHandler(
          handler: handler, maxBodySize: configuration.maxReceiveMessageSize, budget: configuration.httpBodyBudget, peer: connectionInfo.peer,
          isSecure: connectionInfo.isSecure))
      context.fireChannelRead(data)
      let logger = self.logger
      pipeline.removeHandler(context: context).whenFailure { error in
        logger.debug("could not leave an HTTP/1 connection", metadata: ["error": "\(error)"])
      }
    } catch {
      logger.debug("could not serve HTTP/1", metadata: ["error": "\(error)"])
      closeNow()
    }
  }

  private func rejectHTTP1(context: ChannelHandlerContext) {
    let body = "This port speaks gRPC over HTTP/2.\n"
    let response =
      "HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\r\n\(body)"
    var out = context.channel.allocator.buffer(capacity: response.utf8.count)
    out.writeString(response)
    _ = manager.close()
    context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in context.close(promise: nil) }
  }
}

/// Sent down a server's connections to start a graceful shutdown.
struct GracefulShutdownEvent: Sendable {}

/// Tells HTTP/1.x requests from the HTTP/2 client preface by their first bytes.
enum HTTP1Detector {
  static func looksLikeHTTP1(_ buffer: ByteBuffer) -> Bool {
    guard let first = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, 8)) else {
      return false
    }
    let text = String(decoding: first, as: UTF8.self)
    if text.hasPrefix("PRI ") { return false }
    return ["GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH "].contains { text.hasPrefix($0) }
  }
}

/// The nghttp2 callbacks of a server session. Each recovers its connection from `user_data`.
enum ServerCallbacks {
  nonisolated(unsafe) static let shared: OpaquePointer = {
    var callbacks: OpaquePointer?
    nghttp2_session_callbacks_new(&callbacks)
    guard let callbacks else { fatalError("nghttp2_session_callbacks_new failed: out of memory") }
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
    nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
    return callbacks
  }()

  /// Runs `body` with the connection behind `user_data`, which nghttp2 only calls us with while the
  /// connection (which owns the session) is alive: no retain or release needed.
  @inline(__always)
  static func withConnection<R>(_ userData: UnsafeMutableRawPointer?, _ body: (ServerConnectionHandler) -> R) -> R {
    Unmanaged<ServerConnectionHandler>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
  }

  static let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame, frame.type == FrameType.headers, frame.headersCategory == NGHTTP2_HCAT_REQUEST else {
      return 0
    }
    return withConnection(userData) { $0.beginHeaders(streamID: frame.streamID) }
  }

  static let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value, frame.headersCategory == NGHTTP2_HCAT_REQUEST else { return 0 }
    withConnection(userData) { connection in
      connection.withStream(frame.streamID) {
        $0.header(name: name, nameLength: nameLength, value: value, valueLength: valueLength)
      }
    }
    return 0
  }

  static let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    withConnection(userData) { $0.frameReceived(frame) }
    return 0
  }

  static let onDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    withConnection(userData) { connection in
      connection.consumeConnection(length)
      let delivered = connection.withStream(streamID) { stream in
        stream.receive(UnsafeRawBufferPointer(start: data, count: length))
      }
      if delivered == nil { connection.consumeStream(streamID, length) }
    }
    return 0
  }

  static let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    withConnection(userData) { $0.streamClosed(id: streamID, errorCode: errorCode) }
    return 0
  }

  /// Reads a response body for nghttp2; `source.ptr` is the stream, owned by its connection.
  static let readResponse: nghttp2_data_source_read_callback = { _, _, buffer, length, flags, source, _ in
    guard let buffer, let flags, let pointer = source?.pointee.ptr else {
      return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
    }
    return Unmanaged<ServerStream>.fromOpaque(pointer)._withUnsafeGuaranteedRef {
      $0.readResponse(into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags)
    }
  }
}
