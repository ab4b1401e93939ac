import CEduHubNghttp2
import NIOCore
import Tracing
import Synchronization

/// One call on a server connection: its request headers, its messages each way and its status.
///
/// Lives on the connection's event loop; a handler's task only reaches it through `execute`.
final class ServerStream: @unchecked Sendable {

  let id: Int32
  let connection: ServerConnectionHandler
  /// Links of the connection's list of open streams.
  fileprivate var next: ServerStream?
  fileprivate unowned(unsafe) var previous: ServerStream?

  // Request headers.
  private(set) var method: RPCMethod?
  /// What hears this method's calls (metrics), and when this call started for it (the time of the
  /// read that completed its headers: the connection reads the clock once per read and per flush).
  private var observer: (any CallObserver)?
  /// The call's span, when calls are traced (see `RPCTracing`).
  private var span: (any Span)?
  private var observedSince: NIODeadline?
  private var unknownPath: String?
  private var isPost = false
  /// The method when it is not POST (plain HTTP requests).
  private var otherMethod: String?
  /// The :authority of a plain HTTP request (the Host of HTTP/1.1).
  private var authority: String?
  private var contentTypeIsGRPC = false
  /// The content type when it is not gRPC's (plain HTTP requests).
  private var otherContentType: String?
  /// A plain HTTP request (not gRPC) being served by the server's HTTP handler: its body so far.
  private var httpBody: [UInt8]?
  /// The most bytes that body may have (the handler's limit within the server's).
  private var httpBodyLimit = 0
  /// What this stream holds of the server's ``HTTPBodyBudget``, given back when it closes.
  private var httpReserved = 0
  private var timeoutNanos: Int64?
  private var headerError: RPCError?
  /// The request's custom metadata (read by handlers through `ServerContext`).
  private(set) var metadata = RPCMetadata()
  private var headerBytes = 0
  /// Who the configured interceptor says the caller is (read by handlers through `ServerContext`).
  private(set) var principal: (any Sendable)?

  // Request body.
  private var receiver: MessageReceiver
  private var requestComplete = false

  // Response: what it may still send and its status are the machine's; this class carries out
  // what it decides.
  private var machine = ServerCallStateMachine()
  private var sender = MessageSender()

  /// Whether the call was accepted and its handler chosen (the request headers were valid).
  private var started = false
  /// When the caller stops waiting, if it said (read by handlers through `ServerContext`).
  private(set) var deadline: NIODeadline?
  /// Response metadata a handler adds from its own thread.
  let responseMetadata = Mutex(ResponseMetadata())
  private var task: Task<Void, Never>?
  private var deadlineTimer: Scheduled<Void>?
  var isClosed: Bool { machine.isClosed }

  init(id: Int32, connection: ServerConnectionHandler) {
    self.id = id
    self.connection = connection
    self.receiver = MessageReceiver(maxMessageSize: connection.configuration.maxReceiveMessageSize)
  }

  // MARK: Request

