import CEduHubNghttp2
import Logging
import NIOCore

/// One client-side HTTP/2 connection: many concurrent calls multiplexed over one libnghttp2 session.
///
/// Everything here runs on the channel's event loop; callers reach it through `execute`.
final class ClientConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  let configuration: ClientConfiguration
  let authority: String
  let scheme: String
  let logger: Logger

  private(set) var session: Nghttp2Session?
  private var context: ChannelHandlerContext?
  private(set) var eventLoop: (any EventLoop)?
  private var streams: [Int32: ClientStream] = [:]
  /// Calls made before the server's SETTINGS arrived: they wait, so that the server's limits (such
  /// as its concurrent-stream cap) are known before any stream opens and none is refused.
  private var waiting: [ClientStream] = []
  private var readInProgress = false
  private var flushScheduled = false
  private var timer: RepeatedTask?
  /// Readiness, keepalive and closing: decided by the machine, carried out here.
  private var manager: ClientConnectionStateMachine

  /// Whether new calls may use the connection.
  var isUsable: Bool { manager.isUsable }

  /// Called when the connection can take no new call (GOAWAY, close).
  var onUnusable: (@Sendable () -> Void)?

  init(configuration: ClientConfiguration, authority: String, scheme: String, logger: Logger) {
    self.configuration = configuration
    self.authority = authority
    self.scheme = scheme
    self.logger = logger
    self.manager = ClientConnectionStateMachine(
      keepaliveInterval: configuration.keepaliveInterval, keepaliveTimeout: configuration.keepaliveTimeout, now: .now())
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.eventLoop = context.eventLoop
    guard
      let session = Nghttp2Session(
        server: false, callbacks: ClientCallbacks.shared, userData: Unmanaged.passUnretained(self).toOpaque())
    else {
      context.close(promise: nil)
      return
    }
    self.session = session
    session.announce(
      HTTP2Settings(
        maxConcurrentStreams: nil, initialWindowSize: configuration.streamWindowSize,
        maxHeaderListSize: configuration.maxHeaderListSize),
      connectionWindow: configuration.connectionWindowSize)
    if let tick = manager.tickInterval {
      // Strong, released when teardown cancels it (a weak capture would slow every retain).
      timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in
        self.tick()
      }
    }
    if context.channel.isActive { flush() }
  }

  func channelActive(context: ChannelHandlerContext) {
    flush()
    context.fireChannelActive()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    teardown(RPCError(.unavailable, "connection closed"))
    self.context = nil
  }

  func channelInactive(context: ChannelHandlerContext) {
    teardown(RPCError(.unavailable, "connection to \(authority) closed"))
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    teardown(RPCError(.unavailable, "connection to \(authority) failed: \(error)"))
    context.close(promise: nil)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let session else { return }
    let buffer = unwrapInboundIn(data)
    manager.received(now: .now())
    readInProgress = true
    let failure = session.receive(buffer)
    readInProgress = false
    if let failure {
      teardown(RPCError(.internalError, "HTTP/2 protocol error from \(authority): \(failure)"))
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

  // MARK: Calls

  /// Opens a stream for `stream`'s call and submits its headers (and its body, as it comes).
  func start(_ stream: ClientStream) {
    guard !stream.isDone else { return }
    guard let session, manager.start() != .refuse else {
      stream.failBeforeSending(RPCError(.unavailable, "connection to \(authority) is closing"))
      return
    }
    guard manager.start() == .start else {
      waiting.append(stream)
      return
    }
    var headers = HeaderList(capacity: 8 + stream.metadata.count)
    headers.add(":method", "POST")
    headers.add(":scheme", scheme)
    headers.add(":path", stream.method.path)
    headers.add(":authority", authority)
    headers.add("content-type", "application/grpc")
    headers.add("te", "trailers")
    headers.add("user-agent", "eduhub-rpc/1.0")
    if let deadline = stream.deadline {
      let remaining = (deadline - .now()).nanoseconds
      guard remaining > 0 else {
        stream.fail(RPCError(.deadlineExceeded, "deadline exceeded before the call started"))
        return
      }
      headers.add("grpc-timeout", GRPCTimeout.format(nanoseconds: remaining))
    }
    headers.add(metadata: stream.metadata)
    let streamID: Int32
    switch session.submitRequest(&headers, body: Nghttp2Session.provider(stream, ClientCallbacks.readRequest), call: stream) {
    case .success(let id): streamID = id
    case .failure(let error):
      stream.fail(RPCError(.unavailable, "cannot start a call: \(error)"))
      return
    }
    stream.opened(id: streamID, connection: self)
    streams[streamID] = stream
    if let deadline = stream.deadline {
      stream.deadlineTimer = eventLoop?.scheduleTask(deadline: deadline) { stream.deadlineExceeded() }
    }
    scheduleFlush()
  }

  /// Resets a stream (cancellation or deadline).
  func reset(_ id: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
    guard let session else { return }
    session.reset(id, code: code)
    scheduleFlush()
  }

  func resumeData(_ id: Int32) {
    guard let session else { return }
    session.resumeData(id)
    scheduleFlush()
  }

  func consumeStream(_ id: Int32, _ count: Int) {
    session?.consumeStream(id, count)
  }

  fileprivate func consumeConnection(_ count: Int) {
    session?.consumeConnection(count)
  }

  fileprivate func stream(_ id: Int32) -> ClientStream? {
    guard let pointer = session?.userData(ofStream: id) else { return nil }
    return Unmanaged<ClientStream>.fromOpaque(pointer).takeUnretainedValue()
  }

  fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) {
    switch frame.type {
    case FrameType.headers:
      guard let stream = stream(frame.streamID) else { return }
      stream.headersComplete(endStream: frame.endsStream)
    case FrameType.data:
      if frame.endsStream, let stream = stream(frame.streamID) { stream.responseEnded() }
    case FrameType.ping:
      if frame.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 { manager.pingAcknowledged() }
    case FrameType.goaway:
      markUnusable()
    case FrameType.settings:
      if frame.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0, manager.settingsReceived() {
        let ready = waiting
        waiting.removeAll()
        for stream in ready { start(stream) }
      }
    default:
      break
    }
  }

  fileprivate func streamNotStarted(id: Int32, reason: Int) {
    guard let stream = streams.removeValue(forKey: id) else { return }
    stream.failBeforeSending(RPCError(.unavailable, "the call could not start: \(Nghttp2Error(code: reason))"))
  }

  fileprivate func streamClosed(id: Int32, errorCode: UInt32) {
    guard let stream = streams.removeValue(forKey: id) else { return }
    stream.closed(errorCode: errorCode)
  }

  // MARK: Output and life cycle

  func flush() {
    guard let session, let context, !manager.closing else { return }
    if case .failed(let error) = session.send(to: context) {
      teardown(RPCError(.internalError, "HTTP/2 send failed: \(error)"))
      closeNow()
      return
    }
    if manager.closesAfterFlush(wantsRead: session.wantsRead, wantsWrite: session.wantsWrite) {
      markUnusable()
      context.close(promise: nil)
    }
  }

  func scheduleFlush() {
    guard !readInProgress, !flushScheduled, let eventLoop else { return }
    flushScheduled = true
    eventLoop.execute {
      self.flushScheduled = false
      self.flush()
    }
  }

  private func tick() {
    guard let session else { return }
    switch manager.tick(now: .now()) {
    case .none:
      break
    case .closeUnanswered:
      teardown(RPCError(.unavailable, "keepalive ping to \(authority) unanswered"))
      closeNow()
    case .ping:
      session.ping()
      flush()
    }
  }

  private func markUnusable() {
    if manager.becameUnusable() { onUnusable?() }
  }

  private func closeNow() {
    guard manager.close() else { return }
    context?.close(promise: nil)
  }

  private func teardown(_ error: RPCError) {
    markUnusable()
    timer?.cancel()
    timer = nil
    let open = streams
    streams.removeAll()
    for stream in open.values { stream.fail(error) }
    let queued = waiting
    waiting.removeAll()
    for stream in queued { stream.failBeforeSending(error) }
    session = nil
  }
}

