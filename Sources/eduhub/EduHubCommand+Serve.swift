import ArgumentParser
import Dispatch
import EduHubCore
import EduHubIdentity
import EduHubConsole
import EduHubNode
import EduHubRPC
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubWorkOrders
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

extension EduHubCommand {
  struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Run a node: serve its RPCs until SIGTERM or SIGINT.",
      discussion: """
        Serves gRPC over plaintext HTTP/2 (h2c) by default, or TLS with ALPN h2 when --tls-cert and \
        --tls-key are given. On SIGTERM or SIGINT the node stops taking calls (GOAWAY), lets calls \
        in flight finish within the grace period, and exits 0.
        """
    )

    @OptionGroup var global: GlobalOptions

    @OptionGroup var tracing: TracingOptions

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free port).")
    var listen: String = "127.0.0.1:50051"

    @Option(help: "PEM certificate chain for TLS (needs --tls-key).")
    var tlsCert: String?

    @Option(help: "PEM private key for TLS (needs --tls-cert).")
    var tlsKey: String?

    @Option(help: "The node's data directory (eduhub init): serves Identity from it and requires tokens.")
    var data: String?

    @Option(help: "With --data: working hours, holidays and exchanged working days per year, and SLA targets for work orders (YAML; default: 2026's arrangement).")
    var workCalendar: String?

    @Option(help: "With --data and an upstream: sync this often (e.g. 30s, 5m, 1h), with jittered backoff when the upstream is unreachable.")
    var syncEvery: String?

    @Option(help: "This node's id (without --data).")
    var nodeID: String = "central"

    @Option(help: "The org subtree this node holds, e.g. 511700/511702 (empty for the whole region).")
    var scope: String = ""

    @Option(help: "The node's role (without --data).")
    var role: NodeIdentity.Role = .central

    @Option(help: "Largest request message accepted, in bytes.")
    var maxMessageSize: Int = 4 * 1024 * 1024

    @Option(help: "Seconds calls in flight may take to finish after SIGTERM.")
    var gracePeriod: Int = 10

    @Option(help: "Event-loop threads serving connections (default: one per core).")
    var eventLoops: Int?

    @Option(help: "With --data: keep audit entries this many days (at least 184); older ones are pruned hourly, the chain kept verifiable.")
    var auditRetentionDays = AuditLog.minimumRetentionDays

    @Option(help: "Serve the metrics (Prometheus text at /metrics) on this address, HOST:PORT, instead of the node's port.")
    var metricsListen: String?

    @Option(help: "With --data: serve the web console (HTML pages for people in a browser) on this address, HOST:PORT; under TLS when the node has --tls-cert (required unless the address is loopback).")
    var consoleListen: String?

    @Option(help: "With --data: ship every committed transaction to this backup target (a directory) within a second; the first start takes a snapshot.")
    var backupTo: String?

    @Option(help: "With --backup-to: the backup key file (eduhub keygen), kept off the node's disk where possible.")
    var backupKey: String?

    @Option(help: "With --backup-to: days every point stays restorable; older generations are pruned hourly.")
    var backupRetentionDays = 30

    @Option(help: "With --backup-to: start a new generation (a fresh snapshot) this often (e.g. 12h, 1d as 24h).")
    var backupSnapshotEvery = "24h"

    @Option(help: "Microseconds an event loop keeps polling after activity before it sleeps (0: never).")
    var busyPollUs: Int = 50

    func validate() throws {
      if (tlsCert == nil) != (tlsKey == nil) {
        throw ValidationError("--tls-cert and --tls-key go together")
      }
      do { _ = try NodeAddress(parsing: listen) } catch { throw ValidationError("\(error)") }
      if let metricsListen {
        do { _ = try NodeAddress(parsing: metricsListen) } catch { throw ValidationError("--metrics-listen: \(error)") }
      }
      if let consoleListen {
        guard data != nil else { throw ValidationError("--console-listen needs --data") }
        let address: NodeAddress
        do { address = try NodeAddress(parsing: consoleListen) } catch { throw ValidationError("--console-listen: \(error)") }
        // Passwords and session cookies in clear over a network, and cookies another port of the
        // host could overwrite: plaintext only for a browser on this machine.
        guard tlsCert != nil || ["127.0.0.1", "::1", "localhost"].contains(address.host) else {
          throw ValidationError("--console-listen on \(address.host) needs --tls-cert and --tls-key (plaintext is for 127.0.0.1 only)")
        }
      }
      guard maxMessageSize > 0 else { throw ValidationError("--max-message-size must be positive") }
      guard auditRetentionDays >= AuditLog.minimumRetentionDays else {
        throw ValidationError("--audit-retention-days must be at least \(AuditLog.minimumRetentionDays) (six months at their longest)")
      }
      guard gracePeriod >= 0 else { throw ValidationError("--grace-period must not be negative") }
      if let eventLoops, !(1...256).contains(eventLoops) {
        throw ValidationError("--event-loops must be from 1 to 256")
      }
      guard (0...100_000).contains(busyPollUs) else { throw ValidationError("--busy-poll-us must be from 0 to 100000") }
      if backupTo != nil || backupKey != nil {
        guard data != nil, backupTo != nil, backupKey != nil else {
          throw ValidationError("--backup-to and --backup-key go together, with --data")
        }
        guard (1...36_500).contains(backupRetentionDays) else { throw ValidationError("--backup-retention-days must be from 1 to 36500") }
        guard let every = Self.seconds(backupSnapshotEvery), every >= 60 else {
          throw ValidationError("--backup-snapshot-every takes a duration of at least a minute, such as 12h or 24h")
        }
        _ = every
      }
      if let syncEvery {
        guard data != nil else { throw ValidationError("--sync-every needs --data") }
        guard Self.seconds(syncEvery) != nil else { throw ValidationError("--sync-every takes a duration such as 30s, 5m or 1h") }
      }
    }

    func run() async throws {
      global.bootstrapLogging()
      var configuration = try makeConfiguration()
      let logger = Logger(label: "eduhub.node")
      var open: OpenNode?
      var services: [any RPCService] = []
      if let data {
        do {
          let node = try NodeData.load(data).open(sla: try WorkCalendarFile.policy(workCalendar), logger: logger)
          configuration.identity = node.data.identity
          services = node.services(configuration: &configuration.rpc)
          open = node
        } catch let error as NodeDataError {
          throw FailureMessage(error.message)
        }
      }
      // Metrics: every call counted; /metrics on the node's port unless --metrics-listen moves it.
      let metrics = NodeMetrics()
      configuration.rpc.observer = metrics.rpc
      var background: [any Service] = []
      // Stopped after the server drains: the exporter still sends the spans of the last calls.
      let observability = try tracing.bootstrap(serviceName: configuration.identity.nodeID).map { [$0] } ?? []
      if let metricsListen {
        let address = try NodeAddress(parsing: metricsListen)  // checked in validate()
        background.append(MetricsListener(metrics: metrics, host: address.host, port: address.port, logger: logger))
        configuration.rpc.httpHandler = NodeHTTP(metrics: nil, next: configuration.rpc.httpHandler)
      } else {
        configuration.rpc.httpHandler = NodeHTTP(metrics: metrics, next: configuration.rpc.httpHandler)
      }
      if let open {
        var client: SyncClient?
        if let syncEvery, Self.seconds(syncEvery) != nil {
          guard let made = try syncClient(for: open) else {
            throw FailureMessage("--sync-every: node \(open.data.identity.nodeID) has no upstream")
          }
          client = made
          // Writes pushed from below go on to the upstream at once, in the pushing call's trace.
          open.sync.onDownstreamWrites.withLock { $0 = { made.forwardDownstreamWrites() } }
        }
        var backup: ContinuousBackup?
        if let backupTo, let backupKey {
          var options = ContinuousBackup.Options()
          options.retentionDays = backupRetentionDays
          options.snapshotEvery = Self.seconds(backupSnapshotEvery) ?? options.snapshotEvery
          do {
            backup = try open.data.startBackup(of: open.database, to: backupTo, keyFile: backupKey, options: options, logger: logger)
          } catch let error as NodeDataError {
            await open.close()
            throw FailureMessage(error.message)
          }
        }
        // The sync state is read from the replica at each scrape, whether or not this process syncs.
        let status = client ?? (try? syncClient(for: open))
        metrics.watch(open, sync: status, backup: backup)
        if let consoleListen, let authenticator = configuration.rpc.interceptor as? Authenticator {
          let address = try NodeAddress(parsing: consoleListen)  // checked in validate()
          let console = Console(node: open, authenticator: authenticator, syncStatus: { try? status?.status() }, logger: logger)
          background.append(ConsoleListener(console: console, host: address.host, port: address.port, tls: configuration.tls, logger: logger))
        }
        background += open.backgroundServices(sync: client, syncEvery: syncEvery.flatMap(Self.seconds), metrics: metrics, auditRetentionDays: auditRetentionDays, logger: logger)
      }
      do {
        try await NodeServer.serve(
          configuration, services: services, background: background, observability: observability, eventLoops: eventLoops, logger: logger)
        // The loops have stopped and the calls drained: the database can close.
        await open?.close()
      } catch let error as RPCError {
        await open?.close()
        throw FailureMessage(error.message)
      }
    }

    /// `30s`, `5m`, `1h` or plain seconds.
    static func seconds(_ text: String) -> Double? {
      let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
      if let unit = text.last, let factor = units[unit], let value = Double(text.dropLast()), value > 0 { return value * factor }
      if let value = Double(text), value > 0 { return value }
      return nil
    }

    private func makeConfiguration() throws -> NodeServerConfiguration {
      let address = try NodeAddress(parsing: listen)
      var tls: ServerTLSConfiguration?
      if let tlsCert, let tlsKey {
        do {
          tls = try ServerTLSConfiguration(certificateChainFile: tlsCert, privateKeyFile: tlsKey)
        } catch let error as RPCError {
          throw FailureMessage(error.message)
        }
      }
      var rpc = ServerConfiguration()
      rpc.maxReceiveMessageSize = maxMessageSize
      rpc.shutdownGracePeriod = .seconds(Int64(gracePeriod))
      rpc.busyPollBudget = busyPollUs > 0 ? .microseconds(Int64(busyPollUs)) : nil
      return NodeServerConfiguration(
        host: address.host, port: address.port,
        identity: NodeIdentity(nodeID: nodeID, scope: scope, role: role),
        tls: tls, rpc: rpc)
    }
  }
}

/// A one-line failure for the terminal.
/// What the command prints before it exits with a failure.
typealias FailureMessage = Failure<CommandFailed>
enum CommandFailed {}
