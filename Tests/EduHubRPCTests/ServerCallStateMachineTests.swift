@testable import EduHubRPC
import Testing

/// The server call's response side, driven without sockets through every transition.
@Suite("Server call state machine")
struct ServerCallStateMachineTests {
  typealias M = ServerCallStateMachine
  static let deadline = RPCError(.deadlineExceeded, "deadline exceeded")

  @Test("unary: response headers, the message's data, OK trailers; nothing after")
  func unary() {
    var call = M()
    let r1 = call.respond()
    #expect(r1 == .submitHeaders)
    #expect(call.response == .started && call.statusDecided && call.dataEnds)
    let r2 = call.endOfData()
    #expect(r2 == .submitTrailers(nil))
    #expect(call.response == .done && !call.isOpen)
    let r3 = call.respond()
    #expect(r3 == .nothing)
    let r4 = call.finish(Self.deadline, outputPending: false)
    #expect(r4 == nil)
    let r5 = call.fail(Self.deadline)
    #expect(r5 == .cancelOnly)
    let r6 = call.closed(errorCode: 0)
    #expect(r6 == false)  // ended cleanly: nothing to cancel
    let r7 = call.closed(errorCode: 0)
    #expect(r7 == nil)  // once
  }

  @Test("a status with nothing sent and nothing pending is a trailers-only response")
  func trailersOnly() {
    var call = M()
    let denied = RPCError(.permissionDenied, "no")
    let r8 = call.finish(denied, outputPending: false)
    #expect(r8 == .trailersOnly(denied, httpStatus: "200"))
    #expect(call.response == .done && call.status == denied)
    var ok = M()
    let r9 = ok.finish(nil, outputPending: false)
    #expect(r9 == .trailersOnly(RPCError(.ok, ""), httpStatus: "200"))
  }

  @Test("a bad request fails before anything is sent, with its HTTP status")
  func failEarly() {
    var call = M()
    let wrongType = RPCError(.internalError, "content-type must be application/grpc")
    let r10 = call.fail(wrongType, httpStatus: "415")
    #expect(r10 == .finish(.trailersOnly(wrongType, httpStatus: "415")))
    #expect(!call.isOpen && call.status == wrongType)
    let r11 = call.outputAvailable()
    #expect(r11 == .nothing)
  }

  @Test("server streaming: output starts the response, a deferred provider is resumed, the status waits for the data to drain")
  func streaming() {
    var call = M()
    let r12 = call.outputAvailable()
    #expect(r12 == .submitHeaders)
    let r13 = call.outputAvailable()
    #expect(r13 == .nothing)  // nghttp2 is not waiting
    call.deferData()
    let r14 = call.outputAvailable()
    #expect(r14 == .resumeData)
    #expect(!call.dataEnds)  // the handler has not finished: the queue running dry is not the end
    call.deferData()
    let r15 = call.finish(nil, outputPending: false)
    #expect(r15 == .resumeData)  // waiting for data: wake it to end
    #expect(call.dataEnds)
    let r16 = call.endOfData()
    #expect(r16 == .submitTrailers(nil))
  }

  @Test("a status with messages still queued starts the response; the trailers follow the data")
  func statusAfterMessages() {
    var call = M()
    let failed = RPCError(.unavailable, "gone")
    let r17 = call.finish(failed, outputPending: true)
    #expect(r17 == .submitHeaders)
    #expect(call.response == .started && call.dataEnds)
    let r18 = call.endOfData()
    #expect(r18 == .submitTrailers(failed))
  }

  @Test("the first status decided is the call's: a handler returning OK after its deadline does not turn DEADLINE_EXCEEDED into OK")
  func firstStatusWins() {
    var call = M()
    let r19 = call.outputAvailable()
    #expect(r19 == .submitHeaders)
    let r20 = call.fail(Self.deadline)
    #expect(r20 == .finish(.nothing))
    let r21 = call.finish(nil, outputPending: false)
    #expect(r21 == nil)
    #expect(call.status == Self.deadline)
    let r22 = call.endOfData()
    #expect(r22 == .submitTrailers(Self.deadline))
    // Before anything was sent, the deadline is a trailers-only response; the late OK changes nothing.
    var early = M()
    let r23 = early.fail(Self.deadline)
    #expect(r23 == .finish(.trailersOnly(Self.deadline, httpStatus: "200")))
    let r24 = early.respond()
    #expect(r24 == .nothing)
    let r25 = early.finish(nil, outputPending: false)
    #expect(r25 == nil)
  }

  @Test("plain HTTP: the body ends the stream, without trailers")
  func plainHTTP() {
    var call = M()
    let r26 = call.respondHTTP()
    #expect(r26)
    let r27 = call.respondHTTP()
    #expect(!r27)
    let r28 = call.endOfData()
    #expect(r28 == .endStream)
    #expect(!call.isOpen)
  }

  @Test("a closed stream cancels a handler that had not finished, or finished with an error, and sends nothing more")
  func closing() {
    var running = M()
    let r29 = running.outputAvailable()
    #expect(r29 == .submitHeaders)
    let r30 = running.closed(errorCode: 8)
    #expect(r30 == true)  // CANCEL
    let r31 = running.outputAvailable()
    let r32 = running.finish(nil, outputPending: false)
    #expect(r31 == .nothing && r32 == nil)
    let r33 = running.fail(Self.deadline)
    #expect(r33 == .cancelOnly)
    var reset = M()
    let r34 = reset.respond()
    #expect(r34 == .submitHeaders)
    _ = reset.endOfData()
    let r35 = reset.closed(errorCode: 2)
    #expect(r35 == true)  // done, but reset with an error
    var idle = M()
    let r36 = idle.closed(errorCode: 0)
    #expect(r36 == true)  // the client went away before any response
    let r37 = idle.respond()
    let r38 = idle.respondHTTP()
    #expect(r37 == .nothing && !r38)
  }
}
