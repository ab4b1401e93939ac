import EduHubIdentity
import EduHubRPC
import EduHubSharing
import EduHubStorage
import EduHubSync
import Foundation
import Prometheus
import Synchronization

/// A node's metrics, in Prometheus's text format at `GET /metrics`: its calls (per method: started,
/// handled by status code, a latency histogram), connections, sync, the size of its database and
/// write-ahead log, and the backlog of its audit and call logs.
///
/// Each node has a registry of its own (several nodes may share a process, as in the tests), so the
/// instruments are swift-prometheus's, made with their HELP text (which `promtool check metrics`
/// asks for) rather than through swift-metrics' process-wide bootstrap. No label holds anything a
/// client chose but a method the server serves, and nothing personal: method names, status codes,
/// counts, sizes.
public final class NodeMetrics: Sendable {
  /// Where every instrument is registered; `text()` renders it.
  public let registry: PrometheusCollectorRegistry
  /// What the RPC server reports its connections and calls to.
  public let rpc: RPCMetrics
  let sync: SyncMetrics
  private let sources: Mutex<Sources>

  /// What is read when the metrics are scraped: the node, and its sync with its upstream.
  private struct Sources {
    var node: OpenNode?
    var client: SyncClient?
    var backup: ContinuousBackup?
  }

  private let databaseBytes: Gauge
  private let walBytes: Gauge
  private let auditBacklog: Gauge
  private let callLogBacklog: Gauge
  private let backupLastSegment: Gauge
  private let backupAge: Gauge
  private let backupTransaction: Gauge
  private let backupFailures: Gauge
  private let checkpointSeconds: Gauge

  public init() {
    let registry = PrometheusCollectorRegistry()
    self.registry = registry
    rpc = RPCMetrics(registry: registry)
    sync = SyncMetrics(registry: registry)
    sources = Mutex(Sources())
    databaseBytes = registry.gauge("eduhub_database_size_bytes", "Size of the node's encrypted database file.")
    walBytes = registry.gauge("eduhub_database_wal_size_bytes", "Size of the database's write-ahead log file.")
    auditBacklog = registry.gauge("eduhub_audit_backlog_entries", "Audit entries appended and not yet committed.")
    callLogBacklog = registry.gauge("eduhub_call_log_backlog_entries", "Shared-API call-log entries appended and not yet committed.")
    backupLastSegment = registry.gauge(
      "eduhub_backup_last_segment_timestamp_seconds", "When the last backup segment became durable on the target (0: none yet).")
    backupAge = registry.gauge("eduhub_backup_last_segment_age_seconds", "Seconds since the last backup segment became durable.")
    backupTransaction = registry.gauge("eduhub_backup_last_transaction", "The number of the last transaction shipped to the backup target.")
    backupFailures = registry.gauge("eduhub_backup_failed_rounds", "Backup shipping rounds that failed since the node started.")
    checkpointSeconds = registry.gauge(
      "eduhub_database_last_checkpoint_duration_seconds", "How long the last WAL checkpoint took (run by the backup shipper).")
  }

  /// Reads the database's files, the logs' backlogs and the sync state of `node` at each scrape;
  /// `client`: its sync with the upstream, if it has one.
  public func watch(_ node: OpenNode, sync client: SyncClient? = nil, backup: ContinuousBackup? = nil) {
    sources.withLock { $0 = Sources(node: node, client: client, backup: backup) }
  }

  /// The exposition text (format 0.0.4), with the sampled gauges read now.
  public func text() -> [UInt8] {
    let now = sources.withLock { $0 }
    if let node = now.node {
      databaseBytes.set(to: Double(Self.fileSize(node.database.path)))
      walBytes.set(to: Double(Self.fileSize(node.database.path + "-wal")))
      auditBacklog.set(to: Double(node.audit.backlog))
      callLogBacklog.set(to: Double(node.sharing.callLog.backlog))
      if let refused = try? node.sync.refusedPushes() { sync.refused(refused) }
      if let downstream = try? node.sync.downstream() { sync.downstream(downstream) }
    }
    if let client = now.client, let status = try? client.status() { sync.status(status) }
    if let backup = now.backup?.status {
      let last = Double(backup.lastSegmentMs ?? 0) / 1000
      backupLastSegment.set(to: last)
      backupAge.set(to: last > 0 ? max(0, Date().timeIntervalSince1970 - last) : 0)
      backupTransaction.set(to: Double(backup.lastTransaction))
      backupFailures.set(to: Double(backup.failures))
      checkpointSeconds.set(to: backup.lastCheckpointSeconds ?? 0)
    }
    var calls = ""
    rpc.render(into: &calls)
    return registry.emitToBuffer() + Array(calls.utf8)
  }

  /// The content type of ``text()``.
  public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

  private static func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
  }
}

