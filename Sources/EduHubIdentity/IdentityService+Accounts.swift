import EduHubAPI
import EduHubCrypto
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf

extension IdentityService {
  /// Lower-case hex, two digits a byte (by table: String(format:) goes through Foundation's locale
  /// machinery for every byte).
  package static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

  /// The digest a 256-bit random secret (an enrollment token's, an application's) is kept as: no
  /// key or salt is needed, as no guess can find one.
  package static func secretDigest(_ secret: String) -> String { hex(KeyedHash.digest(Array(secret.utf8))) }

  /// The digest a one-time code is kept as, keyed with this node's session key like a refresh
  /// secret's: a code is short (ten characters, ~52 bits), and an account record reaches every
  /// node of its scope, so an unkeyed digest would let an owned node search for the code offline.
  /// A code is redeemed at the node that sent it.
  package func codeDigest(_ code: String) -> String { refreshDigest("code:" + code) }

  /// A refresh token's digest, keyed with this node's session key: it never leaves this node, so
  /// no other node (an owned one included) can make a digest this node accepts, and a copied
  /// replica cannot be checked against guesses. A session is refreshed where it was opened.
  package func refreshDigest(_ secret: String) -> String {
    Self.hex((try? KeyedHash.hash(Array(secret.utf8), key: sessionKey)) ?? KeyedHash.digest(Array(secret.utf8)))
  }

  func account(_ id: String, in db: Database) throws -> (StoredRecord, Eduhub_Identity_V1_AccountRecord)? {
    guard let record = try store.live(IdentityCollections.account, id, in: db) else { return nil }
    return (record, try IdentityCollections.account.decode(record))
  }

  func account(username: String, in db: Database) throws -> (StoredRecord, Eduhub_Identity_V1_AccountRecord)? {
    guard let record = try store.records.find(IdentityCollections.account, index: "username", key: username.lowercased(), limit: 1, in: db).first
    else { return nil }
    return (record, try IdentityCollections.account.decode(record))
  }

