import EduHubCatalog
import EduHubCore
import EduHubCrypto
import EduHubIdentity
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubWorkOrders
import Foundation
import Logging

/// A node's data directory: its identity, its key store and its encrypted database.
///
///     node.json        id, scope and role (no secrets)
///     keys/node.key    Ed25519 seed: signs the node's access tokens
///     keys/db.key      the database key
///     keys/audit.key   keys the audit log's hash chain
///     keys/pseudonym.key  keys pseudonyms of ID numbers (never stored in the database)
///     keys/consumer.key   keys external consumers' pseudonyms (this node's own: never sent to another node)
///     keys/session.key    keys refresh-token digests (this node's own: a session is refreshed where it was opened)
///     eduhub.db        the encrypted record store (+ -wal, -shm, .eduhub-key)
///
/// Key files are created 0600 in a 0700 directory and refused if others can read them.
public struct NodeData: Sendable {
  public let directory: String
  public let identity: NodeIdentity
  /// The node this one syncs with (`HOST:PORT`), if any.
  public let upstream: String?

  public var databasePath: String { directory + "/eduhub.db" }
  /// The database's and its key file's paths inside the directory (for restores).
  public static let databaseFile = "eduhub.db"
  public static let databaseKeyFile = "keys/db.key"
  var keysDirectory: String { directory + "/keys" }
  func keyPath(_ name: String) -> String { keysDirectory + "/" + name + ".key" }

  /// What `node.json` holds.
  struct Manifest: Codable {
    var nodeID: String
    var scope: String
    var role: String
    var upstream: String?
  }

  /// Creates a new node's directory: keys, manifest and an empty database.
  /// - Throws: ``NodeDataError`` if the directory already holds a node.
  @discardableResult
  public static func initialize(at directory: String, identity: NodeIdentity, upstream: String? = nil) throws -> NodeData {
    let manager = FileManager.default
    let data = NodeData(directory: directory, identity: identity, upstream: upstream)
    if manager.fileExists(atPath: directory + "/node.json") {
      throw NodeDataError("\(directory) already holds a node")
    }
    do {
      try manager.createDirectory(atPath: data.keysDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      try manager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory)
      for name in ["node", "db", "audit", "pseudonym", "consumer", "session"] where !manager.fileExists(atPath: data.keyPath(name)) {
        try KeyFile.create(at: data.keyPath(name), key: SecretBytes(randomCount: 32))
      }
      let database = try EncryptedDatabase.open(path: data.databasePath, key: .keyFile(data.keyPath("db")), create: true)
      try database.close()
      let manifest = Manifest(nodeID: identity.nodeID, scope: identity.scope, role: identity.role.rawValue, upstream: upstream)
      let json = try JSONEncoder().encode(manifest)
      try json.write(to: URL(fileURLWithPath: directory + "/node.json"), options: .atomic)
    } catch let error as NodeDataError {
      throw error
    } catch let error as CryptoError {
      throw NodeDataError("cannot create the node's keys: \(error.message)")
    } catch let error as StorageError {
      throw NodeDataError(error.message)
    } catch {
      throw NodeDataError("cannot create \(directory): \(error.localizedDescription)")
    }
    return data
  }

  /// Reads an initialized node's directory.
  public static func load(_ directory: String) throws -> NodeData {
    let manifest: Manifest
    do {
      let json = try Data(contentsOf: URL(fileURLWithPath: directory + "/node.json"))
      manifest = try JSONDecoder().decode(Manifest.self, from: json)
    } catch {
      throw NodeDataError("\(directory) holds no node (run eduhub init --data \(directory) first)")
    }
    guard let role = NodeIdentity.Role(rawValue: manifest.role) else { throw NodeDataError("node.json names an unknown role") }
    return NodeData(
      directory: directory, identity: NodeIdentity(nodeID: manifest.nodeID, scope: manifest.scope, role: role),
      upstream: manifest.upstream)
  }

