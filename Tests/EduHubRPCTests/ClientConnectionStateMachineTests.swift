@testable import EduHubRPC
import NIOCore
import Testing

/// A client connection's management, driven without sockets or timers: the test's clock is `now`.
@Suite("Client connection state machine")
struct ClientConnectionStateMachineTests {
  typealias M = ClientConnectionStateMachine
  static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
  static func at(_ seconds: Double) -> NIODeadline { start + .nanoseconds(Int64(seconds * 1e9)) }

  @Test("calls wait for the server's SETTINGS, start after them, and are refused once the connection goes away")
  func readiness() {
    var connection = M(keepaliveInterval: nil, keepaliveTimeout: .seconds(20), now: Self.start)
    #expect(connection.tickInterval == nil)
    #expect(connection.start() == .wait)
    let first = connection.settingsReceived()
    #expect(first)  // the waiting calls start now
    #expect(connection.start() == .start)
    let again = connection.settingsReceived()
    #expect(!again)  // a later SETTINGS changes nothing
    let news = connection.becameUnusable()
    #expect(news && !connection.isUsable)
    let twice = connection.becameUnusable()
    #expect(!twice)  // the pool hears once
    #expect(connection.start() == .refuse)
  }

  @Test("a GOAWAY before the SETTINGS: the waiting calls do not start")
  func goawayFirst() {
    var connection = M(keepaliveInterval: nil, keepaliveTimeout: .seconds(20), now: Self.start)
    _ = connection.becameUnusable()
    let startWaiting = connection.settingsReceived()
    #expect(!startWaiting)
    #expect(connection.start() == .refuse)
  }

  @Test("keepalive: a ping after the interval of quiet, the connection closed when it goes unanswered")
  func keepalive() {
    var connection = M(keepaliveInterval: .seconds(10), keepaliveTimeout: .seconds(5), now: Self.start)
    #expect(connection.tickInterval == .milliseconds(2500))
    let quiet = connection.tick(now: Self.at(9))
    #expect(quiet == .none)
    let ping = connection.tick(now: Self.at(11))
    #expect(ping == .ping)
    let waiting = connection.tick(now: Self.at(14))
    #expect(waiting == .none)
    connection.pingAcknowledged()
    connection.received(now: Self.at(15))
    let busy = connection.tick(now: Self.at(24))
    #expect(busy == .none)  // bytes from the server count as activity
    let next = connection.tick(now: Self.at(26))
    #expect(next == .ping)
    let unanswered = connection.tick(now: Self.at(31.5))
    #expect(unanswered == .closeUnanswered)
    let closes = connection.close()
    #expect(closes)
    let after = connection.tick(now: Self.at(60))
    #expect(after == .none)  // a closing connection sends nothing more
  }

  @Test("the connection closes once nghttp2 wants neither to read nor to write, once")
  func closesAfterFlush() {
    var connection = M(keepaliveInterval: nil, keepaliveTimeout: .seconds(20), now: Self.start)
    let reading = connection.closesAfterFlush(wantsRead: true, wantsWrite: false)
    #expect(!reading)
    let writing = connection.closesAfterFlush(wantsRead: false, wantsWrite: true)
    #expect(!writing)
    let done = connection.closesAfterFlush(wantsRead: false, wantsWrite: false)
    #expect(done && connection.closing)
    let again = connection.closesAfterFlush(wantsRead: false, wantsWrite: false)
    #expect(!again)
    let close = connection.close()
    #expect(!close)
  }
}
