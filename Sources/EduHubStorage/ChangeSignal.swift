import Synchronization

/// Tells waiting readers that a collection indexing its changes was written: bumped after the
/// writing transaction commits (never before, so a woken reader sees the write), so streams of
/// changes (work order watches, subscriptions) wake at once instead of polling.
///
/// Writes by another process on the same file do not bump it: waiters also wake on a timeout and
/// look for themselves.
public final class ChangeSignal: Sendable {
  private struct State {
    var generation: UInt64 = 0
    var nextWaiter: UInt64 = 0
    var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    /// Waiters whose timeout or cancellation came before they registered.
    var expired: Set<UInt64> = []
  }

  private let state = Mutex(State())

  public init() {}

  /// The number of bumps so far.
  public var generation: UInt64 { state.withLock { $0.generation } }

  /// Counts a commit and wakes every waiter.
  public func bump() {
    let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.generation &+= 1
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for waiter in woken { waiter.resume() }
  }

  /// Returns once the generation has passed `generation`, after `timeout`, or on cancellation.
  public func wait(after generation: UInt64, timeout: Duration) async {
    let id = state.withLock { state -> UInt64? in
      guard state.generation == generation else { return nil }
      state.nextWaiter &+= 1
      return state.nextWaiter
    }
    guard let id else { return }
    let timer = Task {
      guard (try? await Task.sleep(for: timeout)) != nil else { return }  // cancelled: the wait is over
      self.resume(id)
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { continuation in
        let registered = state.withLock { state -> Bool in
          // A bump, a timeout or a cancellation between the check above and here: do not wait.
          guard state.generation == generation, state.expired.remove(id) == nil else { return false }
          state.waiters[id] = continuation
          return true
        }
        if !registered { continuation.resume() }
      }
    } onCancel: {
      self.resume(id)
    }
    timer.cancel()
    state.withLock { _ = $0.expired.remove(id) }
  }

  private func resume(_ id: UInt64) {
    state.withLock { state -> CheckedContinuation<Void, Never>? in
      if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
      state.expired.insert(id)
      return nil
    }?.resume()
  }
}
