import NIOCore

/// HTTP/2 keepalive as a value, the same for clients and servers: after `interval` without a byte
/// from the peer, send a PING; if it goes unanswered for `timeout`, the connection is dead.
struct Keepalive {
  let interval: TimeAmount?
  let timeout: TimeAmount
  private var lastActivity: NIODeadline
  private var pingSentAt: NIODeadline?

  init(interval: TimeAmount?, timeout: TimeAmount, now: NIODeadline) {
    self.interval = interval
    self.timeout = timeout
    lastActivity = now
  }

  /// Bytes arrived from the peer.
  mutating func received(now: NIODeadline) {
    lastActivity = now
  }

  /// The peer acknowledged our PING.
  mutating func pingAcknowledged() {
    pingSentAt = nil
  }

  enum Action: Equatable {
    case none
    /// Quiet for the interval: send a PING.
    case ping
    /// The PING went unanswered past the timeout: close.
    case unanswered
  }

  /// The timer fired.
  mutating func tick(now: NIODeadline) -> Action {
    if let sent = pingSentAt, now - sent > timeout { return .unanswered }
    if let interval, pingSentAt == nil, now - lastActivity > interval {
      pingSentAt = now
      lastActivity = now
      return .ping
    }
    return .none
  }
}
