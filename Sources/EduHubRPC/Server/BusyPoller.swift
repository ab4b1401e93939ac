import NIOCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Adaptive busy polling for one event loop.
///
/// After the loop has answered a burst of calls, it does not go to sleep at once: for a short
/// budget it polls its connections' sockets without blocking, so the next request of a chatty client
/// is picked up the moment it lands instead of after a wake-up of a sleeping thread (on this kind
/// of virtual machine a cross-CPU wake-up costs tens of microseconds, more than a whole call).
///
/// NIO's loop cannot be told to spin, and re-enqueueing a task every turn would starve its I/O
/// (it drains its task queue before polling). So the spin is one task that returns as soon as a
/// socket is readable, work for the loop is posted by our own code (`wake`), or the budget is spent;
/// NIO then polls epoll as usual and finds the data ready. The CPU spent is at most the budget per
/// burst, and `sched_yield` in the spin lets a peer that shares the CPU run first.
final class BusyPoller: @unchecked Sendable {
  private let eventLoop: any EventLoop
  private let budget: TimeAmount
  /// Descriptors of the connections on this loop (touched only on the loop).
  private var descriptors: [Int32] = []
  private var scheduled = false
  /// Set by other threads before they post work to the loop, so the spin gives way to it.
  private let pendingWork = Atomic<Bool>(false)

  private init(eventLoop: any EventLoop, budget: TimeAmount) {
    self.eventLoop = eventLoop
    self.budget = budget
  }

  /// Adds a connection's descriptor (on the loop).
  func register(_ fd: Int32) {
    descriptors.append(fd)
  }

  /// Removes a connection's descriptor (on the loop), before it is closed.
  func unregister(_ fd: Int32) {
    descriptors.removeAll { $0 == fd }
  }

  /// Runs `body` on the loop, interrupting a spin so that it runs promptly.
  func execute(_ body: @escaping @Sendable () -> Void) {
    pendingWork.store(true, ordering: .releasing)
    eventLoop.execute(body)
  }

  /// Records that the loop answered calls (on the loop): spin for the budget before sleeping.
  @inline(__always)
  func activity() {
    guard !scheduled, !descriptors.isEmpty else { return }
    scheduled = true
    eventLoop.execute { self.spin() }
  }

  private func spin() {
    scheduled = false
    pendingWork.store(false, ordering: .relaxed)
    var polls = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    let deadline = NIODeadline.now() + budget
    while NIODeadline.now() < deadline {
      if poll(&polls, nfds_t(polls.count), 0) > 0 { return }
      if pendingWork.load(ordering: .acquiring) { return }
      sched_yield()
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
