import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// The sync service of a node: its downstream nodes' enrollment and authentication (the pull and
/// push of changes come next, on the same identities).
///
/// A node's access token has the subject `node:<id>`; the caller it resolves to holds the `node`
/// role on the node's scope, with `people.read.clear` there only if its clearance is clear.
public final class SyncService: Sendable {
  public let identity: IdentityService
  /// The node's storage (shared with every service; this one owns its own collections in it).
  public let store: NodeStore
  let challenges = NodeChallenges()
  /// Live sessions a node may hold at once; authenticating again ends the oldest.
  public static let sessionsPerNode = 4
  /// Nodes' login sessions, by id: kept here, not in the replicated store (they mean something
  /// only to this node; a node simply authenticates again after a restart).
  /// `opened` orders them (many open within one second, so expiries tie).
  let sessions = Mutex<[String: (nodeID: String, expiresMs: Int64, opened: UInt64)]>([:])
  let sessionsOpened = Atomic<UInt64>(0)
  /// This store's identity once read (see `storeID()`).
  let knownStoreID = Mutex<String?>(nil)
  /// Called (in the pushing call's task, so within its trace) when a node below pushed writes this
  /// node took: a node that syncs with an upstream sends them on at once.
  public let onDownstreamWrites = Mutex<(@Sendable () -> Void)?>(nil)
  /// How long an enrollment token is valid.
  static let enrollmentLifetimeMs: Int64 = 86_400_000

  public init(identity: IdentityService) {
    self.identity = identity
    self.store = identity.store
    registerWriteRules()
    identity.registerCallerCollection(SyncCollections.node.name)
    identity.registerPrincipals(prefix: "node:") { [weak self] claims in
      guard let self else { throw RPCError(.unauthenticated, "the node service is gone") }
      return try self.caller(for: claims)
    }
    // Tokens a downstream node issued to its own users verify here with its enrolled key, for
    // accounts of its scope only.
    let store = store.records
    identity.registerIssuerScopes { id, db in
      guard let record = try store.get(SyncCollections.node, id, in: db), !record.deleted else { return nil }
      let stored = try? SyncCollections.node.decode(record)
      return (record.scope, stored?.node.clearance == .clear)
    }
    identity.registerKeyProvider { id in
      guard let record = try? store.get(SyncCollections.node, id), !record.deleted,
        let stored = try? SyncCollections.node.decode(record), stored.node.state == .active,
        stored.node.publicKey.count == 32
      else { return nil }
      return [UInt8](stored.node.publicKey)
    }
  }

  static func subject(_ nodeID: String) -> String { "node:" + nodeID }

  func node(_ id: String, in db: Database) throws -> (StoredRecord, Eduhub_Sync_V1_SyncNodeRecord)? {
    guard let record = try store.live(SyncCollections.node, id, in: db) else { return nil }
    return (record, try SyncCollections.node.decode(record))
  }

  static func publicNode(_ record: StoredRecord, _ stored: Eduhub_Sync_V1_SyncNodeRecord) -> Eduhub_Sync_V1_SyncNode {
    var node = stored.node
    node.scope = record.scope
    return node
  }

  // MARK: Enrollment

