import CEduHubNghttp2
import NIOCore
import Tracing

/// The outcome of a call with one response message.
struct ClientUnaryResult: Sendable {
  var message: ByteBuffer
  var headers: RPCMetadata
  var trailers: RPCMetadata
}

/// One call on a client connection. Created by the caller, then confined to the connection's
/// event loop from `start` on. How the call ends is its ``ClientCallStateMachine``'s to decide;
/// this class parses what arrives, moves messages and carries the decisions out.
final class ClientStream: @unchecked Sendable {
  /// The call's client span, when calls are traced; set before the call starts.
  var span: (any Span)?

  let method: RPCMethodDescriptor
  let metadata: RPCMetadata
  let deadline: NIODeadline?
  let eventLoop: any EventLoop

  /// The request body: one message, or a queue a writer fills.
  private var sender = MessageSender()
  /// The response: one message for a promise, or a queue for a stream.
  private var receiver: MessageReceiver
  var unaryPromise: EventLoopPromise<ClientUnaryResult>?

  private(set) var id: Int32 = 0
  private var connection: ClientConnectionHandler?
  var deadlineTimer: Scheduled<Void>?
  private var machine = ClientCallStateMachine()
  private var dataDeferred = false
  private var headers = RPCMetadata()
  private var trailers = RPCMetadata()

  var isDone: Bool { machine.isDone }
  /// The call failed before the server could have seen it, so it may be tried again elsewhere.
  var isRetryable: Bool { machine.isRetryable }

  init(
    method: RPCMethodDescriptor, metadata: RPCMetadata, deadline: NIODeadline?, maxReceiveMessageSize: Int,
    eventLoop: any EventLoop
  ) {
    self.method = method
    self.metadata = metadata
    self.deadline = deadline
    self.receiver = MessageReceiver(maxMessageSize: maxReceiveMessageSize)
    self.eventLoop = eventLoop
  }

  /// Sets the one request message.
  func setRequest(_ framed: ByteBuffer) {
    sender.single = framed
  }

  /// Creates the queue a writer fills; the connection is told when data arrives.
  func makeOutbound() -> OutboundMessageQueue {
    let queue = OutboundMessageQueue { [self] in
      eventLoop.execute { self.outputAvailable() }
    }
    sender.queue = queue
    return queue
  }

  /// Creates the queue the caller reads responses from.
  func makeInbound() -> InboundMessageQueue {
    let queue = InboundMessageQueue { [self] in
      eventLoop.execute { self.resumeReading() }
    }
    receiver.queue = queue
    return queue
  }

  func opened(id: Int32, connection: ClientConnectionHandler) {
    self.id = id
    self.connection = connection
  }

  private func outputAvailable() {
    guard !isDone, dataDeferred, let connection else { return }
    dataDeferred = false
    connection.resumeData(id)
  }

  private func resumeReading() {
    guard !isDone, let connection else { return }
    let credit = receiver.resume()
    guard credit > 0 else { return }
    connection.consumeStream(id, credit)
    connection.scheduleFlush()
  }

  // MARK: Request body

  func readRequest(into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
    switch sender.read(into: buffer) {
    case .bytes(let count, let ended):
      if ended { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
      return count
    case .deferred:
      dataDeferred = true
      return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
  }

  // MARK: Response

  func header(name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) {
    let valueBytes = UnsafeBufferPointer(start: value, count: valueLength)
    if bytesEqual(name, nameLength, ":status") {
      machine.httpStatus(String(decoding: valueBytes, as: UTF8.self))
    } else if bytesEqual(name, nameLength, "grpc-status") {
      machine.grpcStatus(String(decoding: valueBytes, as: UTF8.self))
    } else if bytesEqual(name, nameLength, "grpc-message") {
      machine.grpcMessage(PercentEncoding.decode(valueBytes))
    } else {
      let key = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
      guard !RPCMetadata.isReserved(key) else { return }
      if key.hasSuffix("-bin") {
        guard let decoded = Base64.decode(valueBytes) else { return }
        if machine.inTrailers { trailers.add(key, binary: decoded) } else { headers.add(key, binary: decoded) }
      } else {
        let text = String(decoding: valueBytes, as: UTF8.self)
        if machine.inTrailers { trailers.add(key, text) } else { headers.add(key, text) }
      }
    }
  }

  func headersComplete(endStream: Bool) {
    machine.headerBlockEnded()
    if endStream { responseEnded() }
  }

  func receive(_ bytes: UnsafeRawBufferPointer) {
    guard !isDone, let connection else { return }
    switch receiver.receive(bytes) {
    case .accepted(let credit):
      connection.consumeStream(id, credit)
    case .secondMessage:
      connection.consumeStream(id, bytes.count)
      perform(machine.protocolViolation(RPCError(.internalError, "\(method.path) returned more than one response message")))
    case .malformed(let error):
      connection.consumeStream(id, bytes.count)
      perform(machine.protocolViolation(error.status("response")))
    }
  }

  /// The server ended the stream: the machine decides the call's status.
  func responseEnded() {
    perform(machine.responseEnded(trailers: endingTrailers(), endedInsideMessage: receiver.endedInsideMessage))
  }

  /// nghttp2 closed the stream.
  func closed(errorCode: UInt32) {
    perform(machine.closed(errorCode: errorCode, trailers: endingTrailers(), endedInsideMessage: receiver.endedInsideMessage))
  }

  /// A trailers-only response carries its metadata in its one header block.
  private func endingTrailers() -> RPCMetadata {
    if machine.isTrailersOnly, receiver.single == nil, trailers.isEmpty { trailers = headers }
    return trailers
  }

  func deadlineExceeded() {
    perform(machine.deadlineExceeded())
  }

  /// The caller gave up (task cancelled or stopped reading).
  func cancel() {
    perform(machine.cancelled())
  }

  /// The connection ended under the call, or the call could not start.
  func fail(_ error: RPCError) {
    perform(machine.failed(error))
  }

  /// The call never reached the server (its connection was closing, or it was refused).
  func failBeforeSending(_ error: RPCError) {
    perform(machine.notSent(error))
  }

  /// Carries out what the machine decided.
  private func perform(_ action: ClientCallStateMachine.Action) {
    switch action {
    case .nothing:
      return
    case .finish(let status):
      finalize(status)
    case .finishAndReset(let status):
      finalize(status)
      if id > 0 { connection?.reset(id) }
    }
  }

  private func finalize(_ status: RPCError?) {
    deadlineTimer?.cancel()
    deadlineTimer = nil
    if let promise = unaryPromise {
      unaryPromise = nil
      if let status {
        promise.fail(status)
      } else if let message = receiver.single {
        promise.succeed(ClientUnaryResult(message: message, headers: headers, trailers: trailers))
      } else {
        promise.fail(RPCError(.internalError, "\(method.path) returned no response message"))
      }
    }
    receiver.queue?.finish(status)
    sender.queue?.fail(status ?? RPCError(.cancelled, "the call has ended"))
    sender.single = nil
    receiver.clear()
  }
}
