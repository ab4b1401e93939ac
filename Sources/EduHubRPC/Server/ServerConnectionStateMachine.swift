import NIOCore

/// The management of one server connection as a value: keepalive, idleness, draining, the stream
/// reset budget, closing. `ServerConnectionHandler` feeds it what happens, with the time it happened
/// (so tests drive its timers with a clock of their own), and carries out the action it returns
/// against libnghttp2 and the channel.
///
/// ```
///  open ──(GOAWAY received / graceful shutdown / idle too long)──► draining ──(no stream left,
///    │                                                            nothing to write)──► closing
///    ├──(a keepalive ping unanswered past its timeout)───────────────────────────────► closing
///    └──(stream resets beyond the budget: GOAWAY ENHANCE_YOUR_CALM)──► draining, then closing
/// ```
struct ServerConnectionStateMachine {
  struct Limits {
    var keepaliveInterval: TimeAmount?
    var keepaliveTimeout: TimeAmount
    var idleTimeout: TimeAmount?
    /// Stream resets a client may send at once, and refilled per second.
    var resetBurst: Int
    var resetRatePerSecond: Int

    init(_ configuration: ServerConfiguration) {
      keepaliveInterval = configuration.keepaliveInterval
      keepaliveTimeout = configuration.keepaliveTimeout
      idleTimeout = configuration.idleTimeout
      resetBurst = configuration.streamResetBurst
      resetRatePerSecond = configuration.streamResetRatePerSecond
    }

    init(keepaliveInterval: TimeAmount?, keepaliveTimeout: TimeAmount, idleTimeout: TimeAmount?, resetBurst: Int, resetRatePerSecond: Int) {
      self.keepaliveInterval = keepaliveInterval
      self.keepaliveTimeout = keepaliveTimeout
      self.idleTimeout = idleTimeout
      self.resetBurst = resetBurst
      self.resetRatePerSecond = resetRatePerSecond
    }
  }

  let limits: Limits
  /// No new streams are taken; the connection closes once the open ones have finished.
  private(set) var draining = false
  /// The channel is being closed.
  private(set) var closing = false
  private var keepalive: Keepalive
  /// Since when no stream is open (nil: some are).
  private var idleSince: NIODeadline?
  /// Token bucket of stream resets the client may still send (rapid-reset protection).
  private var resetBudget: Double
  private var resetBudgetUpdated: NIODeadline

  init(limits: Limits, now: NIODeadline) {
    self.limits = limits
    keepalive = Keepalive(interval: limits.keepaliveInterval, timeout: limits.keepaliveTimeout, now: now)
    idleSince = now
    resetBudget = Double(limits.resetBurst)
    resetBudgetUpdated = now
  }

  /// How often the timer should call ``tick(now:)`` (nil: no timer is needed).
  var tickInterval: TimeAmount? {
    let intervals = [limits.keepaliveInterval, limits.idleTimeout].compactMap { $0 }
    guard let shortest = intervals.min() else { return nil }
    return .nanoseconds(max(shortest.nanoseconds / 4, 10_000_000))
  }

  // MARK: Events

  /// Bytes arrived from the client.
  mutating func received(now: NIODeadline) {
    keepalive.received(now: now)
  }

  /// A stream opened: the connection is not idle.
  mutating func streamOpened() {
    idleSince = nil
  }

  /// The last open stream closed; returns whether the connection should flush (a draining
  /// connection may close now).
  mutating func lastStreamClosed(now: NIODeadline) -> Bool {
    idleSince = now
    return draining
  }

  /// The client acknowledged our keepalive ping.
  mutating func pingAcknowledged() {
    keepalive.pingAcknowledged()
  }

  /// The client sent GOAWAY: it opens no new stream. Returns whether to flush now (no stream is
  /// open: the connection may close).
  mutating func goawayReceived(streamsOpen: Bool) -> Bool {
    draining = true
    return !streamsOpen
  }

  enum ResetAction: Equatable {
    /// Within the budget.
    case none
    /// Beyond it: GOAWAY ENHANCE_YOUR_CALM, abandon the open streams, close shortly.
    case enhanceYourCalm
  }

  /// The client reset a stream.
  mutating func streamReset(now: NIODeadline) -> ResetAction {
    guard !draining else { return .none }
    let elapsed = Double((now - resetBudgetUpdated).nanoseconds) / 1e9
    resetBudgetUpdated = now
    resetBudget = min(Double(limits.resetBurst), resetBudget + elapsed * Double(limits.resetRatePerSecond))
    resetBudget -= 1
    guard resetBudget < 0 else { return .none }
    draining = true
    return .enhanceYourCalm
  }

  enum TickAction: Equatable {
    case none
    /// A keepalive ping went unanswered: close now.
    case closeUnanswered
    /// No stream for longer than the idle timeout: drain (GOAWAY) and close.
    case drainIdle
    /// Quiet for the keepalive interval: send a ping.
    case ping
  }

  /// The timer fired.
  mutating func tick(now: NIODeadline) -> TickAction {
    guard !closing else { return .none }
    // An unanswered ping outranks idleness; idleness outranks sending a new ping.
    var probe = keepalive
    let alive = probe.tick(now: now)
    if alive == .unanswered { return .closeUnanswered }
    if let idleTimeout = limits.idleTimeout, let idleSince, now - idleSince > idleTimeout { return .drainIdle }
    keepalive = probe
    return alive == .ping ? .ping : .none
  }

  /// Stop taking new streams; returns whether to send GOAWAY (false: draining already).
  mutating func beginDrain() -> Bool {
    guard !draining else { return false }
    draining = true
    return true
  }

  /// Whether the connection should close after a flush: nghttp2 wants neither to read nor to write,
  /// or it drains and nothing is left.
  func closesAfterFlush(wantsRead: Bool, wantsWrite: Bool, streamsOpen: Bool) -> Bool {
    (!wantsRead && !wantsWrite) || (draining && !streamsOpen && !wantsWrite)
  }

  /// Close the channel; returns false when it is closing already.
  mutating func close() -> Bool {
    guard !closing else { return false }
    closing = true
    return true
  }
}