  func header(name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) {
    headerBytes += nameLength + valueLength + 32
    if headerBytes > connection.configuration.maxHeaderListSize {
      if headerError == nil {
        headerError = RPCError(.resourceExhausted, "request headers exceed \(connection.configuration.maxHeaderListSize) bytes")
      }
      return
    }
    if name.pointee == UInt8(ascii: ":") {
      if bytesEqual(name, nameLength, ":path") {
        let route = connection.router.route(value, valueLength)
        method = route?.method
        observer = route?.observer
        if method == nil {
          unknownPath = String(decoding: UnsafeBufferPointer(start: value, count: min(valueLength, 2048)), as: UTF8.self)
        }
      } else if bytesEqual(name, nameLength, ":authority") {
        authority = String(decoding: UnsafeBufferPointer(start: value, count: min(valueLength, 256)), as: UTF8.self)
      } else if bytesEqual(name, nameLength, ":method") {
        isPost = bytesEqual(value, valueLength, "POST")
        if !isPost { otherMethod = String(decoding: UnsafeBufferPointer(start: value, count: min(valueLength, 16)), as: UTF8.self) }
      }
      return
    }
    if bytesEqual(name, nameLength, "content-type") {
      contentTypeIsGRPC =
        bytesEqual(value, valueLength, "application/grpc")
        || bytesHavePrefix(value, valueLength, "application/grpc+")
        || bytesHavePrefix(value, valueLength, "application/grpc;")
      if !contentTypeIsGRPC {
        otherContentType = String(decoding: UnsafeBufferPointer(start: value, count: min(valueLength, 200)), as: UTF8.self)
      }
    } else if bytesEqual(name, nameLength, "grpc-timeout") {
      if let nanos = GRPCTimeout.parse(UnsafeRawBufferPointer(start: value, count: valueLength)) {
        timeoutNanos = nanos
      } else if headerError == nil {
        headerError = RPCError(.invalidArgument, "malformed grpc-timeout header")
      }
    } else if bytesEqual(name, nameLength, "grpc-encoding") {
      if !bytesEqual(value, valueLength, "identity"), headerError == nil {
        let encoding = String(decoding: UnsafeBufferPointer(start: value, count: min(valueLength, 64)), as: UTF8.self)
        var trailers = RPCMetadata()
        trailers.add("grpc-accept-encoding", "identity")
        headerError = RPCError(.unimplemented, "compression \"\(encoding)\" is not supported", trailers: trailers)
      }
    } else if bytesEqual(name, nameLength, "te") || bytesEqual(name, nameLength, "user-agent")
      || bytesHavePrefix(name, nameLength, "grpc-")
    {
      return
    } else {
      // HTTP/2 header names are lower-case (nghttp2 checks), so they go in as they are.
      let key = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
      let valueBytes = UnsafeBufferPointer(start: value, count: valueLength)
      if key.hasSuffix("-bin") {
        if let decoded = Base64.decode(valueBytes) { metadata.append(key: key, .binary(decoded)) }
      } else {
        metadata.append(key: key, .string(String(decoding: valueBytes, as: UTF8.self)))
      }
    }
  }

  /// The request headers are complete: check them and start the call.
  func headersComplete() {
    if let observer {
      observedSince = connection.clock
      observer.callStarted()
    }
    if RPCTracing.isEnabled, let method {
      span = RPCTracing.serverSpan(method.descriptor, metadata: metadata, peer: connection.connectionInfo.peer)
    }
    if let headerError { return fail(headerError) }
    guard contentTypeIsGRPC else {
      if let handler = connection.configuration.httpHandler, method == nil {
        httpBody = []
        httpBodyLimit = min(
          connection.configuration.maxReceiveMessageSize,
          handler.bodyLimit(method: plainMethod, path: (unknownPath ?? "/").prefix { $0 != "?" }, headers: plainHeaders) ?? .max)
        return
      }
      return fail(RPCError(.internalError, "content-type must be application/grpc"), httpStatus: "415")
    }
    guard isPost else { return fail(RPCError(.unimplemented, "gRPC calls use the POST method")) }
    guard let method else {
      return fail(RPCError(.unimplemented, "unknown method \(unknownPath ?? "")"))
    }
    if let interceptor = connection.configuration.interceptor {
      do {
        principal = try interceptor.intercept(ServerCallHead(method: method.descriptor, metadata: metadata, peer: connection.connectionInfo.peer))
      } catch {
        return fail(RPCError.from(error))
      }
    }
    if let timeoutNanos, let loop = connection.eventLoop {
      let when = NIODeadline.now() + .nanoseconds(min(timeoutNanos, Int64.max / 2))
      deadline = when
      deadlineTimer = loop.scheduleTask(deadline: when) { [self] in deadlineExceeded() }
    }
    started = true
    switch method.handler {
    case .inline, .unary, .inlineOrTask, .serverStreaming:
      break
    case .clientStreaming(let handler):
      let inbound = makeInbound()
      startTask { context in
        let response = try await handler(inbound, context)
        return { $0.respond(with: response) }
      }
    case .bidirectional(let handler):
      let inbound = makeInbound()
      let outbound = makeOutbound()
      startTask { context in
        try await handler(inbound, outbound, context)
        return { $0.finish(nil) }
      }
    }
  }