/// The RPC server's connections (swift-prometheus gauges: they change once per connection) and
/// calls per method (``CallStatistics``, sharded by thread: they change on every call).
public final class RPCMetrics: ServerObserver {
  private let connections: Gauge
  private let connectionsOpened: Counter
  private let methods = Mutex<[CallStatistics]>([])

  init(registry: PrometheusCollectorRegistry) {
    connections = registry.gauge("eduhub_rpc_connections", "HTTP/2 connections open now.")
    connectionsOpened = registry.counter("eduhub_rpc_connections_opened_total", "HTTP/2 connections accepted.")
  }

  public func observe(_ method: RPCMethodDescriptor) -> any CallObserver {
    let statistics = CallStatistics(method: method)
    methods.withLock { $0.append(statistics) }
    return statistics
  }

  public func connectionOpened() {
    connections.increment()
    connectionsOpened.increment()
  }

  public func connectionClosed() {
    connections.decrement()
  }

  /// The call families, appended to the registry's text.
  func render(into out: inout String) {
    CallStatisticsText.render(methods.withLock { $0 }, into: &out)
  }
}

/// Sync: the loop's runs with the upstream, what waits to be pushed, conflicts, and the pushes this
/// node refused from each node below it.
final class SyncMetrics: Sendable {
  private let registry: PrometheusCollectorRegistry
  private let lastSuccess: Gauge
  private let pendingWrites: Gauge
  private let conflictsLogged: Gauge
  private let succeeded: Counter
  private let failed: Counter
  private let pulled: Counter
  private let pushed: Counter
  private let conflicts: Counter

  init(registry: PrometheusCollectorRegistry) {
    self.registry = registry
    pendingWrites = registry.gauge("eduhub_sync_pending_writes", "This node's writes waiting for the next push to the upstream.")
    conflictsLogged = registry.gauge("eduhub_sync_conflicts_logged", "Conflicts kept for review in this node's replica.")
    lastSuccess = registry.gauge(
      "eduhub_sync_last_success_timestamp_seconds", "When the last sync with the upstream succeeded (Unix time; 0: never).")
    succeeded = registry.counter("eduhub_sync_runs_total", Self.runsHelp, labels: [("outcome", "ok")])
    failed = registry.counter("eduhub_sync_runs_total", Self.runsHelp, labels: [("outcome", "failed")])
    pulled = registry.counter("eduhub_sync_pulled_records_total", "Records pulled from the upstream.")
    pushed = registry.counter("eduhub_sync_pushed_records_total", "Records pushed to the upstream.")
    conflicts = registry.counter("eduhub_sync_conflicts_total", "Concurrent writes met while syncing (kept for review).")
  }

  static let runsHelp = "Syncs with the upstream, by outcome."

  func succeeded(_ report: SyncReport) {
    succeeded.increment()
    pulled.increment(by: Int64(report.pulled))
    pushed.increment(by: Int64(report.pushed))
    conflicts.increment(by: Int64(report.conflicts))
  }

  func failedOnce() {
    failed.increment()
  }

  /// What `eduhub status` shows, read at a scrape (also after syncs run by `eduhub sync`).
  func status(_ status: SyncClient.Status) {
    pendingWrites.set(to: Double(status.pendingWrites))
    conflictsLogged.set(to: Double(status.conflicts))
    if let last = status.lastSyncMs { lastSuccess.set(to: Double(last) / 1000) }
  }

  static let refusedHelp = "Pushes refused from a node below this one (it pushed what it could not have written)."
  static let behindHelp = "Changes of this node written after the last one a node below it applied (an upper bound of its lag)."
  static let lastPullHelp = "When a node below this one last pulled (Unix time)."

  /// Per enrolled node below: its lag in changes, and when it last pulled (once it has).
  func downstream(_ nodes: [SyncService.Downstream]) {
    for node in nodes {
      let labels = [("node", node.nodeID)]
      registry.gauge("eduhub_sync_downstream_behind_changes", Self.behindHelp, labels: labels).set(to: Double(node.behind))
      if let last = node.lastPullMs {
        registry.gauge("eduhub_sync_downstream_last_pull_timestamp_seconds", Self.lastPullHelp, labels: labels).set(to: Double(last) / 1000)
      }
    }
  }

  /// Refused pushes per node below (labelled by the node's enrolled id, so bounded by enrolment).
  func refused(_ refusals: [RefusedPush]) {
    for refusal in refusals {
      registry.gauge("eduhub_sync_refused_pushes", Self.refusedHelp, labels: [("node", refusal.nodeID)]).set(to: Double(refusal.count))
    }
  }
}

extension PrometheusCollectorRegistry {
  func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Counter {
    makeCounter(descriptor: Self.descriptor(name, help), labels: labels)
  }

  /// A gauge (the registry returns the one it has for these labels, if any).
  func gauge(_ name: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
    makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
  }

  /// Our names come whole (unit included), which the descriptor then leaves as they are.
  private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }
}
