import EduHubIdentity
import EduHubReplication
import EduHubSharing
import EduHubSync
import EduHubWorkOrders
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

// What a node repeats while it serves, each a ServiceLifecycle service run beside the server in one
// ServiceGroup: at SIGTERM or SIGINT they stop first (a group shuts its services down in reverse
// order), then the server drains its calls, and only then does the database close. Their
// transactions run on the storage layer's threads, like the RPCs'.

/// Syncs with the upstream now and then every `interval` (±10%); after failures, retries sooner
/// with a doubling, jittered backoff (5 s, 10 s, … up to the interval), while the node serves from
/// its replica.
public struct SyncLoop: Service {
  let client: SyncClient
  let interval: Double
  let logger: Logger
  let metrics: SyncMetrics?

  /// - Parameter interval: seconds between syncs when they succeed.
  public init(client: SyncClient, interval: Double, metrics: NodeMetrics? = nil, logger: Logger) {
    self.client = client
    self.interval = interval
    self.metrics = metrics?.sync
    self.logger = logger
  }

  public func run() async throws {
    try? await cancelWhenGracefulShutdown {
      var failures = 0
      while !Task.isCancelled {
        do {
          let report = try await client.syncOnce()
          failures = 0
          // Skipped: a sync sending on writes pushed from below was running; it counts for itself.
          if !report.skipped {
            metrics?.succeeded(report)
            logger.info("synced with upstream", metadata: ["sync.report": "\(report)"])
          }
        } catch is CancellationError {
          return
        } catch {
          failures += 1
          metrics?.failedOnce()
          logger.warning(
            "sync failed; serving from the replica and retrying", metadata: ["error": "\(error)", "failures": "\(failures)"])
        }
        try await Task.sleep(for: .milliseconds(Int64(Self.delay(after: failures, interval: interval) * 1000)))
      }
    }
  }

  /// Seconds to wait after `failures` failures in a row (0: the last sync succeeded).
  package static func delay(after failures: Int, interval: Double) -> Double {
    let base = failures == 0 ? interval : min(interval, 5 * Double(1 << min(failures - 1, 10)))
    return base * Double.random(in: 0.9...1.1)
  }
}

/// Collects tombstones every downstream node has, or older than 30 days, every hour.
public struct TombstoneCollector: Service {
  let sync: SyncService
  let every: Duration
  let logger: Logger

  public init(sync: SyncService, every: Duration = .seconds(3600), logger: Logger) {
    self.sync = sync
    self.every = every
    self.logger = logger
  }

  public func run() async throws {
    let sync = self.sync
    await Rounds.repeating(every: every) {
      guard let result = await Rounds.attempt("tombstone collection", on: sync.store, logger: logger, { try sync.collectTombstones() }),
        result.purged > 0
      else { return }
      logger.info("collected tombstones", metadata: ["purged": "\(result.purged)", "expired": "\(result.expired)"])
    }
  }
}

/// Loads the work order index, then every minute sweeps work orders (auto-close, SLA warnings and
/// breaches, sync conflicts to orders) and sharing (the catalog's subscription counts of grants
/// that expired); saves the index's changes at the stop.
public struct Sweeper: Service {
  let workOrders: WorkOrderService
  let sharing: SharingService
  let every: Duration
  let logger: Logger

  public init(workOrders: WorkOrderService, sharing: SharingService, every: Duration = .seconds(60), logger: Logger) {
    self.workOrders = workOrders
    self.sharing = sharing
    self.every = every
    self.logger = logger
  }

  public func run() async throws {
    let (workOrders, sharing) = (self.workOrders, self.sharing)
    await Rounds.repeating(every: every, first: { await warmUp() }) {
      if let report = await Rounds.attempt("work order sweep", on: workOrders.store, logger: logger, { try workOrders.sweep() }),
        report != .init()
      {
        logger.info(
          "work order sweep",
          metadata: [
            "closed": "\(report.autoClosed)", "warnings": "\(report.warnings)", "breaches": "\(report.breaches)",
            "conflicts": "\(report.conflictOrders)",
          ])
      }
      _ = await Rounds.attempt("sharing sweep", on: sharing.store, logger: logger) { try sharing.sweep() }
    }
    // Stopping: the order index's changes are saved, so the next start reads only what comes after.
    _ = await Rounds.attempt("saving the work order index", on: workOrders.store, logger: logger) { try workOrders.saveIndex() }
  }

