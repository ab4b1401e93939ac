import ArgumentParser
import EduHubAPI
import EduHubCore
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import Foundation
import Logging
import SwiftProtobuf

extension EduHubCommand {
  struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Manage downstream nodes of this node.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Register a downstream node and print its one-time enrollment token (valid a day).",
        discussion: "Give the token to `eduhub init --upstream … --enroll TOKEN` on the new node's machine.")

      @OptionGroup var node: DataOptions

      @Option(help: "The new node's id.")
      var nodeID: String

      @Option(help: "The org code whose subtree the node holds.")
      var org: String

      @Option(help: "Whether the node reads personal fields in clear or masked.")
      var clearance: ClearanceArgument = .clear

      func run() async throws {
        let level = clearance.level
        let open = try node.open()
        let created = try await asOperator(open) { caller in
          var request = Eduhub_Sync_V1_CreateNodeRequest()
          request.nodeID = nodeID
          request.orgCode = org
          request.clearance = level
          return try open.sync.createNode(request, caller: caller, peer: "console")
        }
        print("node \(created.node.id) holds \(created.node.scope) (\(clearance)); enrollment token:")
        print(created.enrollmentToken)
      }
    }
  }

  struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Sync this node with its upstream now: pull its scope's changes, push its own writes.")

    @OptionGroup var node: DataOptions

    @OptionGroup var tracing: TracingOptions

    @Flag(help: "Sync once and exit (the default; `eduhub serve --sync-every` syncs periodically).")
    var once = false

    @Option(help: "Records per batch (1 to 10000); each batch is applied in one transaction.")
    var batchRecords: Int = 5000

    func validate() throws {
      guard (1...10_000).contains(batchRecords) else { throw ValidationError("--batch-records must be from 1 to 10000") }
    }

    func run() async throws {
      let open = try node.open()
      // This process starts no backup shipper: a first sync's walk may checkpoint beside its writer.
      guard let client = try syncClient(for: open, checkpointWalkAside: true) else {
        await open.close()
        throw FailureMessage("node \(open.data.identity.nodeID) has no upstream")
      }
      do {
        let start = ContinuousClock.now
        let batchRecords = self.batchRecords
        let report = try await tracing.run(serviceName: open.data.identity.nodeID) {
          try await client.syncOnce(batchRecords: batchRecords)
        }
        let elapsed = ContinuousClock.now - start
        await client.upstreamClient.close()
        await open.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("\(report) in \(String(format: "%.3f", seconds)) s")
      } catch let error as RPCError {
        await client.upstreamClient.close()
        await open.close()
        throw FailureMessage("sync with \(open.data.upstream ?? ""): \(error.code): \(error.message)")
      }
    }
  }

  struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show a node's identity, upstream, last sync, cursors, pending writes and conflicts.")

    @OptionGroup var node: DataOptions

    func run() async throws {
      let open = try node.open()
      let data = open.data
      print("node \(data.identity.nodeID) (\(data.identity.role.rawValue)) scope \"\(data.identity.scope)\"")
      // Security events from below: a node that pushed what it could not have written.
      for refused in try open.sync.refusedPushes().sorted(by: { $0.lastMs > $1.lastMs }) {
        print("REFUSED \(refused.count) push(es) from node \(refused.nodeID), last at \(chinaTime(refused.lastMs)): \(refused.reason)")
      }
      guard let client = try syncClient(for: open) else {
        print("no upstream")
        await open.close()
        return
      }
      let status = try client.status()
      let upstreamView: String
      do {
        let seen = try await client.handshake()
        upstreamView =
          "upstream \(seen.upstreamNodeID) is at sequence \(seen.lastSequence); it has this node pulled through "
          + "\(seen.pulledThrough)\(seen.resyncNeeded ? "; the next sync will RESYNC" : "")"
      } catch {
        upstreamView = "upstream unreachable (\(error)); serving from the replica"
      }
      await client.upstreamClient.close()
      await open.close()
      print("upstream \(data.upstream ?? "")")
      if let last = status.lastSyncMs {
        print("last sync \(chinaTime(last))")
      } else {
        print("never synced")
      }
      print("first sync \(status.firstSyncDone ? "done" : "not finished"); pulled through upstream sequence \(status.pulledThrough ?? 0)")
      print("pushed through local sequence \(status.pushedThrough); \(status.pendingWrites) writes wait for the next push")
      print("\(status.conflicts) conflicts logged")
      print(upstreamView)
    }
  }
}

