import CEduHubNghttp2
import NIOCore

/// The outcome of a call with one response message.
struct ClientUnaryResult: Sendable {
  var message: ByteBuffer
  var headers: RPCMetadata
  var trailers: RPCMetadata
}

/// One call on a client connection. Created by the caller, then confined to the connection's
/// event loop from `start` on.
final class ClientStream: @unchecked Sendable {
  let method: RPCMethodDescriptor
  let metadata: RPCMetadata
  let deadline: NIODeadline?
  let maxReceiveMessageSize: Int
  let eventLoop: any EventLoop

  // Request body: one message, or a queue a writer fills.
  var singleRequest: ByteBuffer?
  var outbound: OutboundMessageQueue?

  // Response: a promise for one message, or a queue for a stream.
  var unaryPromise: EventLoopPromise<ClientUnaryResult>?
  var inbound: InboundMessageQueue?

  private(set) var id: Int32 = 0
  private var connection: ClientConnectionHandler?
  var deadlineTimer: Scheduled<Void>?
  private(set) var isDone = false
  /// The call failed before the server could have seen it, so it may be tried again elsewhere.
  private(set) var isRetryable = false
  private var dataDeferred = false

  private var deframer: MessageDeframer?
  private var singleResponse: ByteBuffer?
  private var headers = RPCMetadata()
  private var trailers = RPCMetadata()
  private var headerBlocks = 0
  private var httpStatus: Int?
  private var grpcStatus: Int?
  private var grpcMessage: String?
  private var unconsumedBytes = 0

  init(
    method: RPCMethodDescriptor, metadata: RPCMetadata, deadline: NIODeadline?, maxReceiveMessageSize: Int,
    eventLoop: any EventLoop
  ) {
    self.method = method
    self.metadata = metadata
    self.deadline = deadline
    self.maxReceiveMessageSize = maxReceiveMessageSize
    self.eventLoop = eventLoop
  }

  /// Creates the queue a writer fills; the connection is told when data arrives.
  func makeOutbound() -> OutboundMessageQueue {
    let queue = OutboundMessageQueue { [self] in
      eventLoop.execute { self.outputAvailable() }
    }
    outbound = queue
    return queue
  }

  /// Creates the queue the caller reads responses from.
  func makeInbound() -> InboundMessageQueue {
    let queue = InboundMessageQueue { [self] in
      eventLoop.execute { self.resumeReading() }
    }
    inbound = queue
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
    guard !isDone, unconsumedBytes > 0, let connection else { return }
    connection.consumeStream(id, unconsumedBytes)
    unconsumedBytes = 0
    connection.scheduleFlush()
  }

  // MARK: Request body