  /// Reads one of the node's keys.
  public func key(_ name: String) throws -> SecretBytes {
    do { return try KeyFile.read(from: keyPath(name)) } catch { throw NodeDataError("cannot read the \(name) key: \(error.message)") }
  }

  /// Opens the node's encrypted database and its replica (for tools that write records directly).
  public func openReplica() throws -> (EncryptedDatabase, Replica) {
    let database = try EncryptedDatabase.open(path: databasePath, key: .keyFile(keyPath("db")))
    let store = try RecordStore(database: database, collections: IdentityCollections.all + SyncCollections.all + CatalogCollections.all + WorkOrderCollections.all + SharingCollections.all)
    return (database, try Replica(nodeID: identity.nodeID, store: store))
  }

  /// One of the node's own keys that never leave it (`consumer`, `session`), made on first use for a
  /// directory older than the key.
  func ownKey(_ name: String) throws -> SecretBytes {
    if !FileManager.default.fileExists(atPath: keyPath(name)) {
      try KeyFile.create(at: keyPath(name), key: SecretBytes(randomCount: 32))
    }
    return try key(name)
  }

  /// Opens the node's database, replica, audit log and identity service.
  public func open(
    delivery: (any CodeDelivery)? = nil, identityConfiguration: IdentityConfiguration = IdentityConfiguration(),
    sla: SlaPolicy = SlaPolicy(), logger: Logger,
    nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
  ) throws -> OpenNode {
    do {
      let (database, replica) = try openReplica()
      let audit = try AuditLog(database: database, key: try key("audit"))
      let identityService = try IdentityService(
        nodeID: identity.nodeID, replica: replica, audit: audit, signingKey: try SigningKey(seed: try key("node")),
        pseudonymKey: try key("pseudonym"), consumerKey: try ownKey("consumer"), sessionKey: try ownKey("session"), delivery: delivery ?? OutboxCodeDelivery(logger: logger),
        configuration: identityConfiguration, nowMs: nowMs)
      let catalog = CatalogService(identity: identityService)
      return OpenNode(
        data: self, database: database, replica: replica, audit: audit, identity: identityService,
        sync: SyncService(identity: identityService), catalog: catalog,
        workOrders: WorkOrderService(identity: identityService, sla: sla),
        sharing: try SharingService(identity: identityService, catalog: catalog))
    } catch let error as StorageError {
      throw NodeDataError(error.message)
    } catch let error as CryptoError {
      throw NodeDataError(error.message)
    }
  }
}

/// A node's open storage and services.
public struct OpenNode: Sendable {
  public let data: NodeData
  public let database: EncryptedDatabase
  public let replica: Replica
  public let audit: AuditLog
  public let identity: IdentityService
  public let sync: SyncService
  public let catalog: CatalogService
  public let workOrders: WorkOrderService
  public let sharing: SharingService

  /// Flushes the audit and call logs, stops the hashing threads and closes the database.
  public func close() async {
    sharing.shutdown()
    await identity.shutdown()
    try? database.close()
  }
}

/// Why a node's directory cannot be used. Safe to print.
/// A node's data directory cannot be used as asked.
public typealias NodeDataError = Failure<NodeDataFailure>
public enum NodeDataFailure {}

extension NodeData {
  /// Replaces one of the node's keys (the region's pseudonym key, received at enrollment).
  public func replaceKey(_ name: String, with key: SecretBytes) throws {
    do {
      try? FileManager.default.removeItem(atPath: keyPath(name))
      try KeyFile.create(at: keyPath(name), key: key)
    } catch {
      throw NodeDataError("cannot write the \(name) key: \(error.message)")
    }
  }

  /// The same node with its scope set (after enrollment tells it), written to `node.json`.
  public func withScope(_ scope: String) throws -> NodeData {
    let manifest = Manifest(nodeID: identity.nodeID, scope: scope, role: identity.role.rawValue, upstream: upstream)
    do {
      try JSONEncoder().encode(manifest).write(to: URL(fileURLWithPath: directory + "/node.json"), options: .atomic)
    } catch {
      throw NodeDataError("cannot write \(directory)/node.json: \(error.localizedDescription)")
    }
    return NodeData(
      directory: directory, identity: NodeIdentity(nodeID: identity.nodeID, scope: scope, role: identity.role), upstream: upstream)
  }
}