/// The node's client of its upstream, if it has one.
/// - Parameter checkpointWalkAside: a first sync's walk checkpoints beside the writer (only in a
///   process that starts no backup shipper: `eduhub sync`, not `serve`).
func syncClient(for node: OpenNode, checkpointWalkAside: Bool = false) throws -> SyncClient? {
  guard let upstream = node.data.upstream else { return nil }
  let address: NodeAddress
  do { address = try NodeAddress(parsing: upstream) } catch { throw FailureMessage("node.json: \(error)") }
  let rpc = try connect(address, tlsCA: nil)
  let key: SigningKey
  do { key = try SigningKey(seed: try node.data.key("node")) } catch { throw FailureMessage("\(error)") }
  let identity = node.identity
  return SyncClient(
    nodeID: node.data.identity.nodeID, signingKey: key, store: node.identity.store, upstream: rpc,
    checkpointWalkAside: checkpointWalkAside, onApplied: { identity.applied(collections: $0) })
}

/// `2026-11-30 14:05:00` in China time.
func chinaTime(_ milliseconds: Int64) -> String {
  let formatter = DateFormatter()
  formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
  formatter.timeZone = TimeZone(identifier: "Asia/Shanghai")
  return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000)) + " (Asia/Shanghai)"
}

/// Enrolls a freshly initialized node with its upstream: registers its public key, learns its scope,
/// keeps the upstream's key (to verify its tokens).
extension EduHubCommand {
  static func enrollNode(_ data: NodeData, upstream: String, token: String) async throws -> NodeData {
    try await enrollWithUpstream(data, upstream: upstream, token: token)
  }
}

func enrollWithUpstream(_ data: NodeData, upstream: String, token: String) async throws -> NodeData {
  let address: NodeAddress
  do { address = try NodeAddress(parsing: upstream) } catch { throw FailureMessage("\(error)") }
  let rpc = try connect(address, tlsCA: nil)
  let key: SigningKey
  do { key = try SigningKey(seed: try data.key("node")) } catch { throw FailureMessage("\(error)") }
  var request = Eduhub_Sync_V1_EnrollRequest()
  request.enrollmentToken = token
  request.publicKey = Data(key.publicKey)
  let response: Eduhub_Sync_V1_EnrollResponse
  do {
    response = try await Eduhub_Sync_V1_SyncService.Client(rpc).enroll(request, options: CallOptions(timeout: .seconds(30)))
    await rpc.close()
  } catch let error as RPCError {
    await rpc.close()
    throw FailureMessage("enrollment with \(upstream): \(error.code): \(error.message)")
  }
  let enrolled = try data.withScope(response.node.scope)
  // A clear node receives the region's pseudonym key, which replaces the one init made: pseudonyms
  // agree on every node. A masked node receives none (it could reverse pseudonyms with it): its
  // records arrive with pseudonyms computed, and its own key serves only what it writes itself.
  if response.node.clearance == .clear {
    guard response.pseudonymKey.count == 32 else { throw FailureMessage("the upstream sent no pseudonym key") }
    do {
      try enrolled.replaceKey("pseudonym", with: SecretBytes(response.pseudonymKey))
    } catch let error as NodeDataError {
      throw FailureMessage(error.message)
    }
  }
  let (database, replica) = try enrolled.openReplica()
  var upstreamKey = Eduhub_Identity_V1_NodeKeyRecord()
  upstreamKey.nodeID = response.upstreamNodeID
  upstreamKey.publicKey = response.upstreamPublicKey
  try replica.write([try IdentityCollections.nodeKey.write(response.upstreamNodeID, scope: "", upstreamKey)])
  try database.close()
  return enrolled
}

extension SyncClient {
  /// The client's connection to the upstream (closed by the command when done).
  var upstreamClient: RPCClient { upstreamRPC }
}
