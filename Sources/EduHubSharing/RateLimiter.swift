import Synchronization

/// Token buckets per grant (calls a second, with a burst of one second's worth) and calls counted
/// per grant and day against its quota. Kept in memory per node: a grant used on two nodes gets
/// its rate on each.
final class RateLimiter: Sendable {
  private struct Bucket {
    var tokens: Double
    var updated: ContinuousClock.Instant
  }

  private struct State {
    var buckets: [String: Bucket] = [:]
    /// Calls by grant on `day`.
    var day = ""
    var calls: [String: Int64] = [:]
  }

  private let state = Mutex(State())

  /// What taking a call found.
  enum Outcome: Equatable {
    case allowed
    /// Over the rate: try again after this many seconds (rounded up, at least 1).
    case limited(retryAfter: Int)
    /// The day's quota is used up.
    case quotaUsed
  }

  /// Takes one call of `grant` at `rate` a second and `quota` a day.
  /// - Parameter counted: the calls of the grant already logged today, read (outside the lock) only
  ///   when the limiter has not counted the grant today yet.
  func take(
    _ grant: String, rate: Int32, quota: Int64, day: String, now: ContinuousClock.Instant = .now, counted: () -> Int64
  ) -> Outcome {
    let known = state.withLock { $0.day == day && $0.calls[grant] != nil }
    let logged = known ? 0 : counted()
    return state.withLock { state in
      if state.day != day {
        state.day = day
        state.calls.removeAll(keepingCapacity: true)
      }
      let used = state.calls[grant] ?? logged
      guard used < quota else {
        state.calls[grant] = used
        return .quotaUsed
      }
      let capacity = Double(max(rate, 1))
      var bucket = state.buckets[grant] ?? Bucket(tokens: capacity, updated: now)
      let elapsed = now - bucket.updated
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      bucket.tokens = min(capacity, bucket.tokens + seconds * capacity)
      bucket.updated = now
      guard bucket.tokens >= 1 else {
        state.buckets[grant] = bucket
        state.calls[grant] = used
        return .limited(retryAfter: max(1, Int(((1 - bucket.tokens) / capacity).rounded(.up))))
      }
      bucket.tokens -= 1
      state.buckets[grant] = bucket
      state.calls[grant] = used + 1
      return .allowed
    }
  }
}