extension NodeData {
  /// The node's own files a backup keeps with each snapshot: its manifest, its keys and the
  /// database's key metadata. Everything but the database, which the snapshot holds.
  public func bundleFiles() throws -> [BackupBundleFile] {
    var paths = ["node.json", NodeData.databaseFile + ".eduhub-key"]
    let keys = (try? FileManager.default.contentsOfDirectory(atPath: keysDirectory)) ?? []
    paths += keys.filter { $0.hasSuffix(".key") }.sorted().map { "keys/" + $0 }
    return try paths.map { path in
      guard let data = FileManager.default.contents(atPath: directory + "/" + path) else {
        throw NodeDataError("cannot read \(directory)/\(path) for the backup")
      }
      return BackupBundleFile(path: path, contents: [UInt8](data))
    }
  }

  /// Starts shipping this node's database to the backup target at `target` (see
  /// `ContinuousBackup`), its snapshots keeping the node's own files too.
  public func startBackup(
    of database: EncryptedDatabase, to target: String, keyFile: String, options: ContinuousBackup.Options, logger: Logger
  ) throws -> ContinuousBackup {
    do {
      let backupKey = try KeyFile.read(from: keyFile)
      let data = self
      return try ContinuousBackup.start(
        database: database, databaseKey: try key("db"), target: target, backupKey: backupKey, bundle: { try data.bundleFiles() },
        options: options, logger: logger)
    } catch let error as StorageError where error.code == .notFound {
      throw NodeDataError("cannot back up to \(target): \(error.message) (make it with eduhub backup init; is the volume mounted?)")
    } catch let error as StorageError {
      throw NodeDataError("cannot back up to \(target): \(error.message)")
    } catch let error as CryptoError {
      throw NodeDataError("cannot back up to \(target): \(error.message)")
    }
  }
}

extension NodeData {
  /// Restores a node from the backup target at `target` into the new directory `directory`, as of
  /// `point`, and makes it safe to rejoin its peers: its sync store gets a new identity (each node
  /// below it then pushes everything it wrote and pulls anew, losing nothing only it held; its
  /// upstream sees a node whose cursors are simply older, and serves it again from there), and the
  /// restore is the first entry of the audit log's continuation.
  public static func restore(
    from target: String, key: SecretBytes, to point: BackupPoint, into directory: String, logger: Logger
  ) async throws -> RestoreReport {
    let report: RestoreReport
    do {
      // It cleans up after itself, and never touches a directory that was not empty.
      report = try BackupRestore.restore(
        from: target, key: key, to: point, into: directory, databaseFile: databaseFile, databaseKeyFile: databaseKeyFile)
    } catch let error as StorageError {
      throw NodeDataError(error.message)
    }
    do {
      let node = try NodeData.load(directory).open(logger: logger)
      let storeID: String
      do {
        storeID = try node.sync.renewStoreID()
        // With an upstream, it takes local writes again only after its first sync (see Replica).
        if node.data.upstream != nil { try Replica.markRestored(node.replica.store) }
      } catch {
        await node.close()
        throw error
      }
      node.audit.record(
        .init(
          actor: "operator:restore", action: "node.restore", target: node.data.identity.nodeID,
          detail: "restored from backup generation \(report.generation) at transaction \(report.transaction); new sync store \(storeID)"
            + (node.data.upstream != nil ? "; local writes wait for the first sync" : ""),
          peer: "local", timeMs: Int64(Date().timeIntervalSince1970 * 1000)))
      await node.close()
      return report
    } catch {
      // What the restore wrote is no node to start: it goes.
      try? FileManager.default.removeItem(atPath: directory)
      if let error = error as? NodeDataError { throw error }
      throw NodeDataError("the restored node cannot be opened: \((error as? StorageError)?.message ?? "\(error)")")
    }
  }
}