  func receive(_ bytes: UnsafeRawBufferPointer) {
    if httpBody != nil {
      connection.consumeStream(id, bytes.count)
      guard machine.response == .idle, !machine.isClosed else { return }
      let path = (unknownPath ?? "/").prefix { $0 != "?" }
      if httpBody!.count + bytes.count > httpBodyLimit {
        httpBody = nil
        let message = "the request body exceeds \(httpBodyLimit) bytes"
        respondHTTP(connection.configuration.httpHandler?.refused(status: 413, message: message, path: path) ?? .text(413, message))
        return
      }
      guard connection.configuration.httpBodyBudget.reserve(bytes.count) else {
        httpBody = nil
        let message = "the server is busy receiving other requests; try again"
        respondHTTP(connection.configuration.httpHandler?.refused(status: 503, message: message, path: path) ?? .text(503, message))
        return
      }
      httpReserved += bytes.count
      httpBody!.append(contentsOf: bytes)
      return
    }
    guard machine.isOpen, started else {
      connection.consumeStream(id, bytes.count)
      return
    }
    switch receiver.receive(bytes) {
    case .accepted(let credit):
      connection.consumeStream(id, credit)
    case .secondMessage:
      connection.consumeStream(id, bytes.count)
      fail(RPCError(.unimplemented, "\(method!.descriptor.path) takes one request message, not several"))
    case .malformed(let error):
      connection.consumeStream(id, bytes.count)
      fail(error.status("request"))
    }
  }

  /// A plain HTTP request's method.
  private var plainMethod: String { otherMethod ?? (isPost ? "POST" : "GET") }

  /// A plain HTTP request's headers as HTTP/1.1 names them: HTTP/2's :authority is the Host (a
  /// page checks a form's Origin against it).
  private var plainHeaders: [(name: String, value: String)] {
    metadata.textEntries + (otherContentType.map { [("content-type", $0)] } ?? []) + (authority.map { [("host", $0)] } ?? [])
  }

  /// The client finished sending (END_STREAM).
  func requestEnded() {
    guard !requestComplete else { return }
    requestComplete = true
    if let body = httpBody, let handler = connection.configuration.httpHandler {
      httpBody = nil
      guard machine.response == .idle, !machine.isClosed else { return }
      let request = HTTPRequest(
        method: plainMethod, target: unknownPath ?? "/", headers: plainHeaders, body: body,
        peer: connection.connectionInfo.peer, version: "HTTP/2", isSecure: connection.connectionInfo.isSecure)
      if let response = handler.handleInline(request) {
        respondHTTP(response)
        connection.scheduleFlush()
        return
      }
      let connection = self.connection
      task = Task { [self] in
        let response = await handler.handle(request)
        connection.execute {
          self.respondHTTP(response)
          self.connection.scheduleFlush()
        }
      }
      return
    }
    guard machine.isOpen, started, let method else { return }
    if receiver.endedInsideMessage {
      receiver.queue?.finish(RPCError(.internalError, "the request ended inside a message"))
      return fail(RPCError(.internalError, "the request ended inside a message"))
    }
    switch method.handler {
    case .inline(let handler):
      guard let request = takeSingleRequest() else { return }
      do {
        respond(with: try handler(request, ServerContext(call: self)))
      } catch {
        finish(RPCError.from(error))
      }
    case .unary(let handler):
      guard let request = takeSingleRequest() else { return }
      startTask { context in
        let response = try await handler(request, context)
        return { $0.respond(with: response) }
      }
    case .inlineOrTask(let quick, let handler):
      guard let request = takeSingleRequest() else { return }
      do {
        if let response = try quick(request, ServerContext(call: self)) {
          respond(with: response)
          return
        }
      } catch {
        finish(RPCError.from(error))
        return
      }
      startTask { context in
        let response = try await handler(request, context)
        return { $0.respond(with: response) }
      }
    case .serverStreaming(let handler):
      guard let request = takeSingleRequest() else { return }
      let outbound = makeOutbound()
      startTask { context in
        try await handler(request, outbound, context)
        return { $0.finish(nil) }
      }
    case .clientStreaming, .bidirectional:
      receiver.queue?.finish()
    }
  }

  private func takeSingleRequest() -> ByteBuffer? {
    guard let request = receiver.takeSingle() else {
      fail(RPCError(.unimplemented, "\(method!.descriptor.path) needs one request message, got none"))
      return nil
    }
    return request
  }

  private func makeInbound() -> InboundMessageQueue {
    let connection = self.connection
    let queue = InboundMessageQueue { [self] in
      connection.execute { self.resumeReading() }
    }
    receiver.queue = queue
    return queue
  }

  private func makeOutbound() -> OutboundMessageQueue {
    let connection = self.connection
    let queue = OutboundMessageQueue(readerWaiting: true) { [self] in
      connection.execute { self.outputAvailable() }
    }
    sender.queue = queue
    return queue
  }

