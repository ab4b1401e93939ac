import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import EduHubRPC

#if canImport(Glibc)
  import Glibc
#endif

/// The spin's contract, driven on a loop of its own with a pipe as the "connection": what ends a
/// spin is counted, so these judge the mechanism, never the time it took.
///
/// Nothing here awaits a loop future while the loop may spin: awaiting a future that is not yet
/// complete makes NIO post the callback's registration to the loop, and NIO's own posts do not end
/// a spin (they wait out its budget, 30 s here).
@Suite("Busy poller", .timeLimit(.minutes(1)))
struct BusyPollerTests {
  /// A loop, a poller with a budget no test waits out, and a registered pipe with nothing to read.
  private func withPoller(_ body: (any EventLoop, BusyPoller, Int32) async throws -> Void) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let poller = BusyPoller(eventLoop: loop, budget: .seconds(30))
    var fds: [Int32] = [-1, -1]
    #expect(pipe(&fds) == 0)
    let readEnd = fds[0]
    try await loop.submit { poller.register(readEnd) }.get()
    try await body(loop, poller, fds[1])
    try await loop.submit { poller.unregister(readEnd) }.get()
    close(fds[0])
    close(fds[1])
    try await group.shutdownGracefully()
  }

  @Test("work posted after a spin was queued, before it started, ends that spin")
  func workQueuedBehindSpin() async throws {
    try await withPoller { loop, poller, _ in
      // On the loop: queue the spin, then the work behind it. A flag cleared when the spin starts
      // lost this work, and the spin then ran its whole budget.
      loop.execute {
        poller.activity()
        poller.execute {}
      }
      try await spinsEnded(poller, 1)
      #expect(poller.statistics == stats(spins: 1, work: 1))
    }
  }

  @Test("work posted from another thread while the loop spins ends the spin")
  func workWhileSpinning() async throws {
    try await withPoller { loop, poller, _ in
      loop.execute { poller.activity() }
      try await spinning(poller)
      poller.execute {}
      try await spinsEnded(poller, 1)
      #expect(poller.statistics == stats(spins: 1, work: 1))
    }
  }

  @Test("a readable socket ends the spin")
  func socket() async throws {
    try await withPoller { loop, poller, writeEnd in
      loop.execute { poller.activity() }
      try await spinning(poller)
      var byte: UInt8 = 1
      #expect(write(writeEnd, &byte, 1) == 1)
      try await spinsEnded(poller, 1)
      #expect(poller.statistics == stats(spins: 1, socket: 1))
    }
  }

  @Test("with nothing to do, a spin ends by its budget; with no connection none starts")
  func budgetAndNothingToPoll() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let idle = BusyPoller(eventLoop: loop, budget: .seconds(30))
    try await loop.submit { idle.activity() }.get()
    try await loop.submit {}.get()
    #expect(idle.statistics.spins == 0)

    let poller = BusyPoller(eventLoop: loop, budget: .milliseconds(1))
    var fds: [Int32] = [-1, -1]
    #expect(pipe(&fds) == 0)
    let readEnd = fds[0]
    loop.execute {
      poller.register(readEnd)
      poller.activity()
    }
    try await spinsEnded(poller, 1)
    #expect(poller.statistics == stats(spins: 1, budget: 1))
    close(fds[0])
    close(fds[1])
    try await group.shutdownGracefully()
  }

  @Test("a stopped poller ends its spin and starts no other")
  func stop() async throws {
    try await withPoller { loop, poller, _ in
      loop.execute { poller.activity() }
      try await spinning(poller)
      poller.stop()
      try await spinsEnded(poller, 1)
      try await loop.submit { poller.activity() }.get()
      try await loop.submit {}.get()
      #expect(poller.statistics == stats(spins: 1, work: 1))
    }
  }

  /// Returns once the loop is inside a spin.
  private func spinning(_ poller: BusyPoller) async throws {
    while !poller.spinning.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(1)) }
  }

  /// Returns once `count` spins have ended.
  private func spinsEnded(_ poller: BusyPoller, _ count: Int) async throws {
    while poller.statistics.spins < count { try await Task.sleep(for: .milliseconds(1)) }
  }

  private func stats(spins: Int, socket: Int = 0, work: Int = 0, budget: Int = 0) -> BusyPollStatistics {
    var s = BusyPollStatistics()
    s.spins = spins
    s.endedBySocket = socket
    s.endedByWork = work
    s.endedByBudget = budget
    return s
  }
}
