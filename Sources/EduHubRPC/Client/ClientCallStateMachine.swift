import CEduHubNghttp2

/// The status side of one client call as a value: what the server's headers and trailers said,
/// and the one status the call ends with. `ClientStream` feeds it what happens (header values, the
/// end of the response, the stream's close, the deadline, cancellation, the connection's failure)
/// and carries out the action it returns; the rules live here, once:
///
/// - the first ending decided is the call's (a deadline that fires as the trailers arrive, a cancel
///   after the call ended, a connection failing after the trailers change nothing);
/// - `grpc-status` decides; without it, the HTTP status maps to a gRPC code, and a response that
///   ends without either is INTERNAL; an OK that ends inside a message is INTERNAL too;
/// - a stream reset maps to its gRPC code; only a stream the server refused (or one never sent) may
///   be tried again.
///
/// ```
///  open ──(headers)──► headers received ──(trailers / END_STREAM / stream closed)──► done
///    └──(trailers-only response / reset / deadline / cancel / connection lost)───────► done
/// ```
struct ClientCallStateMachine {
  /// Whether the call's ending is decided.
  private(set) var isDone = false
  /// The call failed before the server could have seen it, so it may be tried again elsewhere.
  private(set) var isRetryable = false
  /// Header blocks received (the first is the response headers, the second the trailers).
  private(set) var headerBlocks = 0
  private var httpStatus: Int?
  private var grpcStatus: Int?
  private var grpcMessage: String?

  // MARK: What the server said

  /// A `:status` header.
  mutating func httpStatus(_ text: String) {
    httpStatus = Int(text)
  }

  /// A `grpc-status` header; one that is not a number counts as UNKNOWN.
  mutating func grpcStatus(_ text: String) {
    grpcStatus = Int(text) ?? RPCError.Code.unknown.rawValue
  }

  /// A `grpc-message` header, percent-decoded.
  mutating func grpcMessage(_ text: String) {
    grpcMessage = text
  }

  /// Whether metadata arriving now belongs to the trailers (a header block came before).
  var inTrailers: Bool { headerBlocks > 0 }

  /// A header block ended.
  mutating func headerBlockEnded() {
    headerBlocks += 1
  }

  /// Whether the response came as trailers only (one header block, carrying the status), so its
  /// metadata is the trailers'.
  var isTrailersOnly: Bool { headerBlocks <= 1 && grpcStatus != nil }

  // MARK: Endings

  enum Action: Equatable {
    /// Nothing changes: the call had ended already.
    case nothing
    /// The call ends with `status` (nil: OK, with the message received).
    case finish(RPCError?)
    /// The call ends with `status`, and its stream is to be reset (RST_STREAM CANCEL) if it opened.
    case finishAndReset(RPCError)
  }

  /// The server ended the stream. `trailers`: the metadata to give an error status;
  /// `endedInsideMessage`: the last message was cut short.
  mutating func responseEnded(trailers: RPCMetadata, endedInsideMessage: Bool) -> Action {
    guard !isDone else { return .nothing }
    let status: RPCError?
    if let grpcStatus {
      status = grpcStatus == 0 ? nil : RPCError(RPCError.Code(rawValue: grpcStatus), grpcMessage ?? "", trailers: trailers)
    } else if let httpStatus, httpStatus != 200 {
      status = RPCError(Self.code(forHTTPStatus: httpStatus), "HTTP status \(httpStatus)")
    } else {
      status = RPCError(.internalError, "the response ended without a grpc-status")
    }
    isDone = true
    if status == nil, endedInsideMessage { return .finish(RPCError(.internalError, "the response ended inside a message")) }
    return .finish(status)
  }

  /// nghttp2 closed the stream with `errorCode` (NO_ERROR: the response ended as it should).
  mutating func closed(errorCode: UInt32, trailers: RPCMetadata, endedInsideMessage: Bool) -> Action {
    guard !isDone else { return .nothing }
    if errorCode == NGHTTP2_NO_ERROR.rawValue { return responseEnded(trailers: trailers, endedInsideMessage: endedInsideMessage) }
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
    isDone = true
    return .finish(error)
  }

  /// The deadline passed.
  mutating func deadlineExceeded() -> Action {
    end(RPCError(.deadlineExceeded, "deadline exceeded"), reset: true)
  }

  /// The caller gave up (its task was cancelled, or it stopped reading).
  mutating func cancelled() -> Action {
    end(RPCError(.cancelled, "the call was cancelled"), reset: true)
  }

  /// The response broke the protocol (a second message on a unary call, a malformed message).
  mutating func protocolViolation(_ error: RPCError) -> Action {
    end(error, reset: true)
  }

  /// The call could not go on (its connection ended, or it could not start).
  mutating func failed(_ error: RPCError) -> Action {
    end(error, reset: false)
  }

  /// The call never reached the server (its connection was closing, or its HEADERS were not sent):
  /// it may be tried again.
  mutating func notSent(_ error: RPCError) -> Action {
    guard !isDone else { return .nothing }
    isRetryable = true
    return end(error, reset: false)
  }

  private mutating func end(_ error: RPCError, reset: Bool) -> Action {
    guard !isDone else { return .nothing }
    isDone = true
    return reset ? .finishAndReset(error) : .finish(error)
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
