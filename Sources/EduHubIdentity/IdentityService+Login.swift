import SwiftProtobuf
import EduHubAPI
import EduHubCrypto
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB
import Synchronization

extension IdentityService {
  /// The one answer to every failed login: the same for an unknown login, a wrong password, a
  /// locked or an inactive account, so a caller cannot tell which accounts exist.
  static let loginFailed = RPCError(.unauthenticated, "login failed: wrong login or password, or the account is locked")

  /// Counts a failure on `account`: locks it, with a lock that doubles, after the threshold.
  func countFailure(_ account: inout Eduhub_Identity_V1_AccountRecord) {
    account.failedLogins += 1
    let over = Int64(account.failedLogins - configuration.lockoutThreshold)
    if over >= 0 {
      let seconds = min(configuration.lockoutMaximum, configuration.lockoutBase << min(over, 20))
      account.lockedUntilMs = nowMs() + seconds * 1000
    }
  }

  /// Opens a session for `account` and issues its first token pair.
  func openSession(
    for account: Eduhub_Identity_V1_AccountRecord, scope: String, audience: String, maxIdleMs: Int64 = 0, in db: Database
  ) throws -> Eduhub_Identity_V1_TokenPair {
    var session = Eduhub_Identity_V1_SessionRecord()
    session.id = Self.newID("S")
    session.accountID = account.id
    session.maxIdleMs = max(0, maxIdleMs)
    session.createdMs = nowMs()
    session.expiresMs = session.createdMs + configuration.sessionLifetime * 1000
    session.audience = audience
    let secret = Base64URL.encode(Random.bytes(32))
    session.refreshHash = refreshDigest(secret)
    try store.put(IdentityCollections.session, session.id, scope: scope, session, in: db)
    return tokenPair(session: session, secret: secret)
  }

  func tokenPair(session: Eduhub_Identity_V1_SessionRecord, secret: String) -> Eduhub_Identity_V1_TokenPair {
    let issued = tokens.issue(subject: session.accountID, sessionID: session.id, audience: session.audience.isEmpty ? nil : session.audience, now: nowSeconds)
    var pair = Eduhub_Identity_V1_TokenPair()
    pair.accessToken = issued.token
    pair.accessExpiresMs = issued.claims.expiresAt * 1000
    pair.refreshToken = session.id + "." + secret
    pair.refreshExpiresMs = session.expiresMs
    pair.accountID = session.accountID
    return pair
  }

  /// - Parameter maxIdleMs: the session ends when idle longer than this (0: never), whichever
  ///   client refreshes it: the web console's 8 hours.
  public func login(_ request: Eduhub_Identity_V1_LoginRequest, peer: String, maxIdleMs: Int64 = 0) async throws
    -> Eduhub_Identity_V1_TokenPair
  {
    guard !request.login.isEmpty, request.login.utf8.count <= 64, request.password.utf8.count <= 1024 else {
      throw Validate.invalid("login is 1 to 64 characters and password at most 1,024 bytes")
    }
    if !request.audience.isEmpty { try Validate.identifier(request.audience, "audience", maxLength: 64) }
    let action = "identity.Login"
    let found = try store.read { db in try account(login: request.login, in: db) }
    let hash = found.flatMap { $0.1.passwordHash.isEmpty ? nil : $0.1.passwordHash }
    // Always one Argon2id verification, against a decoy when there is no hash: equal timing.
    let matches = try await hasher.verify(request.password, hash: hash)
    guard let (_, _) = found else {
      audit.record(.init(actor: "anonymous", action: action, target: "unknown login", outcome: "failed", peer: peer, timeMs: nowMs()))
      throw Self.loginFailed
    }
    let outcome = try await store.write { [self] db -> Result<Eduhub_Identity_V1_TokenPair, RPCError> in
      // Read again inside the transaction: concurrent failures all count.
      guard let (record, current) = try account(found!.0.id, in: db) else { return .failure(Self.loginFailed) }
      var account = current
      let locked = account.lockedUntilMs > nowMs()
      guard matches, !locked, account.state == .active else {
        var detail = locked ? "locked" : (matches ? "not active" : "wrong password")
        if !locked && !matches {
          countFailure(&account)
          if account.lockedUntilMs > nowMs() { detail += "; locked" }
          try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
        }
        try audit.append(.init(actor: account.id, action: action, target: account.id, outcome: "failed", detail: detail, peer: peer, timeMs: nowMs()), in: db)
        return .failure(Self.loginFailed)
      }
      if account.failedLogins != 0 || account.lockedUntilMs != 0 {
        account.failedLogins = 0
        account.lockedUntilMs = 0
        try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      }
      let pair = try openSession(for: account, scope: record.scope, audience: request.audience, maxIdleMs: maxIdleMs, in: db)
      try audit.append(.init(actor: account.id, action: action, target: account.id, peer: peer, timeMs: nowMs()), in: db)
      return .success(pair)
    }
    return try outcome.get()
  }

