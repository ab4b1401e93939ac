import EduHubAPI
import EduHubCrypto
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import Logging
import SwiftProtobuf
import Synchronization

/// How Identity behaves: lifetimes, password hashing cost, lockout.
public struct IdentityConfiguration: Sendable {
  /// Access token lifetime, seconds.
  public var accessTokenLifetime: Int64 = 900
  /// A login session's absolute lifetime (refresh tokens cannot extend it), seconds.
  public var sessionLifetime: Int64 = 30 * 86_400
  /// Argon2id cost; OWASP's minimum is m = 19 MiB, t = 2.
  public var passwordLimits = PasswordHash.Limits.owaspMinimum
  /// Threads that hash passwords (off the event loops).
  public var hashingThreads = max(1, ProcessInfo.processInfo.activeProcessorCount - 1)
  /// Failed logins before an account locks, and the first and longest lock.
  public var lockoutThreshold: Int32 = 5
  public var lockoutBase: Int64 = 30
  public var lockoutMaximum: Int64 = 3600
  /// How long an activation or reset code is valid, seconds.
  public var activationLifetime: Int64 = 7 * 86_400
  /// Off only in the masking benchmark, to measure what masking costs. Never off in a node.
  @_spi(Benchmark) public var maskingEnabled = true

  public init() {}
}

/// The identity service: org tree, people, guardians, accounts, login and tokens, roles, audit.
///
/// Every record lives in the replicated record store; every mutation is written with its audit event
/// in one transaction; every method checks the caller's permission on the target's org path.
public final class IdentityService: Sendable {
  public let nodeID: String
  public let replica: Replica
  /// The node's storage: every service's transactions and typed reads go through it.
  public let store: NodeStore
  public let audit: AuditLog
  public let tokens: AccessTokens
  public let hasher: PasswordHasher
  public let configuration: IdentityConfiguration
  let personMasker: RecordMasker
  /// Keys pseudonyms (from the node's key store).
  let pseudonymKey: SecretBytes
  /// Keys external consumers' pseudonyms: this node's own, never sent to another node (a clear node
  /// holds the region's pseudonym key, and consumers' pseudonyms must not be derivable from it).
  let consumerKey: SecretBytes
  /// Keys refresh-token digests: this node's own, never sent to another node.
  let sessionKey: SecretBytes
  let delivery: any CodeDelivery
  package let nowMs: @Sendable () -> Int64
  /// Bumped by every change that can alter a resolved caller (roles, sessions, accounts,
  /// guardianships): cached callers from an older epoch are resolved again.
  let epoch = Atomic<UInt64>(0)
  let nodeKeys = KeyRing()
  /// Who may originate writes of each replicated collection (each service registers its own).
  public let writeAuthorities = WriteAuthorities()
  /// How each replicated collection's records are classified (each service registers its own).
  public let classifications = RecordClassifications()
  /// Collections whose changes can alter a resolved caller or a trusted key: a change to one that
  /// arrives by sync invalidates the caches as a local write does (services add their own).
  let callerCollections = Mutex<Set<String>>([
    IdentityCollections.account.name, IdentityCollections.session.name, IdentityCollections.roleGrant.name,
    IdentityCollections.guardianship.name, IdentityCollections.person.name, IdentityCollections.nodeKey.name,
  ])
  /// Scopes of downstream token issuers (see `registerIssuerScopes`).
  let issuerScopes = Mutex<[@Sendable (String, Database) throws -> (scope: String, clear: Bool)?]>([])
  /// Security events (refused pushes) are logged here as well as audited.
  let logger = Logger(label: "eduhub.identity")
  /// Who a token's subject is when it is not an account (`node:…`): resolvers other services add.
  let principalResolvers = Mutex<[(prefix: String, resolve: @Sendable (AccessClaims) throws -> Caller)]>([])

