import NIOCore

/// The management of one client connection as a value: whether calls may start (the server's
/// SETTINGS came, no GOAWAY, not closing), keepalive, closing. `ClientConnectionHandler` feeds it
/// what happens, with the time it happened (so tests drive its timer with a clock of their own),
/// and carries out the action it returns.
///
/// ```
///  connecting ──(server SETTINGS: start the calls that waited)──► ready
///  connecting, ready ──(GOAWAY / close / failure: unusable, new calls refused)──► closing
///  ready ──(a keepalive ping unanswered past its timeout)──► closing
/// ```
struct ClientConnectionStateMachine {
  /// The server's SETTINGS arrived: its limits are known, calls may open streams.
  private(set) var ready = false
  /// New calls may use the connection (no GOAWAY, not closing).
  private(set) var isUsable = true
  /// The channel is being closed.
  private(set) var closing = false
  private var keepalive: Keepalive

  init(keepaliveInterval: TimeAmount?, keepaliveTimeout: TimeAmount, now: NIODeadline) {
    keepalive = Keepalive(interval: keepaliveInterval, timeout: keepaliveTimeout, now: now)
  }

  /// How often the timer should call ``tick(now:)`` (nil: no timer is needed).
  var tickInterval: TimeAmount? {
    keepalive.interval.map { .nanoseconds(max($0.nanoseconds / 4, 10_000_000)) }
  }

  enum StartAction: Equatable {
    /// Open the call's stream now.
    case start
    /// Hold the call until the server's SETTINGS arrive (so none is refused over its stream cap).
    case wait
    /// Fail the call as never sent: the connection is going away.
    case refuse
  }

  /// A call asks to start.
  func start() -> StartAction {
    guard isUsable, !closing else { return .refuse }
    return ready ? .start : .wait
  }

  /// The server's SETTINGS (not an acknowledgement) arrived; returns whether the calls that waited
  /// are to start now (the first time only).
  mutating func settingsReceived() -> Bool {
    guard !ready else { return false }
    ready = true
    return isUsable && !closing
  }

  /// Bytes arrived from the server.
  mutating func received(now: NIODeadline) {
    keepalive.received(now: now)
  }

  /// The server acknowledged our PING.
  mutating func pingAcknowledged() {
    keepalive.pingAcknowledged()
  }

  /// The connection can take no new call (GOAWAY received, closing, failed); returns whether this
  /// is news (to tell the pool once).
  mutating func becameUnusable() -> Bool {
    guard isUsable else { return false }
    isUsable = false
    return true
  }

  enum TickAction: Equatable {
    case none
    /// Quiet for the keepalive interval: send a PING.
    case ping
    /// The PING went unanswered: fail the calls and close.
    case closeUnanswered
  }

  /// The timer fired.
  mutating func tick(now: NIODeadline) -> TickAction {
    guard !closing else { return .none }
    switch keepalive.tick(now: now) {
    case .none: return .none
    case .ping: return .ping
    case .unanswered: return .closeUnanswered
    }
  }

  /// Whether the connection should close after a flush: nghttp2 wants neither to read nor to write
  /// (after GOAWAY both ways, with every stream done). Closing makes it unusable.
  mutating func closesAfterFlush(wantsRead: Bool, wantsWrite: Bool) -> Bool {
    guard !closing, !wantsRead, !wantsWrite else { return false }
    closing = true
    return true
  }

  /// Close the channel; returns false when it is closing already.
  mutating func close() -> Bool {
    guard !closing else { return false }
    closing = true
    return true
  }
}