/// The nghttp2 callbacks of a client session.
enum ClientCallbacks {
  nonisolated(unsafe) static let shared: OpaquePointer = {
    var callbacks: OpaquePointer?
    nghttp2_session_callbacks_new(&callbacks)
    guard let callbacks else { fatalError("nghttp2_session_callbacks_new failed: out of memory") }
    nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
    nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, onFrameNotSend)
    return callbacks
  }()

  @inline(__always)
  static func connection(_ userData: UnsafeMutableRawPointer?) -> ClientConnectionHandler {
    Unmanaged<ClientConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
  }

  static let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value, let stream = connection(userData).stream(frame.streamID) else { return 0 }
    stream.header(name: name, nameLength: nameLength, value: value, valueLength: valueLength)
    return 0
  }

  static let onFrameRecv: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    connection(userData).frameReceived(frame)
    return 0
  }

  static let onDataChunkRecv: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    let connection = connection(userData)
    connection.consumeConnection(length)
    guard let data, let stream = connection.stream(streamID) else {
      connection.consumeStream(streamID, length)
      return 0
    }
    stream.receive(UnsafeRawBufferPointer(start: data, count: length))
    return 0
  }

  static let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    connection(userData).streamClosed(id: streamID, errorCode: errorCode)
    return 0
  }

  /// A request's HEADERS could not be sent (the server sent GOAWAY first): the call never started.
  static let onFrameNotSend: nghttp2_on_frame_not_send_callback = { _, frame, errorCode, userData in
    guard let frame, frame.type == FrameType.headers else { return 0 }
    connection(userData).streamNotStarted(id: frame.streamID, reason: Int(errorCode))
    return 0
  }

  static let readRequest: nghttp2_data_source_read_callback = { _, _, buffer, length, flags, source, _ in
    guard let buffer, let flags, let pointer = source?.pointee.ptr else {
      return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)
    }
    let stream = Unmanaged<ClientStream>.fromOpaque(pointer).takeUnretainedValue()
    return stream.readRequest(into: UnsafeMutableRawBufferPointer(start: buffer, count: length), flags: flags)
  }
}