  public func activateAccount(_ request: Eduhub_Identity_V1_ActivateAccountRequest, peer: String) async throws
    -> Eduhub_Identity_V1_TokenPair
  {
    guard !request.username.isEmpty, request.username.utf8.count <= 64, request.code.utf8.count <= 64 else {
      throw Validate.invalid("username and code are required")
    }
    if let problem = PasswordRules.problem(with: request.newPassword, username: request.username) {
      throw Validate.invalid(problem)
    }
    let action = "identity.ActivateAccount"
    let failed = RPCError(.unauthenticated, "activation failed: wrong username or code, or the code has expired")
    // The code is checked before the new password is hashed: anonymous callers with wrong codes
    // cost a read, not an Argon2id run on the hashing threads (unknown usernames likewise, so the
    // two answer alike). It is checked again in the transaction that stores the password.
    @Sendable func codeMatches(_ account: Eduhub_Identity_V1_AccountRecord) -> Bool {
      !account.activationHash.isEmpty && account.activationExpiresMs > nowMs() && account.lockedUntilMs <= nowMs()
        && account.state != .disabled
        && ConstantTime.equals(Array(codeDigest(request.code.uppercased()).utf8), Array(account.activationHash.utf8))
    }
    try await store.write { [self] db -> Result<Void, RPCError> in
      guard let (record, current) = try account(username: request.username, in: db) else {
        audit.record(.init(actor: "anonymous", action: action, target: "unknown login", outcome: "failed", peer: peer, timeMs: nowMs()))
        return .failure(failed)
      }
      guard codeMatches(current) else {
        var account = current
        if account.lockedUntilMs <= nowMs() { countFailure(&account) }
        try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
        try audit.append(.init(actor: account.id, action: action, target: account.id, outcome: "failed", peer: peer, timeMs: nowMs()), in: db)
        return .failure(failed)
      }
      return .success(())
    }.get()
    let hash = try await hasher.hash(request.newPassword)
    let outcome = try await store.write { [self] db -> Result<Eduhub_Identity_V1_TokenPair, RPCError> in
      // A concurrent activation may have used the code meanwhile.
      guard let (record, current) = try account(username: request.username, in: db), codeMatches(current) else {
        return .failure(failed)
      }
      var account = current
      account.passwordHash = hash
      account.state = .active
      account.activationHash = ""
      account.activationExpiresMs = 0
      account.failedLogins = 0
      account.lockedUntilMs = 0
      account.sessionsNotBeforeMs = nowMs()
      try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      _ = try revokeSessions(of: account.id, except: nil, reason: "password reset", in: db)
      let pair = try openSession(for: account, scope: record.scope, audience: "", in: db)
      try audit.append(.init(actor: account.id, action: action, target: account.id, peer: peer, timeMs: nowMs()), in: db)
      return .success(pair)
    }
    invalidateCallers()
    return try outcome.get()
  }

