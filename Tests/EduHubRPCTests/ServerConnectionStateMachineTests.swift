@testable import EduHubRPC
import NIOCore
import Testing

/// A server connection's management, driven without sockets or timers: the test's clock is `now`.
@Suite("Server connection state machine")
struct ServerConnectionStateMachineTests {
  typealias M = ServerConnectionStateMachine
  static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
  static func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }
  static let limits = M.Limits(
    keepaliveInterval: .seconds(120), keepaliveTimeout: .seconds(20), idleTimeout: .seconds(1800), resetBurst: 3, resetRatePerSecond: 1)

  @Test("keepalive: a ping after the interval of quiet, none while one is out, the connection closed when it goes unanswered")
  func keepalive() {
    var connection = M(limits: Self.limits, now: Self.start)
    connection.streamOpened()  // busy, so idleness plays no part
    let quiet = connection.tick(now: Self.at(60))
    #expect(quiet == .none)
    let ping = connection.tick(now: Self.at(121))
    #expect(ping == .ping)
    let waiting = connection.tick(now: Self.at(130))
    #expect(waiting == .none)
    connection.pingAcknowledged()
    let next = connection.tick(now: Self.at(200))
    #expect(next == .none)  // the ping counted as activity
    let again = connection.tick(now: Self.at(242))
    #expect(again == .ping)
    let unanswered = connection.tick(now: Self.at(263))
    #expect(unanswered == .closeUnanswered)
    // Bytes from the client count as activity too.
    var busy = M(limits: Self.limits, now: Self.start)
    busy.streamOpened()
    busy.received(now: Self.at(100))
    let notYet = busy.tick(now: Self.at(200))
    #expect(notYet == .none)
  }

  @Test("idle: no stream for longer than the idle timeout drains the connection; a stream resets the clock")
  func idle() {
    var connection = M(limits: Self.limits, now: Self.start)
    connection.received(now: Self.at(1799))  // quiet enough for no ping yet
    connection.pingAcknowledged()
    let early = connection.tick(now: Self.at(1700))
    #expect(early == .none)
    connection.streamOpened()
    let open = connection.tick(now: Self.at(1801))
    #expect(open != .drainIdle)
    let drainNow = connection.lastStreamClosed(now: Self.at(1900))
    #expect(!drainNow)
    connection.pingAcknowledged()
    connection.received(now: Self.at(3650))
    let idle = connection.tick(now: Self.at(3701))
    #expect(idle == .drainIdle)
    let c1 = connection.beginDrain()
    #expect(c1)
    let c2 = connection.beginDrain()
    #expect(!c2)  // one GOAWAY
  }

  @Test("draining: after GOAWAY the connection closes once no stream is open and nothing is left to write")
  func draining() {
    var connection = M(limits: Self.limits, now: Self.start)
    connection.streamOpened()
    let flushNow = connection.goawayReceived(streamsOpen: true)
    #expect(!flushNow && connection.draining)
    #expect(!connection.closesAfterFlush(wantsRead: true, wantsWrite: false, streamsOpen: true))
    let flush = connection.lastStreamClosed(now: Self.at(1))
    #expect(flush)
    #expect(!connection.closesAfterFlush(wantsRead: true, wantsWrite: true, streamsOpen: false))
    #expect(connection.closesAfterFlush(wantsRead: true, wantsWrite: false, streamsOpen: false))
    // Not draining: open while nghttp2 wants to read or write.
    let open = M(limits: Self.limits, now: Self.start)
    #expect(!open.closesAfterFlush(wantsRead: true, wantsWrite: false, streamsOpen: false))
    #expect(open.closesAfterFlush(wantsRead: false, wantsWrite: false, streamsOpen: false))
  }

  @Test("stream resets: a burst within the budget passes, one more is ENHANCE_YOUR_CALM; the budget refills with time")
  func resetBudget() {
    var connection = M(limits: Self.limits, now: Self.start)
    for _ in 0..<3 {
      let action = connection.streamReset(now: Self.start)
      #expect(action == .none)
    }
    var refilled = connection
    let fourth = connection.streamReset(now: Self.start)
    #expect(fourth == .enhanceYourCalm && connection.draining)
    let after = connection.streamReset(now: Self.at(10))
    #expect(after == .none)  // draining already: counted once
    // Two seconds later two more fit (one a second).
    let first = refilled.streamReset(now: Self.at(2))
    let second = refilled.streamReset(now: Self.at(2))
    let third = refilled.streamReset(now: Self.at(2))
    #expect(first == .none && second == .none && third == .enhanceYourCalm)
  }

  @Test("closing happens once; a closing connection's timer does nothing; the tick is a quarter of the shortest interval")
  func closing() {
    var connection = M(limits: Self.limits, now: Self.start)
    let c3 = connection.close()
    #expect(c3)
    let c4 = connection.close()
    #expect(!c4)
    let tick = connection.tick(now: Self.at(10_000))
    #expect(tick == .none)
    #expect(M(limits: Self.limits, now: Self.start).tickInterval == .seconds(30))
    let untimed = M.Limits(keepaliveInterval: nil, keepaliveTimeout: .seconds(20), idleTimeout: nil, resetBurst: 1, resetRatePerSecond: 1)
    #expect(M(limits: untimed, now: Self.start).tickInterval == nil)
  }
}