  func readRequest(into buffer: UnsafeMutableRawBufferPointer, flags: UnsafeMutablePointer<UInt32>) -> Int {
    if var single = singleRequest {
      let count = min(buffer.count, single.readableBytes)
      single.withUnsafeReadableBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
      single.moveReaderIndex(forwardBy: count)
      if single.readableBytes == 0 {
        singleRequest = nil
        flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
      } else {
        singleRequest = single
      }
      return count
    }
    guard let outbound else {
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
      return 0
    }
    switch outbound.read(into: buffer) {
    case .bytes(let count, let end):
      if end { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
      return count
    case .end:
      flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
      return 0
    case .deferred:
      dataDeferred = true
      return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
  }

  // MARK: Response

  func header(name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) {
    let valueBytes = UnsafeBufferPointer(start: value, count: valueLength)
    if bytesEqual(name, nameLength, ":status") {
      httpStatus = Int(String(decoding: valueBytes, as: UTF8.self))
    } else if bytesEqual(name, nameLength, "grpc-status") {
      grpcStatus = Int(String(decoding: valueBytes, as: UTF8.self)) ?? RPCError.Code.unknown.rawValue
    } else if bytesEqual(name, nameLength, "grpc-message") {
      grpcMessage = PercentEncoding.decode(valueBytes)
    } else {
      let key = String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self)
      guard !RPCMetadata.isReserved(key) else { return }
      if key.hasSuffix("-bin") {
        guard let decoded = Base64.decode(valueBytes) else { return }
        if headerBlocks == 0 { headers.add(key, binary: decoded) } else { trailers.add(key, binary: decoded) }
      } else {
        let text = String(decoding: valueBytes, as: UTF8.self)
        if headerBlocks == 0 { headers.add(key, text) } else { trailers.add(key, text) }
      }
    }
  }

  func headersComplete(endStream: Bool) {
    headerBlocks += 1
    if endStream { responseEnded() }
  }

  func receive(_ bytes: UnsafeRawBufferPointer) {
    guard !isDone, let connection else { return }
    if deframer == nil { deframer = MessageDeframer(maxMessageSize: maxReceiveMessageSize) }
    deframer!.append(bytes)
    var accepting = true
    do {
      while let message = try deframer!.next() {
        if let inbound {
          accepting = inbound.push(message)
        } else if singleResponse == nil {
          singleResponse = message
        } else {
          connection.consumeStream(id, bytes.count)
          return abort(RPCError(.internalError, "\(method.path) returned more than one response message"))
        }
      }
    } catch {
      connection.consumeStream(id, bytes.count)
      return abort(error.status("response"))
    }
    if accepting && unconsumedBytes == 0 {
      connection.consumeStream(id, bytes.count)
    } else {
      unconsumedBytes += bytes.count
    }
  }

  /// The server ended the stream: decide the call's status.
  func responseEnded() {
    guard !isDone else { return }
    let status: RPCError?
    if let grpcStatus {
      // A trailers-only response carries its metadata in its one header block.
      if headerBlocks <= 1, singleResponse == nil, trailers.isEmpty { trailers = headers }
      status =
        grpcStatus == 0
        ? nil : RPCError(RPCError.Code(rawValue: grpcStatus), grpcMessage ?? "", trailers: trailers)
    } else if let httpStatus, httpStatus != 200 {
      status = RPCError(Self.code(forHTTPStatus: httpStatus), "HTTP status \(httpStatus)")
    } else {
      status = RPCError(.internalError, "the response ended without a grpc-status")
    }
    if status == nil, deframer?.hasPartialMessage == true {
      return finalize(RPCError(.internalError, "the response ended inside a message"))
    }
    finalize(status)
  }

  /// nghttp2 closed the stream.
  func closed(errorCode: UInt32) {
    guard !isDone else { return }
    if errorCode == NGHTTP2_NO_ERROR.rawValue {
      responseEnded()
      return
    }
    let error: RPCError
    switch errorCode {
    case NGHTTP2_CANCEL.rawValue: error = RPCError(.cancelled, "the server cancelled the call")
    case NGHTTP2_REFUSED_STREAM.rawValue:
      // The server guarantees it did not process a refused stream.
      isRetryable = true
      error = RPCError(.unavailable, "the server refused the stream")
    case NGHTTP2_ENHANCE_YOUR_CALM.rawValue: error = RPCError(.resourceExhausted, "the server asked to slow down")
    default: error = RPCError(.internalError, "stream reset with HTTP/2 error \(errorCode)")
    }
    finalize(error)
  }

  func deadlineExceeded() {
    guard !isDone else { return }
    finalize(RPCError(.deadlineExceeded, "deadline exceeded"))
    if id > 0 { connection?.reset(id) }
  }

  /// The caller gave up (task cancelled or stopped reading).
  func cancel() {
    guard !isDone else { return }
    finalize(RPCError(.cancelled, "the call was cancelled"))
    if id > 0 { connection?.reset(id) }
  }

  /// The connection ended under the call.
  func fail(_ error: RPCError) {
    finalize(error)
  }

  /// The call never reached the server (its connection was closing, or it was refused).
  func failBeforeSending(_ error: RPCError) {
    if !isDone { isRetryable = true }
    finalize(error)
  }

  /// Resets the stream after a local protocol failure.
  private func abort(_ error: RPCError) {
    finalize(error)
    if id > 0 { connection?.reset(id) }
  }

  private func finalize(_ status: RPCError?) {
    guard !isDone else { return }
    isDone = true
    deadlineTimer?.cancel()
    deadlineTimer = nil
    if let promise = unaryPromise {
      unaryPromise = nil
      if let status {
        promise.fail(status)
      } else if let message = singleResponse {
        promise.succeed(ClientUnaryResult(message: message, headers: headers, trailers: trailers))
      } else {
        promise.fail(RPCError(.internalError, "\(method.path) returned no response message"))
      }
    }
    inbound?.finish(status)
    outbound?.fail(status ?? RPCError(.cancelled, "the call has ended"))
    singleResponse = nil
    singleRequest = nil
    deframer = nil
  }

  /// gRPC's mapping of HTTP statuses for responses that carry no grpc-status.
  static func code(forHTTPStatus status: Int) -> RPCError.Code {
    switch status {
    case 400: return .internalError
    case 401: return .unauthenticated
    case 403: return .permissionDenied
    case 404: return .unimplemented
    case 429, 502, 503, 504: return .unavailable
    default: return .unknown
    }
  }
}