  /// - Parameter maxIdleMs: when given, a session whose refresh token was last rotated (or which
  ///   was opened) longer ago than this is ended instead ("idle"); so is one idle longer than the
  ///   limit it was opened with, whichever client refreshes it. The web console's 8 hours are
  ///   enforced here rather than only by its cookie's lifetime, so a copied refresh cookie does not
  ///   outlive them, through the console or the `Refresh` RPC.
  public func refresh(_ request: Eduhub_Identity_V1_RefreshRequest, peer: String, maxIdleMs: Int64? = nil) throws -> Eduhub_Identity_V1_TokenPair {
    let failed = RPCError(.unauthenticated, "the refresh token is not valid")
    let parts = request.refreshToken.split(separator: ".", omittingEmptySubsequences: false)
    guard request.refreshToken.utf8.count <= 200, parts.count == 2 else { throw failed }
    let sessionID = String(parts[0])
    let presented = refreshDigest(String(parts[1]))
    let action = "identity.Refresh"
    var revokedFamily = false
    let outcome = try store.transaction { db -> Result<Eduhub_Identity_V1_TokenPair, RPCError> in
      guard let record = try store.live(IdentityCollections.session, sessionID, in: db) else { return .failure(failed) }
      var session = try IdentityCollections.session.decode(record)
      // A session opened or rotated by a node below this one is refreshed there, not here: an owned
      // node could otherwise write a session with a refresh hash of its choosing and have this node
      // sign tokens for it.
      guard try !writtenBelow(record, in: db) else { return .failure(failed) }
      if ConstantTime.equals(Array(presented.utf8), Array(session.refreshHash.utf8)) {
        guard !session.revoked, session.expiresMs > nowMs() else { return .failure(failed) }
        // The session lives with its account (a session record that names an account it is not
        // stored with was not opened by that account's login) and began after its last "end
        // every session".
        guard let (accountRecord, account) = try account(session.accountID, in: db), account.state == .active,
          accountRecord.scope == record.scope, session.createdMs >= account.sessionsNotBeforeMs - 999
        else { return .failure(failed) }
        let now = nowMs()
        let limits = [maxIdleMs ?? 0, session.maxIdleMs].filter { $0 > 0 }
        if let limit = limits.min(), max(session.refreshedMs, session.createdMs) < now - limit {
          session.revoked = true
          session.revokedReason = "idle"
          try store.put(IdentityCollections.session, session.id, scope: record.scope, session, in: db)
          try audit.append(
            .init(
              actor: session.accountID, action: action, target: session.id, outcome: "denied",
              detail: "session idle for more than \(limit / 60_000) minutes; session ended", peer: peer, timeMs: now), in: db)
          return .failure(failed)
        }
        session.refreshedMs = now
        session.rotatedHashes.append(session.refreshHash)
        if session.rotatedHashes.count > 32 { session.rotatedHashes.removeFirst(session.rotatedHashes.count - 32) }
        let secret = Base64URL.encode(Random.bytes(32))
        session.refreshHash = refreshDigest(secret)
        try store.put(IdentityCollections.session, session.id, scope: record.scope, session, in: db)
        try audit.append(.init(actor: session.accountID, action: action, target: session.id, peer: peer, timeMs: nowMs()), in: db)
        return .success(tokenPair(session: session, secret: secret))
      }
      if session.rotatedHashes.contains(where: { ConstantTime.equals(Array(presented.utf8), Array($0.utf8)) }) {
        // A rotated token came back: someone holds a copy. End the whole family.
        if !session.revoked {
          session.revoked = true
          session.revokedReason = "refresh token reuse"
          try store.put(IdentityCollections.session, session.id, scope: record.scope, session, in: db)
          revokedFamily = true
        }
        try audit.append(
          .init(actor: session.accountID, action: action, target: session.id, outcome: "denied", detail: "reuse of a rotated refresh token; session revoked", peer: peer, timeMs: nowMs()),
          in: db)
      }
      return .failure(failed)
    }
    if revokedFamily { invalidateCallers() }
    return try outcome.get()
  }

  public func logout(caller: Caller, peer: String) throws -> Eduhub_Identity_V1_LogoutResponse {
    try store.transaction { db in
      if let record = try store.live(IdentityCollections.session, caller.sessionID, in: db) {
        var session = try IdentityCollections.session.decode(record)
        session.revoked = true
        session.revokedReason = "logout"
        try store.put(IdentityCollections.session, session.id, scope: record.scope, session, in: db)
      }
      try audit.append(.init(actor: caller.actor, action: "identity.Logout", target: caller.sessionID, peer: peer, timeMs: nowMs()), in: db)
    }
    invalidateCallers()
    return Eduhub_Identity_V1_LogoutResponse()
  }

