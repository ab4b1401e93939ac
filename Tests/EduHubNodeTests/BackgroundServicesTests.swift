import EduHubIdentity
import EduHubNode
import EduHubTestSupport
import EduHubWorkOrders
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// What a node repeats while it serves, run as ServiceLifecycle services.
@Suite("Background services")
struct BackgroundServicesTests {
  @Test("a failing sync is retried sooner, doubling from 5 s up to the interval, jittered by a tenth")
  func syncBackoff() {
    for (failures, base) in [(0, 600.0), (1, 5), (2, 10), (3, 20), (7, 320), (8, 600), (30, 600)] {
      let delay = SyncLoop.delay(after: failures, interval: 600)
      #expect(delay >= base * 0.9 && delay <= base * 1.1, "\(failures) failures: \(delay) s")
    }
  }

  @Test("the loops stop at a graceful shutdown, long before their next round, and leave the node usable")
  func stopAtShutdown() async throws {
    try await withWorld { world in
      var logger = Logger(label: "test.background")
      logger.logLevel = .warning
      let services = world.node.backgroundServices(sync: nil, syncEvery: nil, logger: logger)
      #expect(services.count == 3)  // tombstones, sweeps, audit pruning
      let group = ServiceGroup(services: services, gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
      let started = ContinuousClock.now
      try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await Task.sleep(for: .milliseconds(200))
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
      }
      // Two hours' and a minute's sleep were cut short (the bound leaves room for a first round
      // slowed by the rest of the suite running beside it; the next round is an hour away).
      #expect(ContinuousClock.now - started < .seconds(120))
      #expect(throws: Never.self) { _ = try world.node.workOrders.sweep() }
    }
  }
}