  /// Loads the order index on the storage threads (a million orders take a minute), stopping
  /// early if the node stops.
  private func warmUp() async {
    let stopping = Atomic<Bool>(false)
    let workOrders = self.workOrders
    do {
      try await withTaskCancellationHandler {
        try await workOrders.store.blocking { try workOrders.warmUp { stopping.load(ordering: .relaxed) } }
      } onCancel: {
        stopping.store(true, ordering: .relaxed)
      }
    } catch where stopping.load(ordering: .relaxed) {
      // Stopped on purpose: the node is shutting down.
    } catch {
      logger.warning("loading the work order index failed", metadata: ["error": "\(error)"])
    }
  }
}

/// Prunes the audit log of entries older than its retention (at least 184 days), every hour; the
/// chain stays verifiable from its anchor.
public struct AuditPruner: Service {
  let audit: AuditLog
  let store: NodeStore
  let retentionDays: Int
  let every: Duration
  let logger: Logger

  public init(
    audit: AuditLog, store: NodeStore, retentionDays: Int = AuditLog.minimumRetentionDays, every: Duration = .seconds(3600), logger: Logger
  ) {
    self.audit = audit
    self.store = store
    self.retentionDays = max(retentionDays, AuditLog.minimumRetentionDays)
    self.every = every
    self.logger = logger
  }

  public func run() async throws {
    let (audit, days) = (self.audit, retentionDays)
    @Sendable func prune() async {
      let pruned = await Rounds.attempt("pruning the audit log", on: store, logger: logger) {
        try audit.prune(retentionDays: days, nowMs: Int64(Date().timeIntervalSince1970 * 1000))
      }
      if let pruned, pruned.entries > 0 { logger.info("pruned the audit log", metadata: ["audit.pruned": "\(pruned.entries)"]) }
    }
    await Rounds.repeating(every: every, first: prune, prune)
  }
}

/// The shape every background loop shares.
enum Rounds {
  /// Runs `first`, then `round` every `every`, until a graceful shutdown (which cuts a wait short).
  static func repeating(every: Duration, first: @escaping @Sendable () async -> Void = {}, _ round: @escaping @Sendable () async -> Void) async {
    try? await cancelWhenGracefulShutdown {
      await first()
      while true {
        try await Task.sleep(for: every)
        await round()
      }
    }
  }

  /// Runs `body` on the storage threads; a failure is logged as "`what` failed" (unless the node
  /// is stopping) and the loop goes on. Nil when it failed.
  static func attempt<T: Sendable>(
    _ what: String, on store: NodeStore, logger: Logger, _ body: @escaping @Sendable () throws -> T
  ) async -> T? {
    do {
      return try await store.blocking(body)
    } catch where !Task.isCancelled {
      logger.warning("\(what) failed", metadata: ["error": "\(error)"])
    } catch {}
    return nil
  }
}

extension OpenNode {
  /// What the node repeats while it serves: tombstone collection and sweeps, and syncing every
  /// `syncEvery` seconds when a sync client is given.
  public func backgroundServices(
    sync client: SyncClient?, syncEvery: Double?, metrics: NodeMetrics? = nil, auditRetentionDays: Int = AuditLog.minimumRetentionDays,
    logger: Logger
  ) -> [any Service] {
    var services: [any Service] = [
      TombstoneCollector(sync: sync, logger: logger), Sweeper(workOrders: workOrders, sharing: sharing, logger: logger),
      AuditPruner(audit: audit, store: identity.store, retentionDays: auditRetentionDays, logger: logger),
    ]
    if let client, let syncEvery { services.append(SyncLoop(client: client, interval: syncEvery, metrics: metrics, logger: logger)) }
    return services
  }
}
