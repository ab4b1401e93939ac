import CEduHubNghttp2
@testable import EduHubRPC
import Testing

/// The client call's status side, driven without sockets through every way a call ends.
@Suite("Client call state machine")
struct ClientCallStateMachineTests {
  typealias M = ClientCallStateMachine
  static let none = RPCMetadata()

  /// A call that received headers (`:status 200`), then trailers with `grpcStatus` (nil: headers only).
  static func answered(_ grpcStatus: String?, message: String? = nil) -> M {
    var call = M()
    call.httpStatus("200")
    call.headerBlockEnded()
    #expect(call.inTrailers)
    guard let grpcStatus else { return call }
    call.grpcStatus(grpcStatus)
    if let message { call.grpcMessage(message) }
    call.headerBlockEnded()
    return call
  }

  @Test("OK trailers end the call without an error; nothing decides it again")
  func ok() {
    var call = Self.answered("0")
    #expect(!call.isTrailersOnly)
    let end = call.responseEnded(trailers: Self.none, endedInsideMessage: false)
    #expect(end == .finish(nil))
    #expect(call.isDone && !call.isRetryable)
    // What comes after the ending changes nothing: a late deadline, a cancel, the close, a failure.
    let late = call.deadlineExceeded()
    #expect(late == .nothing)
    let cancel = call.cancelled()
    #expect(cancel == .nothing)
    let close = call.closed(errorCode: NGHTTP2_NO_ERROR.rawValue, trailers: Self.none, endedInsideMessage: false)
    #expect(close == .nothing)
    let lost = call.failed(RPCError(.unavailable, "connection closed"))
    #expect(lost == .nothing)
  }

  @Test("an error status carries its message and the trailers; a trailers-only answer is recognised")
  func errorStatus() {
    var trailers = RPCMetadata()
    trailers.add("retry-after", "3")
    var call = Self.answered("7", message: "你没有权限")
    let end = call.responseEnded(trailers: trailers, endedInsideMessage: false)
    #expect(end == .finish(RPCError(.permissionDenied, "你没有权限", trailers: trailers)))
    // One header block with a grpc-status: trailers only.
    var only = M()
    only.httpStatus("200")
    only.grpcStatus("16")
    #expect(!only.inTrailers)
    only.headerBlockEnded()
    #expect(only.isTrailersOnly)
    let denied = only.responseEnded(trailers: Self.none, endedInsideMessage: false)
    #expect(denied == .finish(RPCError(.unauthenticated, "")))
    // A grpc-status that is not a number is UNKNOWN.
    var garbled = Self.answered("x7")
    let unknown = garbled.responseEnded(trailers: Self.none, endedInsideMessage: false)
    #expect(unknown == .finish(RPCError(.unknown, "")))
  }

  @Test("no grpc-status: the HTTP status maps to a code; a 200 without one is INTERNAL; OK cut inside a message is INTERNAL")
  func withoutStatus() {
    for (http, code) in [("404", RPCError.Code.unimplemented), ("503", .unavailable), ("401", .unauthenticated), ("418", .unknown)] {
      var call = M()
      call.httpStatus(http)
      call.headerBlockEnded()
      let end = call.responseEnded(trailers: Self.none, endedInsideMessage: false)
      #expect(end == .finish(RPCError(code, "HTTP status \(http)")))
    }
    var bare = Self.answered(nil)
    let noStatus = bare.responseEnded(trailers: Self.none, endedInsideMessage: false)
    #expect(noStatus == .finish(RPCError(.internalError, "the response ended without a grpc-status")))
    var cut = Self.answered("0")
    let inside = cut.responseEnded(trailers: Self.none, endedInsideMessage: true)
    #expect(inside == .finish(RPCError(.internalError, "the response ended inside a message")))
    // An error status wins over the cut message: the server said why.
    var cutError = Self.answered("13", message: "boom")
    let error = cutError.responseEnded(trailers: Self.none, endedInsideMessage: true)
    #expect(error == .finish(RPCError(.internalError, "boom")))
  }

  @Test("stream resets map to codes; only a refused stream may be retried; a clean close is the response's end")
  func resets() {
    let cases: [(UInt32, RPCError.Code, Bool)] = [
      (NGHTTP2_CANCEL.rawValue, .cancelled, false),
      (NGHTTP2_REFUSED_STREAM.rawValue, .unavailable, true),
      (NGHTTP2_ENHANCE_YOUR_CALM.rawValue, .resourceExhausted, false),
      (NGHTTP2_PROTOCOL_ERROR.rawValue, .internalError, false),
    ]
    for (code, expected, retryable) in cases {
      var call = M()
      let end = call.closed(errorCode: code, trailers: Self.none, endedInsideMessage: false)
      guard case .finish(let status?) = end else {
        Issue.record("reset \(code) did not end the call with an error: \(end)")
        continue
      }
      #expect(status.code == expected)
      #expect(call.isRetryable == retryable)
    }
    var clean = Self.answered("0")
    let closed = clean.closed(errorCode: NGHTTP2_NO_ERROR.rawValue, trailers: Self.none, endedInsideMessage: false)
    #expect(closed == .finish(nil))
  }

  @Test("the deadline, a cancel and a broken response reset the stream; a lost connection does not; the first ending wins")
  func localEndings() {
    var timed = Self.answered(nil)
    let deadline = timed.deadlineExceeded()
    #expect(deadline == .finishAndReset(RPCError(.deadlineExceeded, "deadline exceeded")))
    // The trailers that arrive just after change nothing.
    let trailers = timed.responseEnded(trailers: Self.none, endedInsideMessage: false)
    #expect(trailers == .nothing)

    var cancelled = M()
    let cancel = cancelled.cancelled()
    #expect(cancel == .finishAndReset(RPCError(.cancelled, "the call was cancelled")))

    var broken = Self.answered(nil)
    let twice = RPCError(.internalError, "two messages")
    let violation = broken.protocolViolation(twice)
    #expect(violation == .finishAndReset(twice))

    var lost = Self.answered(nil)
    let closed = RPCError(.unavailable, "connection closed")
    let failure = lost.failed(closed)
    #expect(failure == .finish(closed))
    #expect(!lost.isRetryable)
  }

  @Test("a call that was never sent may be retried, unless it had ended already")
  func notSent() {
    var call = M()
    let closing = RPCError(.unavailable, "connection is closing")
    let end = call.notSent(closing)
    #expect(end == .finish(closing))
    #expect(call.isRetryable)
    var ended = M()
    _ = ended.cancelled()
    let late = ended.notSent(closing)
    #expect(late == .nothing)
    #expect(!ended.isRetryable)
  }
}