  public func createNode(_ request: Eduhub_Sync_V1_CreateNodeRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sync_V1_CreateNodeResponse
  {
    try Validate.identifier(request.nodeID, "node_id")
    try Validate.identifier(request.orgCode, "org_code")
    guard request.clearance == .clear || request.clearance == .masked else {
      throw RPCError(.invalidArgument, "clearance must be CLEARANCE_CLEAR or CLEARANCE_MASKED")
    }
    guard request.nodeID != identity.nodeID else { throw RPCError(.invalidArgument, "a node cannot enroll itself") }
    let action = "sync.CreateNode"
    let secret = Base64URL.encode(Random.bytes(32))
    return try store.transaction { db in
      let path = try identity.orgPath(request.orgCode, in: db)
      try identity.require(.nodesManage, at: path, caller, action, target: request.orgCode, peer: peer)
      // A node's clearance is at most its creator's: only someone who reads the subtree in clear
      // (the node's operator) makes a node that does. A county administrator, who reads children
      // masked, cannot give a laptop of theirs more than that.
      if request.clearance == .clear, !caller.can(.peopleReadClear, at: path) {
        throw identity.denied(
          caller, action, target: request.orgCode, peer: peer,
          "a clear node needs people.read.clear on \(request.orgCode): create it masked, or as the node's operator")
      }
      if try store.records.get(SyncCollections.node, request.nodeID, in: db) != nil {
        throw RPCError(.alreadyExists, "node \(request.nodeID) already exists")
      }
      var stored = Eduhub_Sync_V1_SyncNodeRecord()
      stored.node.id = request.nodeID
      stored.node.orgCode = request.orgCode
      stored.node.clearance = request.clearance
      stored.node.state = .pending
      stored.node.createdBy = caller.accountID
      stored.node.createdMs = identity.nowMs()
      stored.enrollmentHash = IdentityService.secretDigest(secret)
      stored.enrollmentExpiresMs = identity.nowMs() + Self.enrollmentLifetimeMs
      try store.put(SyncCollections.node, request.nodeID, scope: path, stored, in: db)
      try identity.audit.append(
        .init(actor: caller.actor, action: action, target: request.nodeID, detail: "scope \(path), \(request.clearance)", peer: peer, timeMs: identity.nowMs()),
        in: db)
      var response = Eduhub_Sync_V1_CreateNodeResponse()
      response.node = stored.node
      response.node.scope = path
      response.enrollmentToken = request.nodeID + "." + secret
      response.enrollmentExpiresMs = stored.enrollmentExpiresMs
      return response
    }
  }

  public func enroll(_ request: Eduhub_Sync_V1_EnrollRequest, peer: String) throws -> Eduhub_Sync_V1_EnrollResponse {
    let failed = RPCError(.unauthenticated, "enrollment failed: the token is wrong, used or expired")
    let parts = request.enrollmentToken.split(separator: ".", omittingEmptySubsequences: false)
    guard request.enrollmentToken.utf8.count <= 200, parts.count == 2 else { throw failed }
    guard request.publicKey.count == SigningKey.publicKeyBytes else {
      throw RPCError(.invalidArgument, "public_key must be an Ed25519 public key of 32 bytes")
    }
    let nodeID = String(parts[0])
    let digest = IdentityService.secretDigest(String(parts[1]))
    let action = "sync.Enroll"
    let outcome = try store.transaction { db -> Result<Eduhub_Sync_V1_EnrollResponse, RPCError> in
      guard let (record, found) = try node(nodeID, in: db) else {
        identity.audit.record(.init(actor: "anonymous", action: action, target: "unknown node", outcome: "failed", peer: peer, timeMs: identity.nowMs()))
        return .failure(failed)
      }
      var stored = found
      guard stored.node.state == .pending, stored.enrollmentExpiresMs > identity.nowMs(),
        ConstantTime.equals(Array(digest.utf8), Array(stored.enrollmentHash.utf8))
      else {
        try identity.audit.append(.init(actor: Self.subject(nodeID), action: action, target: nodeID, outcome: "failed", peer: peer, timeMs: identity.nowMs()), in: db)
        return .failure(failed)
      }
      stored.node.publicKey = request.publicKey
      stored.node.state = .active
      stored.node.enrolledMs = identity.nowMs()
      stored.enrollmentHash = ""
      stored.enrollmentExpiresMs = 0
      try store.put(SyncCollections.node, nodeID, scope: record.scope, stored, in: db)
      try identity.audit.append(.init(actor: Self.subject(nodeID), action: action, target: nodeID, peer: peer, timeMs: identity.nowMs()), in: db)
      var response = Eduhub_Sync_V1_EnrollResponse()
      response.node = Self.publicNode(record, stored)
      response.upstreamNodeID = identity.nodeID
      response.upstreamPublicKey = Data(identity.tokens.publicKey)
      // The key that makes pseudonyms reaches only a node that reads in clear: with it, a masked node
      // could reverse pseudonyms of ID numbers (they are enumerable from birth date and county). A
      // masked node receives pseudonyms already computed, in the records it pulls.
      if stored.node.clearance == .clear {
        response.pseudonymKey = identity.regionPseudonymKey.withUnsafeBytes { Data($0) }
      }
      return .success(response)
    }
    return try outcome.get()
  }

  // MARK: Authentication

  public func challenge(_ request: Eduhub_Sync_V1_ChallengeRequest) throws -> Eduhub_Sync_V1_ChallengeResponse {
    try Validate.identifier(request.nodeID, "node_id")
    // A challenge for any id: whether a node exists is not told to whoever asks.
    let issued = challenges.issue(for: request.nodeID, now: identity.nowMs())
    var response = Eduhub_Sync_V1_ChallengeResponse()
    response.challenge = Data(issued.challenge)
    response.expiresMs = issued.expiresMs
    return response
  }

  public func authenticate(_ request: Eduhub_Sync_V1_AuthenticateRequest, peer: String) throws
    -> Eduhub_Sync_V1_AuthenticateResponse
  {
    try Validate.identifier(request.nodeID, "node_id")
    let failed = RPCError(.unauthenticated, "node authentication failed")
    let action = "sync.Authenticate"
    let challenge = [UInt8](request.challenge)
    let valid = challenges.isValid(challenge, for: request.nodeID, now: identity.nowMs())
    let outcome = try store.transaction { db -> Result<Eduhub_Sync_V1_AuthenticateResponse, RPCError> in
      // Spent only once the signature holds: nobody but the node can fill the spent list.
      guard valid, let (record, stored) = try node(request.nodeID, in: db), stored.node.state == .active,
        SigningKey.verify(
          signature: [UInt8](request.signature), of: NodeChallenges.signedBytes(challenge),
          publicKey: [UInt8](stored.node.publicKey)),
        challenges.spend(challenge, now: identity.nowMs())
      else {
        identity.audit.record(
          .init(actor: Self.subject(request.nodeID), action: action, target: request.nodeID, outcome: "failed", peer: peer, timeMs: identity.nowMs()))
        return .failure(failed)
      }
      // A node enrolled by a node below this one syncs with that node, which relays its writes and
      // answers for it. Met here directly, it would be a registration an owned county wrote for a
      // school of its own making, holding a school administrator's authority the county lacks.
      if try identity.writtenBelow(record, in: db) {
        identity.audit.record(
          .init(
            actor: Self.subject(request.nodeID), action: action, target: request.nodeID, outcome: "denied",
            detail: "enrolled below this node", peer: peer, timeMs: identity.nowMs()))
        return .failure(RPCError(.permissionDenied, "node \(request.nodeID) was enrolled by a node below this one: it syncs with that node"))
      }
      let sessionID = IdentityService.newID("N")
      let issued = identity.tokens.issue(subject: Self.subject(request.nodeID), sessionID: sessionID, now: identity.nowSeconds)
      let now = identity.nowMs()
      sessions.withLock { sessions in
        sessions = sessions.filter { $0.value.expiresMs > now }
        // A node needs one session at a time; a few more for overlapping restarts. An owned node
        // authenticating in a loop ends its own oldest sessions instead of filling memory.
        let own = sessions.filter { $0.value.nodeID == request.nodeID }.sorted { $0.value.opened < $1.value.opened }
        for (id, _) in own.dropLast(Self.sessionsPerNode - 1) { sessions[id] = nil }
        sessions[sessionID] = (request.nodeID, issued.claims.expiresAt * 1000, sessionsOpened.add(1, ordering: .relaxed).newValue)
      }
      try identity.audit.append(.init(actor: Self.subject(request.nodeID), action: action, target: request.nodeID, peer: peer, timeMs: identity.nowMs()), in: db)
      var response = Eduhub_Sync_V1_AuthenticateResponse()
      response.accessToken = issued.token
      response.expiresMs = issued.claims.expiresAt * 1000
      return .success(response)
    }
    return try outcome.get()
  }

  /// The caller a node's token stands for: the `node` role on its scope, clear reads there only
  /// with clearance; refused once the node is revoked or its session ended.
  func caller(for claims: AccessClaims) throws -> Caller {
    let nodeID = String(claims.subject.dropFirst("node:".count))
    return try store.read { db in
      guard let (record, stored) = try node(nodeID, in: db), stored.node.state == .active else {
        throw RPCError(.unauthenticated, "the token's node is not active")
      }
      let now = identity.nowMs()
      guard let session = sessions.withLock({ $0[claims.sessionID] }), session.nodeID == nodeID, session.expiresMs > now else {
        throw RPCError(.unauthenticated, "the token's session was ended")
      }
      var permissions = Roles.permissions(of: .node)
      if stored.node.clearance == .clear { permissions.insert(.peopleReadClear) }
      return Caller(
        accountID: claims.subject, username: nodeID, personID: "", homeScope: record.scope,
        roles: [.init(grantID: "", role: .node, scope: record.scope, permissions: permissions)], children: [],
        issuer: claims.issuer, sessionID: claims.sessionID)
    }
  }

  // MARK: Administration

  public func listNodes(_ request: Eduhub_Sync_V1_ListNodesRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sync_V1_ListNodesResponse
  {
    try Validate.identifier(request.orgCode, "org_code")
    return try store.read { db in
      let path = try identity.orgPath(request.orgCode, in: db)
      try identity.require(.nodesManage, at: path, caller, "sync.ListNodes", target: request.orgCode, peer: peer)
      var response = Eduhub_Sync_V1_ListNodesResponse()
      for record in try store.records.inScope(SyncCollections.node, scope: path, limit: 10_000, in: db) {
        response.nodes.append(Self.publicNode(record, try SyncCollections.node.decode(record)))
      }
      return response
    }
  }

  public func revokeNode(_ request: Eduhub_Sync_V1_RevokeNodeRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sync_V1_SyncNode
  {
    try Validate.identifier(request.nodeID, "node_id")
    let action = "sync.RevokeNode"
    let revoked = try store.transaction { db in
      guard let (record, found) = try self.node(request.nodeID, in: db) else {
        throw RPCError(.notFound, "no node \(request.nodeID)")
      }
      try identity.require(.nodesManage, at: record.scope, caller, action, target: request.nodeID, peer: peer)
      var stored = found
      stored.node.state = .revoked
      stored.enrollmentHash = ""
      try store.put(SyncCollections.node, request.nodeID, scope: record.scope, stored, in: db)
      try identity.audit.append(.init(actor: caller.actor, action: action, target: request.nodeID, peer: peer, timeMs: identity.nowMs()), in: db)
      return Self.publicNode(record, stored)
    }
    sessions.withLock { sessions in sessions = sessions.filter { $0.value.nodeID != request.nodeID } }
    identity.invalidateCallers()
    return revoked
  }
}