  /// The account a login names: a username, or a phone number that exactly one account has.
  func account(login: String, in db: Database) throws -> (StoredRecord, Eduhub_Identity_V1_AccountRecord)? {
    if login.utf8.count == 11, login.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
      let found = try store.records.find(IdentityCollections.account, index: "phone", key: login, limit: 2, in: db)
      guard found.count == 1 else { return nil }
      return (found[0], try IdentityCollections.account.decode(found[0]))
    }
    return try account(username: login, in: db)
  }

  static func publicAccount(_ record: Eduhub_Identity_V1_AccountRecord) -> Eduhub_Identity_V1_Account {
    var account = Eduhub_Identity_V1_Account()
    account.id = record.id
    account.username = record.username
    account.phone = Masking.phone(record.phone)
    account.personID = record.personID
    account.state = record.state
    account.orgCode = record.orgCode
    account.createdMs = record.createdMs
    return account
  }

  /// Creates an account pending activation for `person` (nothing is hashed).
  @discardableResult
  func createPendingAccount(person: Eduhub_Identity_V1_Person, path: String, username: String, in db: Database) throws
    -> Eduhub_Identity_V1_AccountRecord
  {
    try Validate.username(username)
    if try account(username: username, in: db) != nil {
      throw RPCError(.alreadyExists, "username \(username) is taken")
    }
    if !(try store.records.find(IdentityCollections.account, index: "person", key: person.id, limit: 1, in: db)).isEmpty {
      throw RPCError(.alreadyExists, "person \(person.id) already has an account")
    }
    var account = Eduhub_Identity_V1_AccountRecord()
    account.id = Self.newID("A")
    account.username = username
    account.phone = person.phone
    account.personID = person.id
    account.orgCode = person.orgCode
    account.state = .pendingActivation
    account.createdMs = nowMs()
    try store.put(IdentityCollections.account, account.id, scope: path, account, in: db)
    return account
  }

  /// The account's phone as an administrator sees it: masked (138****5663), and not at all when
  /// the account is a child's (under 14, or of no known age), whose phone the policy removes.
  func shownPhone(_ account: Eduhub_Identity_V1_AccountRecord, in db: Database) throws -> String {
    guard !account.personID.isEmpty, let record = try store.live(IdentityCollections.person, account.personID, in: db) else {
      return Masking.phone(account.phone)
    }
    let person = try IdentityCollections.person.decode(record)
    guard person.kind == .student else { return Masking.phone(account.phone) }
    switch AgeClass.of(birthDate: CivilDate(iso: person.birthDate), nationalID: person.nationalID, on: today) {
    case .child, .unknown: return ""
    case .minor, .adult: return Masking.phone(account.phone)
    }
  }

  /// Sets a fresh one-time code on `account` and sends it to the account's phone.
  func issueCode(_ account: inout Eduhub_Identity_V1_AccountRecord, purpose: String) throws -> String {
    guard !account.phone.isEmpty else {
      throw RPCError(.failedPrecondition, "the account has no phone to send a code to")
    }
    let code = String(Base64URL.encode(Random.bytes(8)).uppercased().filter { $0.isLetter || $0.isNumber }.prefix(10))
    account.activationHash = codeDigest(code)
    account.activationExpiresMs = nowMs() + configuration.activationLifetime * 1000
    try delivery.deliver(code: code, to: account.phone, purpose: purpose)
    return Masking.phone(account.phone)
  }

  /// Creates an account with a password, active at once: only the node's operator (the `eduhub`
  /// command at the node's console) does this, for the first administrators.
  public func createActiveAccount(username: String, password: String, personID: String = "", orgCode: String, caller: Caller)
    async throws -> Eduhub_Identity_V1_Account
  {
    try Validate.username(username)
    if let problem = PasswordRules.problem(with: password, username: username) { throw Validate.invalid(problem) }
    let hash = try await hasher.hash(password)
    return try await store.write { [self] db in
      let path = try orgPath(orgCode, in: db)
      try require(.accountsManage, at: "", caller, "identity.CreateAccount", target: username, peer: "console")
      if try account(username: username, in: db) != nil { throw RPCError(.alreadyExists, "username \(username) is taken") }
      var account = Eduhub_Identity_V1_AccountRecord()
      account.id = Self.newID("A")
      account.username = username
      account.personID = personID
      account.orgCode = orgCode
      account.state = .active
      account.passwordHash = hash
      account.createdMs = nowMs()
      if !personID.isEmpty {
        guard let person = try store.live(IdentityCollections.person, personID, in: db) else { throw RPCError(.notFound, "no person \(personID)") }
        account.phone = try IdentityCollections.person.decode(person).phone
      }
      try store.put(IdentityCollections.account, account.id, scope: path, account, in: db)
      try audit.append(.init(actor: caller.actor, action: "identity.CreateAccount", target: account.id, peer: "console", timeMs: nowMs()), in: db)
      return Self.publicAccount(account)
    }
  }

  public func createAccount(_ request: Eduhub_Identity_V1_CreateAccountRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_CreateAccountResponse
  {
    try Validate.identifier(request.personID, "person_id")
    try Validate.username(request.username)
    let action = "identity.CreateAccount"
    return try store.transaction { db in
      // One answer for "absent" and "not yours", as GetPerson gives.
      guard let record = try store.live(IdentityCollections.person, request.personID, in: db), caller.can(.accountsManage, at: record.scope) else {
        throw denied(caller, action, target: request.personID, peer: peer, "person \(request.personID) is not one this caller makes accounts for, or does not exist")
      }
      let person = try IdentityCollections.person.decode(record)
      var account = try createPendingAccount(person: person, path: record.scope, username: request.username, in: db)
      var response = Eduhub_Identity_V1_CreateAccountResponse()
      _ = try issueCode(&account, purpose: "activation")
      response.deliveredTo = try shownPhone(account, in: db)
      try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: account.id, peer: peer, timeMs: nowMs()), in: db)
      response.account = Self.publicAccount(account)
      response.account.phone = response.deliveredTo
      return response
    }
  }

  public func startReset(_ request: Eduhub_Identity_V1_StartResetRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_StartResetResponse
  {
    try Validate.identifier(request.accountID, "account_id")
    let action = "identity.StartReset"
    return try store.transaction { db in
      guard let (record, found) = try account(request.accountID, in: db) else {
        throw RPCError(.notFound, "no account \(request.accountID)")
      }
      try require(.accountsManage, at: record.scope, caller, action, target: request.accountID, peer: peer)
      var account = found
      var response = Eduhub_Identity_V1_StartResetResponse()
      _ = try issueCode(&account, purpose: account.state == .pendingActivation ? "activation" : "reset")
      response.deliveredTo = try shownPhone(account, in: db)
      try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: account.id, peer: peer, timeMs: nowMs()), in: db)
      return response
    }
  }

  public func endSessions(_ request: Eduhub_Identity_V1_EndSessionsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_EndSessionsResponse
  {
    try Validate.identifier(request.accountID, "account_id")
    let action = "identity.EndSessions"
    let ended = try store.transaction { db -> Int32 in
      guard let (record, found) = try account(request.accountID, in: db) else {
        throw RPCError(.notFound, "no account \(request.accountID)")
      }
      try require(.accountsManage, at: record.scope, caller, action, target: request.accountID, peer: peer)
      var account = found
      account.sessionsNotBeforeMs = nowMs()
      try store.put(IdentityCollections.account, account.id, scope: record.scope, account, in: db)
      let ended = try revokeSessions(of: account.id, except: nil, reason: "ended by an administrator", in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: account.id, detail: "\(ended) sessions", peer: peer, timeMs: nowMs()), in: db)
      return ended
    }
    invalidateCallers()
    var response = Eduhub_Identity_V1_EndSessionsResponse()
    response.endedSessions = ended
    return response
  }

  /// Revokes the account's live sessions but `except`; returns how many.
  func revokeSessions(of accountID: String, except: String?, reason: String, in db: Database) throws -> Int32 {
    // Sessions of a first sync still waiting for their index keys are found too.
    try store.records.buildDeferredIndexes(in: db)
    var ended: Int32 = 0
    for record in try store.records.find(IdentityCollections.session, index: "account", key: accountID, limit: 100_000, in: db)
    where record.id != except {
      var session = try IdentityCollections.session.decode(record)
      guard !session.revoked, session.expiresMs > nowMs() else { continue }
      session.revoked = true
      session.revokedReason = reason
      try store.put(IdentityCollections.session, session.id, scope: record.scope, session, in: db)
      ended += 1
    }
    return ended
  }
}

extension IdentityService {
  /// The id of the account with `username`, if any (for the operator's tools).
  public func accountID(username: String) throws -> String? {
    try store.read { db in try account(username: username, in: db)?.1.id }
  }
}

extension IdentityService {
  /// The usernames of the accounts among `ids` this node holds (at most 200 looked up), for showing
  /// who acted in a timeline instead of an account id; ids it does not hold (another scope's
  /// accounts on an edge node, operators, apps) are left out and shown as they are.
  public func usernames(for ids: Set<String>) -> [String: String] {
    let wanted = ids.filter { !$0.isEmpty && $0.utf8.count <= 64 }.prefix(200)
    guard !wanted.isEmpty else { return [:] }
    return (try? store.read { db in
      var names: [String: String] = [:]
      for id in wanted {
        if let (_, account) = try account(id, in: db) { names[id] = account.username }
      }
      return names
    }) ?? [:]
  }
}
