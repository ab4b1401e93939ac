/// The response side of one server call as a value: what the call may still send, and which status
/// it ends with. `ServerStream` feeds it what happens (a handler's response or status, a failure, the
/// deadline, output from a streaming handler, nghttp2 asking for data, the stream's close) and
/// carries out the action it returns against libnghttp2; every rule lives here, once:
///
/// - the first status decided is the call's (a handler returning after its deadline cannot turn
///   DEADLINE_EXCEEDED into OK);
/// - an error before anything was sent goes as a trailers-only response, with an HTTP status;
/// - nothing is sent after the trailers, or after the stream closed.
///
/// ```
///  idle ──(response / output / status with output pending)──► started ──(end of data)──► done
///    └──────────────(status, nothing pending / failure)──── trailers-only ──────────────► done
///  any ──(stream closed)──► closed (the handler is cancelled unless the call had ended cleanly)
/// ```
struct ServerCallStateMachine {
  enum Response: Equatable {
    /// Nothing sent yet: an error can still go as a trailers-only response.
    case idle
    /// Headers submitted; DATA flows from the data provider.
    case started
    /// Trailers submitted (or a trailers-only response, or a plain HTTP body's end).
    case done
  }

  private(set) var response = Response.idle
  /// The status the call ends with once `statusDecided` (nil: OK).
  private(set) var status: RPCError?
  /// Whether the call's status is decided (its response or its failure).
  private(set) var statusDecided = false
  /// nghttp2 was told to wait for data (`NGHTTP2_ERR_DEFERRED`) and must be resumed for more.
  private(set) var dataDeferred = false
  /// The response answers a plain HTTP request: its body ends the stream, without gRPC trailers.
  private(set) var plainHTTP = false
  /// nghttp2 closed the stream.
  private(set) var isClosed = false

  /// Whether the call can still send anything.
  var isOpen: Bool { !isClosed && response != .done }

  // MARK: Events

  enum SendAction: Equatable {
    /// Nothing to send now.
    case nothing
    /// Submit the response headers with a data provider.
    case submitHeaders
    /// Resume the data provider nghttp2 was told to wait on.
    case resumeData
    /// End the call now with headers that carry the status (and this HTTP status).
    case trailersOnly(RPCError, httpStatus: String)
  }

  /// A unary handler's response: headers, the message, OK trailers.
  mutating func respond() -> SendAction {
    guard response == .idle, !isClosed else { return .nothing }
    status = nil
    statusDecided = true
    response = .started
    return .submitHeaders
  }

  /// A plain HTTP response (headers, then the body, ending the stream).
  mutating func respondHTTP() -> Bool {
    guard response == .idle, !isClosed else { return false }
    response = .started
    plainHTTP = true
    return true
  }

  /// The handler is done, with `status` (nil: OK). `outputPending`: a streaming handler's messages
  /// still wait to be sent. Nil when the call's status was decided already (or it ended): this
  /// status is not the call's.
  mutating func finish(_ status: RPCError?, outputPending: Bool) -> SendAction? {
    guard isOpen, !statusDecided else { return nil }
    self.status = status
    statusDecided = true
    switch response {
    case .idle where !outputPending:
      response = .done
      return .trailersOnly(status ?? RPCError(.ok, ""), httpStatus: "200")
    case .idle:
      response = .started
      return .submitHeaders
    case .started where dataDeferred:
      dataDeferred = false
      return .resumeData
    case .started, .done:
      return .nothing
    }
  }

  enum FailAction: Equatable {
    /// Nothing more to send (already done, or a status already decided); the handler and its
    /// queues still learn of the failure.
    case cancelOnly
    /// The call ends with the failure's status.
    case finish(SendAction)
  }

  /// The call fails with `error` (a bad request, the deadline): the handler is cancelled and the
  /// client gets the status, as a trailers-only response with `httpStatus` when nothing was sent.
  mutating func fail(_ error: RPCError, httpStatus: String = "200") -> FailAction {
    guard isOpen else { return .cancelOnly }
    if response == .idle {
      status = error
      statusDecided = true
      response = .done
      return .finish(.trailersOnly(error, httpStatus: httpStatus))
    }
    return finish(error, outputPending: true).map(FailAction.finish) ?? .cancelOnly
  }

  /// A streaming handler wrote a message (or finished) while nghttp2 may be waiting for data.
  mutating func outputAvailable() -> SendAction {
    guard isOpen else { return .nothing }
    if response == .idle {
      response = .started
      return .submitHeaders
    }
    if dataDeferred {
      dataDeferred = false
      return .resumeData
    }
    return .nothing
  }

  /// nghttp2 asked for data and none is ready: it waits until resumed.
  mutating func deferData() {
    dataDeferred = true
  }

  /// Whether the data that just ran out ends the response (its status is decided).
  var dataEnds: Bool { statusDecided }

  enum EndAction: Equatable {
    /// End the stream with the data (a plain HTTP body).
    case endStream
    /// End the data and submit trailers carrying `status` (nil: OK).
    case submitTrailers(RPCError?)
  }

  /// The last of the response's data is out.
  mutating func endOfData() -> EndAction {
    response = .done
    return plainHTTP ? .endStream : .submitTrailers(status)
  }

  /// nghttp2 closed the stream with `errorCode`; returns whether the handler is to be cancelled
  /// (the call had not ended, or ended with an error).
  mutating func closed(errorCode: UInt32) -> Bool? {
    guard !isClosed else { return nil }
    isClosed = true
    return response != .done || errorCode != 0
  }
}