  /// The handler's reader caught up: acknowledge what was held back so the client sends more.
  private func resumeReading() {
    guard !isClosed else { return }
    let credit = receiver.resume()
    guard credit > 0 else { return }
    connection.consumeStream(id, credit)
    connection.scheduleFlush()
  }

  /// Runs a handler as a task. Its result is a step to take back on the event loop.
  private func startTask(
    _ body: @escaping @Sendable (ServerContext) async throws -> @Sendable (ServerStream) -> Void
  ) {
    let context = ServerContext(call: self)
    let connection = self.connection
    // The handler runs in the call's span: the calls it makes continue the caller's trace.
    let traceContext = span?.context
    task = Task { [self] in
      let step: @Sendable (ServerStream) -> Void
      do {
        if let traceContext {
          step = try await ServiceContext.withValue(traceContext) { try await body(context) }
        } else {
          step = try await body(context)
        }
      } catch {
        let status = RPCError.from(error)
        step = { $0.finish(status) }
      }
      connection.execute {
        step(self)
        self.connection.scheduleFlush()
      }
    }
  }

  // MARK: Response

  /// Sends a unary response: headers, the one message, trailers.
  func respond(with framedMessage: ByteBuffer) {
    let action = machine.respond()
    guard action != .nothing else { return }
    deadlineTimer?.cancel()
    sender.single = framedMessage
    perform(action)
  }

  /// Ends the call with `status` (nil for OK) after any queued messages.
  func finish(_ status: RPCError?) {
    // The first status decided is the call's: a handler that returns after its deadline failed the
    // call (it was cancelled) must not turn DEADLINE_EXCEEDED into OK before the trailers go.
    guard let action = machine.finish(status, outputPending: sender.hasPendingOutput) else { return }
    deadlineTimer?.cancel()
    sender.queue?.finish()
    perform(action)
  }

  /// A handler wrote a message (or finished its stream) while nghttp2 was waiting for data.
  private func outputAvailable() {
    guard connection.session != nil else { return }
    perform(machine.outputAvailable())
    connection.scheduleFlush()
  }

  /// Ends the call early with `error`: the handler is cancelled, the client gets the status.
  private func fail(_ error: RPCError, httpStatus: String = "200") {
    task?.cancel()
    receiver.queue?.finish(error)
    sender.queue?.fail(error)
    if case .finish(let action) = machine.fail(error, httpStatus: httpStatus) {
      deadlineTimer?.cancel()
      perform(action)
    }
  }

  /// Carries out what the machine decided.
  private func perform(_ action: ServerCallStateMachine.SendAction) {
    switch action {
    case .nothing:
      break
    case .submitHeaders:
      submitResponseHeaders()
    case .resumeData:
      connection.session?.resumeData(id)
    case .trailersOnly(let status, let httpStatus):
      sendTrailersOnly(status, httpStatus: httpStatus)
    }
  }

  private func deadlineExceeded() {
    deadlineTimer = nil
    guard machine.isOpen else { return }
    fail(RPCError(.deadlineExceeded, "deadline exceeded"))
    connection.scheduleFlush()
  }

  private func submitResponseHeaders() {
    guard let session = connection.session else { return }
    let provider = Nghttp2Session.provider(self, ServerCallbacks.readResponse)
    let custom = responseMetadata.withLock { $0.headers }
    if custom.isEmpty {
      session.submitResponse(id, StaticHeaders.responseHeaders, body: provider)
    } else {
      var headers = HeaderList()
      headers.add(":status", "200")
      headers.add("content-type", "application/grpc")
      headers.add(metadata: custom)
      session.submitResponse(id, &headers, body: provider)
    }
  }

  /// Answers a plain HTTP request: headers, then the body, ending the stream (no trailers).
  private func respondHTTP(_ response: HTTPResponse) {
    guard let session = connection.session, machine.respondHTTP() else { return }
    var headers = HeaderList()
    headers.add(":status", String(response.status))
    for (name, value) in response.headers where name != "content-length" { headers.add(name.lowercased(), value) }
    headers.add("content-length", String(response.body.count))
    var buffer = ByteBuffer()
    buffer.writeBytes(response.body)
    sender.single = buffer
    session.submitResponse(id, &headers, body: Nghttp2Session.provider(self, ServerCallbacks.readResponse))
  }

