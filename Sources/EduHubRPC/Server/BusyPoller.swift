import NIOConcurrencyHelpers
import NIOCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Adaptive busy polling of an event loop: after I/O, the loop keeps polling its sockets without
/// sleeping for a short budget, so the next request of a chatty client is picked up without the
/// cost of waking a sleeping thread (on this kind of virtual machine a cross-CPU wake-up costs
/// tens of microseconds, more than a whole call).
///
/// It works through NIO's public API: while the budget lasts, a no-op task is re-enqueued each loop
/// turn, which makes NIO poll epoll with a zero timeout instead of blocking. An idle loop sleeps as
/// usual; the CPU spent is at most the budget per burst of activity.
final class BusyPoller: @unchecked Sendable {
  private let eventLoop: any EventLoop
  private let budget: TimeAmount
  private var spinUntil = NIODeadline.uptimeNanoseconds(0)
  private var spinning = false

  private init(eventLoop: any EventLoop, budget: TimeAmount) {
    self.eventLoop = eventLoop
    self.budget = budget
  }

  /// Records activity on the loop (call on the loop).
  @inline(__always)
  func activity() {
    spinUntil = .now() + budget
    if !spinning {
      spinning = true
      eventLoop.execute { self.spin() }
    }
  }

  private func spin() {
    if NIODeadline.now() < spinUntil {
      // Yield the CPU each turn: a peer woken onto this CPU (the kernel places a wakee near its
      // waker) runs at once instead of waiting out our time slice.
      sched_yield()
      eventLoop.execute { self.spin() }
    } else {
      spinning = false
    }
  }

  private static let pollers = Mutex<[ObjectIdentifier: BusyPoller]>([:])

  /// The poller of `eventLoop` (one per loop, shared by its connections).
  static func poller(for eventLoop: any EventLoop, budget: TimeAmount) -> BusyPoller {
    pollers.withLock { pollers in
      let key = ObjectIdentifier(eventLoop)
      if let existing = pollers[key] { return existing }
      let poller = BusyPoller(eventLoop: eventLoop, budget: budget)
      pollers[key] = poller
      return poller
    }
  }
}