  public init(
    nodeID: String, replica: Replica, audit: AuditLog, signingKey: SigningKey, pseudonymKey: SecretBytes,
    consumerKey: SecretBytes? = nil, sessionKey: SecretBytes? = nil, delivery: any CodeDelivery, configuration: IdentityConfiguration = IdentityConfiguration(),
    nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
  ) throws {
    self.nodeID = nodeID
    self.replica = replica
    self.audit = audit
    self.configuration = configuration
    self.delivery = delivery
    self.nowMs = nowMs
    self.store = NodeStore(replica: replica)
    self.hasher = try PasswordHasher(limits: configuration.passwordLimits, threads: configuration.hashingThreads)
    let consumerKey = consumerKey ?? SecretBytes(randomCount: 32)
    self.personMasker = RecordMasker(
      classified: Eduhub_Identity_V1_Person.classifiedFields, pseudonymKey: pseudonymKey, consumerKey: consumerKey)
    self.pseudonymKey = pseudonymKey
    self.consumerKey = consumerKey
    self.sessionKey = sessionKey ?? SecretBytes(randomCount: 32)
    let store = replica.store
    let keys = nodeKeys
    self.tokens = AccessTokens(
      nodeID: nodeID, signingKey: signingKey, lifetimeSeconds: configuration.accessTokenLifetime
    ) { id in
      if let key = keys.keys.withLock({ $0[id] }) { return key }
      guard let record = try? store.get(IdentityCollections.nodeKey, id), !record.deleted,
        let key = try? IdentityCollections.nodeKey.decode(record).publicKey, key.count == 32
      else {
        // Not a published key: perhaps a node enrolled here (asked each time, never cached, so a
        // revoked node's tokens stop verifying at once).
        for provider in keys.providers.withLock({ $0 }) {
          if let key = provider(id) { return key }
        }
        return nil
      }
      keys.keys.withLock { $0[id] = [UInt8](key) }
      return [UInt8](key)
    }
    registerWriteRules()
    // Publish this node's public key so every node that replicates it can verify our tokens.
    let existing = try store.get(IdentityCollections.nodeKey, nodeID)
    let known = existing.flatMap { try? Eduhub_Identity_V1_NodeKeyRecord(serializedBytes: $0.body) }
    if known?.publicKey != Data(signingKey.publicKey) {
      var record = Eduhub_Identity_V1_NodeKeyRecord()
      record.nodeID = nodeID
      record.publicKey = Data(signingKey.publicKey)
      record.createdMs = nowMs()
      try replica.write([try IdentityCollections.nodeKey.write(nodeID, scope: "", record)])
    }
  }

  /// Stops the hashing threads and writes pending audit events.
  public func shutdown() async {
    await hasher.shutdown()
    try? audit.flush()
  }

  package var nowSeconds: Int64 { nowMs() / 1000 }

  // MARK: Permission checks

  /// Audits a refusal and returns the error to throw.
  package func denied(
    _ caller: Caller, _ action: String, target: String, peer: String, _ message: String
  ) -> RPCError {
    audit.record(.init(actor: caller.actor, action: action, target: target, outcome: "denied", detail: message, peer: peer, timeMs: nowMs()))
    return RPCError(.permissionDenied, message)
  }

  /// Throws PERMISSION_DENIED (audited) unless `caller` holds `permission` on `path`.
  package func require(
    _ permission: Permission, at path: String, _ caller: Caller, _ action: String, target: String, peer: String
  ) throws {
    guard caller.can(permission, at: path) else {
      throw denied(caller, action, target: target, peer: peer, "\(permission.rawValue) is needed on \(target)")
    }
  }

  // MARK: Caches and registries

  package func invalidateCallers() { epoch.add(1, ordering: .relaxed) }

  /// Logs a security event at warning (it is audited by whoever refused it as well).
  public func securityEvent(_ message: String, _ details: [String: String]) {
    logger.warning("\(message)", metadata: details.mapValues { .string($0) })
  }

  /// The scope of a node below this one that may issue tokens (nil: not such a node).
  package func issuerScope(_ node: String, in db: Database) throws -> (scope: String, clear: Bool)? {
    guard node != nodeID else { return nil }
    for provider in issuerScopes.withLock({ $0 }) {
      if let scope = try provider(node, db) { return scope }
    }
    return nil
  }

  /// Whether `node` is a node below this one (a registered downstream node).
  package func isBelow(_ node: String, in db: Database) throws -> Bool { try issuerScope(node, in: db) != nil }

  /// Tells Identity which nodes below this one sign tokens: their subtree and whether they read it
  /// in clear (Sync does).
  public func registerIssuerScopes(_ provider: @escaping @Sendable (String, Database) throws -> (scope: String, clear: Bool)?) {
    issuerScopes.withLock { $0.append(provider) }
  }

  /// Declares a replicated collection's rules, once, in the service that owns it: who may
  /// originate its writes (what Push accepts from below) and how its records are classified (what
  /// Pull masks them by). A collection with no declaration is refused upward and not sent down.
  public func declare(_ collection: String, writes: WriteAuthority, classified: RecordClassification) {
    writeAuthorities.register(collection, writes)
    classifications.register(collection, classified)
  }