  private func sendTrailersOnly(_ status: RPCError, httpStatus: String = "200") {
    guard let session = connection.session else { return }
    deadlineTimer?.cancel()
    var headers = HeaderList()
    headers.add(":status", httpStatus)
    headers.add("content-type", "application/grpc")
    addStatus(status, to: &headers)
    session.submitResponse(id, &headers, body: nil)
  }

  private func addStatus(_ status: RPCError, to headers: inout HeaderList) {
    headers.add("grpc-status", String(status.code.rawValue))
    if !status.message.isEmpty { headers.add("grpc-message", PercentEncoding.encode(status.message)) }
    headers.add(metadata: status.trailers)
    if case let custom = responseMetadata.withLock({ $0.trailers }), !custom.isEmpty {
      headers.add(metadata: custom)
    }
  }

  private func submitTrailers(_ status: RPCError?) {
    guard let session = connection.session else { return }
    let customTrailers = !responseMetadata.withLock { $0.trailers.isEmpty }
    if status == nil, !customTrailers {
      session.submitTrailer(id, StaticHeaders.okTrailers)
    } else {
      var headers = HeaderList()
      addStatus(status ?? RPCError(.ok, ""), to: &headers)
      session.submitTrailer(id, &headers)
    }
  }

  /// nghttp2 asks for the next DATA frame's bytes.
  func readResponse(into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
    switch sender.read(into: buffer) {
    case .bytes(let count, let ended):
      // The one message (or a plain body) ends the data; a writer's stream ends it only once the
      // call's status is decided, else nghttp2 waits for the trailers' turn.
      if ended, sender.queue == nil || machine.dataEnds {
        endData(flags)
        return count
      }
      if count > 0 { return count }
      machine.deferData()
      return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    case .deferred:
      machine.deferData()
      return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
  }

  private func endData(_ flags: UnsafeMutablePointer<UInt32>) {
    switch machine.endOfData() {
    case .endStream:
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
    case .submitTrailers(let status):
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
      submitTrailers(status)
    }
  }

  // MARK: End

  /// nghttp2 closed the stream: a reset by the client, the end of the call, or the connection's end.
  func closed(errorCode: UInt32) {
    // A plain request's body goes back to the server's budget however the stream ended.
    httpBody = nil
    connection.configuration.httpBodyBudget.release(httpReserved)
    httpReserved = 0
    guard let cancelHandler = machine.closed(errorCode: errorCode) else { return }
    if observer != nil || span != nil {
      // A call the client reset before its status was decided was cancelled.
      let code = machine.statusDecided ? machine.status?.code ?? .ok : .cancelled
      if let observer, let since = observedSince {
        observer.callEnded(code: code, nanoseconds: (connection.clock - since).nanoseconds)
      }
      if let span {
        RPCTracing.end(span, code: code)
        self.span = nil
      }
    }
    deadlineTimer?.cancel()
    deadlineTimer = nil
    if cancelHandler {
      task?.cancel()
      let error = RPCError(.cancelled, "the client cancelled the call")
      receiver.queue?.finish(error)
      sender.queue?.fail(error)
    }
    task = nil
    sender.single = nil
    receiver.clear()
  }
}

/// The open streams of a connection: a doubly linked list through the streams themselves, so that
/// opening and closing a stream costs no hashing and no allocation.
struct StreamList {
  private var head: ServerStream?
  private(set) var count = 0

  var isEmpty: Bool { count == 0 }

  mutating func insert(_ stream: ServerStream) {
    stream.next = head
    stream.previous = nil
    head?.previous = stream
    head = stream
    count += 1
  }

  /// Removes `stream`, which must be in the list.
  mutating func remove(_ stream: ServerStream) {
    if let previous = stream.previous {
      previous.next = stream.next
    } else {
      head = stream.next
    }
    stream.next?.previous = stream.previous
    stream.next = nil
    stream.previous = nil
    count -= 1
  }

  func forEach(_ body: (ServerStream) -> Void) {
    var current = head
    while let stream = current {
      current = stream.next
      body(stream)
    }
  }

  /// Empties the list, returning what it held.
  mutating func removeAll() -> [ServerStream] {
    var all: [ServerStream] = []
    all.reserveCapacity(count)
    while let stream = head {
      remove(stream)
      all.append(stream)
    }
    return all
  }
}
