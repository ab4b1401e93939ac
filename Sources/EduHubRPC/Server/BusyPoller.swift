import NIOCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// What ended a busy poller's spins so far: the evidence that a spin gives way to work rather
/// than waiting out its budget (tests judge this, not wall-clock time).
public struct BusyPollStatistics: Sendable, Equatable {
  /// Spins started.
  public var spins = 0
  /// Ended because a connection's socket became readable.
  public var endedBySocket = 0
  /// Ended because work was posted to the loop (an async handler's answer) or the server stopped.
  public var endedByWork = 0
  /// Ended because the budget ran out with nothing to do.
  public var endedByBudget = 0

  public init() {}

  static func + (a: Self, b: Self) -> Self {
    var sum = a
    sum.spins += b.spins
    sum.endedBySocket += b.endedBySocket
    sum.endedByWork += b.endedByWork
    sum.endedByBudget += b.endedByBudget
    return sum
  }
}

/// Adaptive busy polling for one event loop.
///
/// After the loop has answered a burst of calls, it does not go to sleep at once: for a short
/// budget it polls its connections' sockets without blocking, so the next request of a chatty client
/// is picked up the moment it lands instead of after a wake-up of a sleeping thread (on this kind
/// of virtual machine a cross-CPU wake-up costs tens of microseconds, more than a whole call).
///
/// NIO's loop cannot be told to spin, and re-enqueueing a task every turn would starve its I/O
/// (it drains its task queue before polling). So the spin is one task that returns as soon as a
/// socket is readable, work posted by our own code (`execute`) is waiting, or the budget is spent;
/// NIO then polls epoll as usual and finds the data ready. The CPU spent is at most the budget per
/// burst, and `sched_yield` in the spin lets a peer that shares the CPU run first.
///
/// Work waiting is a count, not a flag: `execute` counts a body up before it is queued and the body
/// counts itself down when it runs, so a body queued behind a spin that has not started yet still
/// ends that spin (a flag cleared at the spin's start lost exactly that body, which then waited out
/// the whole budget). Work that NIO itself posts (timers, bootstraps) does not end a spin; it waits
/// at most the budget.
final class BusyPoller: @unchecked Sendable {
  private let eventLoop: any EventLoop
  private let budget: TimeAmount
  /// Descriptors of the connections on this loop (touched only on the loop).
  private var descriptors: [Int32] = []
  private var scheduled = false
  /// Bodies posted through `execute` that have not run yet.
  private let waiting = Atomic<Int>(0)
  private let counters = Mutex(BusyPollStatistics())
  /// Set once the server shuts down: no spin starts again and a running one ends.
  private let stopped = Atomic<Bool>(false)
  /// True while a spin runs (for tests that must post work into a running spin).
  let spinning = Atomic<Bool>(false)

  init(eventLoop: any EventLoop, budget: TimeAmount) {
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

  /// Runs `body` on the loop, ending a spin (running or queued) so that it runs promptly.
  func execute(_ body: @escaping @Sendable () -> Void) {
    waiting.add(1, ordering: .releasing)
    eventLoop.execute {
      self.waiting.subtract(1, ordering: .relaxed)
      body()
    }
  }

  /// Records that the loop answered calls (on the loop): spin for the budget before sleeping.
  @inline(__always)
  func activity() {
    guard !scheduled, !descriptors.isEmpty, !stopped.load(ordering: .relaxed) else { return }
    scheduled = true
    eventLoop.execute { self.spin() }
  }

  /// Stops spinning for good (shutdown: a drain needs no low latency, and must not wait out a budget).
  func stop() {
    stopped.store(true, ordering: .relaxed)
  }

  /// What ended the spins so far.
  var statistics: BusyPollStatistics { counters.withLock { $0 } }

  private enum End { case socket, work, budget }

  private func spin() {
    scheduled = false
    spinning.store(true, ordering: .relaxed)
    defer { spinning.store(false, ordering: .relaxed) }
    var polls = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    let deadline = NIODeadline.now() + budget
    var end = End.budget
    // Work and sockets are looked at before the clock, so a spin whose thread was descheduled past
    // its deadline still reports (and yields to) what arrived meanwhile.
    while true {
      if waiting.load(ordering: .acquiring) > 0 || stopped.load(ordering: .relaxed) {
        end = .work
        break
      }
      if poll(&polls, nfds_t(polls.count), 0) > 0 {
        end = .socket
        break
      }
      if NIODeadline.now() >= deadline { break }
      sched_yield()
    }
    counters.withLock { counters in
      counters.spins += 1
      switch end {
      case .socket: counters.endedBySocket += 1
      case .work: counters.endedByWork += 1
      case .budget: counters.endedByBudget += 1
      }
    }
  }
}

/// The busy pollers of one server, one per event loop it serves on (a server's own, so that its
/// budget is its own and a loop is not kept alive by a table that outlives the server).
final class BusyPollers: Sendable {
  private let pollers = Mutex<[ObjectIdentifier: BusyPoller]>([:])

  /// The poller of `eventLoop`, made on first use.
  func poller(for eventLoop: any EventLoop, budget: TimeAmount) -> BusyPoller {
    pollers.withLock { pollers in
      let key = ObjectIdentifier(eventLoop)
      if let existing = pollers[key] { return existing }
      let poller = BusyPoller(eventLoop: eventLoop, budget: budget)
      pollers[key] = poller
      return poller
    }
  }

  /// Ends every spin now and starts no new one (shutdown must not wait for one).
  func stopAll() {
    for poller in pollers.withLock({ Array($0.values) }) { poller.stop() }
  }

  var statistics: BusyPollStatistics {
    pollers.withLock { $0.values.reduce(BusyPollStatistics()) { $0 + $1.statistics } }
  }
}