  /// Declares a typed collection whose message classifies its fields in its .proto: its records are
  /// masked by the type's own classification, so it cannot be declared other than it is.
  public func declare<M: ClassifiedMessage>(_ collection: RecordCollection<M>, writes: WriteAuthority) {
    declare(collection.name, writes: writes, classified: .fields(M.classifiedFields))
  }

  /// Declares a typed collection whose message has no classified field (declared, not assumed).
  public func declare<M>(unclassified collection: RecordCollection<M>, writes: WriteAuthority) {
    declare(collection.name, writes: writes, classified: .unclassified)
  }

  /// Whether field `number` of `collection`'s records is declared readable by any staff of the
  /// region: the collection is unclassified, or its message classifies that field public or
  /// internal (or not at all). A record-dependent or missing declaration is not.
  public func readableByStaff(_ collection: String, field number: Int) -> Bool {
    switch classifications.of(collection) {
    case .unclassified?:
      return true
    case .fields(let fields)?:
      guard let field = fields.first(where: { $0.number == number }), field.isClassified else { return true }
      return field.sensitivity == .public || field.sensitivity == .internal
    case .perGroup?, nil:
      return false
    }
  }

  /// Declares a collection whose changes can alter a resolved caller (roles, sessions, nodes, apps).
  public func registerCallerCollection(_ name: String) {
    _ = callerCollections.withLock { $0.insert(name) }
  }

  /// Records that sync applied changes to `collections`: cached callers and node keys that they may
  /// change are dropped, as a local write would drop them (a role revoked at central, a session
  /// ended, a node disabled take effect on the next call here, not after a token's lifetime).
  public func applied(collections: Set<String>) {
    guard !callerCollections.withLock({ $0.isDisjoint(with: collections) }) else { return }
    invalidateCallers()
    nodeKeys.keys.withLock { $0.removeAll() }
  }

  /// A masker for records of a message with these classified fields, keyed with this node's
  /// pseudonym key.
  package func masker(for classified: [ClassifiedField]) -> RecordMasker {
    RecordMasker(classified: classified, pseudonymKey: pseudonymKey, consumerKey: consumerKey)
  }

  /// The node's pseudonym key (handed to nodes enrolling below this one, so pseudonyms agree).
  package var regionPseudonymKey: SecretBytes { pseudonymKey }

  /// An 8-byte fingerprint of `message` (hex), keyed with this node's own session key: stable on
  /// this node, useless to anyone who would test guesses against it.
  package func keyedFingerprint(_ message: [UInt8]) -> String {
    // The key is 32 bytes and the length valid: hashing cannot fail.
    let digest = (try? KeyedHash.hash(Array("eduhub-fingerprint\u{0}".utf8) + message, key: sessionKey, length: 16)) ?? []
    return Self.hex(Array(digest.prefix(8)))
  }

  /// The masker of Person records.
  package var peopleMasker: RecordMasker { personMasker }

  /// Adds a source of node public keys for verifying tokens those nodes issued.
  package func registerKeyProvider(_ provider: @escaping @Sendable (String) -> [UInt8]?) {
    nodeKeys.providers.withLock { $0.append(provider) }
  }

  /// Lets tokens whose subject starts with `prefix` (e.g. `node:`) resolve through `resolve`.
  package func registerPrincipals(prefix: String, _ resolve: @escaping @Sendable (AccessClaims) throws -> Caller) {
    principalResolvers.withLock { $0.append((prefix, resolve)) }
  }
}

extension Caller {
  /// How the audit log names the caller.
  package var actor: String { accountID.isEmpty ? "anonymous" : accountID }

  /// The node's operator at its console (the `eduhub` command): every permission everywhere.
  public static func `operator`(name: String) -> Caller {
    Caller(
      accountID: "operator:\(name)", username: name, personID: "", homeScope: "",
      roles: [HeldRole(grantID: "", role: .cityAdmin, scope: "", permissions: Set(Permission.allCases))],
      children: [], issuer: "", sessionID: "")
  }
}

/// Public keys of nodes, cached from their replicated `node_key` records.
final class KeyRing: Sendable {
  let keys = Mutex<[String: [UInt8]]>([:])
  /// Other sources of nodes' public keys (the sync service's enrolled nodes).
  let providers = Mutex<[@Sendable (String) -> [UInt8]?]>([])
}