  public func changePassword(_ request: Eduhub_Identity_V1_ChangePasswordRequest, caller: Caller, peer: String) async throws
    -> Eduhub_Identity_V1_ChangePasswordResponse
  {
    guard request.oldPassword.utf8.count <= 1024 else { throw Validate.invalid("old_password is at most 1,024 bytes") }
    if let problem = PasswordRules.problem(with: request.newPassword, username: caller.username) { throw Validate.invalid(problem) }
    let action = "identity.ChangePassword"
    guard let (_, current) = try store.read({ db in try account(caller.accountID, in: db) }) else {
      throw RPCError(.unauthenticated, "the account no longer exists")
    }
    guard try await hasher.verify(request.oldPassword, hash: current.passwordHash.isEmpty ? nil : current.passwordHash) else {
      audit.record(.init(actor: caller.actor, action: action, target: caller.accountID, outcome: "failed", detail: "wrong old password", peer: peer, timeMs: nowMs()))
      throw RPCError(.permissionDenied, "the old password is wrong")
    }
    let hash = try await hasher.hash(request.newPassword)
    let ended = try await store.write { [self] db -> Int32 in
      guard let (record, found) = try account(caller.accountID, in: db) else { throw RPCError(.unauthenticated, "the account no longer exists") }
      var account = found
      account.passwordHash = hash
      try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      let ended = try revokeSessions(of: account.id, except: caller.sessionID, reason: "password changed", in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: account.id, detail: "\(ended) other sessions ended", peer: peer, timeMs: nowMs()), in: db)
      return ended
    }
    invalidateCallers()
    var response = Eduhub_Identity_V1_ChangePasswordResponse()
    response.endedSessions = ended
    return response
  }

  public func whoAmI(caller: Caller) -> Eduhub_Identity_V1_WhoAmIResponse {
    var response = Eduhub_Identity_V1_WhoAmIResponse()
    response.accountID = caller.accountID
    response.username = caller.username
    response.personID = caller.personID
    response.issuer = caller.issuer
    response.sessionID = caller.sessionID
    response.grants = caller.roles.map { held in
      var grant = Eduhub_Identity_V1_RoleGrant()
      grant.id = held.grantID
      grant.accountID = caller.accountID
      grant.role = held.role
      grant.orgPath = held.scope
      grant.orgCode = String(held.scope.split(separator: "/").last ?? "")
      grant.permissions = held.permissions.map(\.rawValue).sorted()
      return grant
    }
    return response
  }

  /// Whether a node below this one wrote `record` (its vector names a downstream node).
  package func writtenBelow(_ record: StoredRecord, in db: Database) throws -> Bool {
    let vector = try ReplicationEncoding.decodeVector(record.version)
    return try vector.entries.contains { try isBelow($0.node, in: db) }
  }

  /// Resolves a verified token's caller: the account must be active, the session live, and the
  /// token issued after the account's last "end every session".
  func resolveCaller(_ claims: AccessClaims) throws -> Caller {
    let unauthenticated = { (reason: String) in RPCError(.unauthenticated, reason) }
    if let resolver = principalResolvers.withLock({ $0.first { claims.subject.hasPrefix($0.prefix) } }) {
      return try resolver.resolve(claims)
    }
    return try store.read { db in
      guard let (accountRecord, account) = try account(claims.subject, in: db), account.state == .active else {
        throw unauthenticated("the token's account is not active")
      }
      guard claims.issuedAt * 1000 >= account.sessionsNotBeforeMs - 999 else {
        throw unauthenticated("the token's session was ended")
      }
      guard let sessionRecord = try store.live(IdentityCollections.session, claims.sessionID, in: db) else {
        throw unauthenticated("the token's session is unknown")
      }
      let session = try IdentityCollections.session.decode(sessionRecord)
      guard !session.revoked, session.accountID == account.id, sessionRecord.scope == accountRecord.scope, session.expiresMs > nowMs() else {
        throw unauthenticated("the token's session was ended")
      }
      // A node below this one signs tokens for its own users only (a school's key cannot speak for
      // the city's administrator), and what such a token carries is capped at that node: roles
      // inside its scope, read in clear only if the node reads in clear. An owned node can sign
      // whatever it likes; it must never get more here than it holds itself.
      var cap: (scope: String, clear: Bool)?
      if let issuer = try issuerScope(claims.issuer, in: db) {
        guard !issuer.scope.isEmpty, !accountRecord.scope.isEmpty, RecordStore.inScope(accountRecord.scope, issuer.scope) else {
          throw unauthenticated("the token's issuer cannot sign for this account")
        }
        cap = issuer
      }
      // What a node below wrote of the account's credentials or of this session caps the token
      // too, whoever signed it: a password set at a school speaks here only for that school.
      cap = try self.cap(cap, byWritersOf: Self.credentialFields, of: accountRecord, in: db)
      cap = try self.cap(cap, byWritersOf: Self.sessionFields, of: sessionRecord, in: db)
      var roles: [Caller.HeldRole] = []
      for record in try store.records.find(IdentityCollections.roleGrant, index: "account", key: account.id, limit: 1000, in: db) {
        let grant = try IdentityCollections.roleGrant.decode(record)
        var permissions = Roles.permissions(of: grant.role)
        if let cap {
          guard !record.scope.isEmpty, RecordStore.inScope(record.scope, cap.scope) else { continue }
          if !cap.clear { permissions.remove(.peopleReadClear) }
        }
        roles.append(.init(grantID: grant.id, role: grant.role, scope: record.scope, permissions: permissions))
      }
      var children: Set<String> = []
      if !account.personID.isEmpty, cap?.clear ?? true {
        for record in try store.records.find(IdentityCollections.guardianship, index: "guardian", key: account.personID, limit: 1000, in: db) {
          // A capped token's children are those inside its cap (a node's own pupils).
          if let cap, record.scope.isEmpty || !RecordStore.inScope(record.scope, cap.scope) { continue }
          // Only confirmed bindings (two people) give a guardian the child's data.
          let binding = try IdentityCollections.guardianship.decode(record)
          if Self.isConfirmed(binding) { children.insert(binding.childID) }
        }
      }
      return Caller(
        accountID: account.id, username: account.username,
        // A masked issuer's token does not read even its holder's own record in clear.
        personID: cap?.clear ?? true ? account.personID : "", homeScope: accountRecord.scope,
        roles: roles, children: children, issuer: claims.issuer, sessionID: session.id)
    }
  }
}
