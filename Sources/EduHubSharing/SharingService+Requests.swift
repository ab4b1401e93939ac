import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

extension SharingService {
  /// Who must approve a request.
  typealias Chain = RequestMachine.Chain

  /// A time-ordered id (lists sort by it).
  func newID(_ prefix: String) -> String {
    let ms = UInt64(max(0, identity.nowMs()))
    let hex = String(ms, radix: 16)
    return prefix + String(repeating: "0", count: max(0, 11 - hex.count)) + hex + Base64URL.encode(Random.bytes(6))
  }

  /// Checks a request's terms against the resource and fills in the defaults.
  func checkTerms(_ terms: inout Eduhub_Sharing_V1_AccessTerms, _ resource: Eduhub_Catalog_V1_Resource) throws {
    let invalid = Validate.invalid
    try Validate.text(terms.purpose, "purpose", maxLength: 500, required: true, multiline: true)
    guard terms.fields.count <= 500, Set(terms.fields).count == terms.fields.count else { throw invalid("fields must be distinct (at most 500)") }
    let known = Set(resource.fields.map(\.name))
    for field in terms.fields where !known.contains(field) {
      throw invalid("field \(field.prefix(64)) is not a field of \(resource.code)")
    }
    // No list asks for every field there is now; the list is fixed here, so the approvers decide on
    // each field and one added to the table later is not granted without a new decision.
    if terms.fields.isEmpty { terms.fields = resource.fields.map(\.name) }
    if terms.masking == .unspecified { terms.masking = .masked }
    guard [.clear, .masked, .deidentified].contains(terms.masking) else { throw invalid("masking is not a known level") }
    let now = identity.nowMs()
    if terms.expiresMs == 0 { terms.expiresMs = now + Self.yearMs }
    try Self.checkExpiry(terms.expiresMs, now: now)
    if terms.ratePerSecond == 0 { terms.ratePerSecond = Self.defaultRate }
    guard (1...Self.maxRate).contains(terms.ratePerSecond) else { throw invalid("rate_per_second is 1 to \(Self.maxRate)") }
    if terms.dailyQuota == 0 { terms.dailyQuota = Self.defaultQuota }
    guard terms.dailyQuota > 0, terms.expectedVolume >= 0 else { throw invalid("daily_quota and expected_volume may not be negative") }
    terms.consumer.name = ""
  }

  /// INVALID_ARGUMENT unless a grant's expiry lies in the future, at most two years ahead.
  static func checkExpiry(_ expiresMs: Int64, now: Int64) throws {
    guard expiresMs > now, expiresMs <= now + 2 * yearMs else {
      throw Validate.invalid("expires_ms must lie in the future, at most two years ahead")
    }
  }

  /// The consumer's org path (an application: its registering org's), checking that `caller` may
  /// ask for it: staff with share.request on the org; an application itself, or its administrators.
  func consumerPath(_ consumer: Eduhub_Sharing_V1_Consumer, caller: Caller, action: String, peer: String, in db: Database) throws
    -> String
  {
    switch consumer.kind {
    case .org:
      let path = try identity.orgPath(consumer.id, in: db)
      guard Self.actsFor(caller, consumer, path: path) else {
        throw identity.denied(caller, action, target: consumer.id, peer: peer, "share.request is needed on \(consumer.id) to ask for it")
      }
      return path
    case .app:
      guard let (record, _) = try app(consumer.id, in: db) else { throw RPCError(.notFound, "no application \(consumer.id.prefix(64))") }
      guard Self.appConsumer(caller) == consumer.id || caller.can(.shareApps, at: record.scope) else {
        throw identity.denied(caller, action, target: consumer.id, peer: peer, "only the application or its administrators ask for it")
      }
      return record.scope
    case .unspecified, .UNRECOGNIZED:
      throw Validate.invalid("consumer.kind is required (ORG or APP) with consumer.id")
    }
  }

  /// The approval chain of `terms` on `resource`: by the sharing class, and whether personal fields
  /// of a dataset that may hold children's data are asked for.
  func chain(_ terms: Eduhub_Sharing_V1_AccessTerms, _ resource: Eduhub_Catalog_V1_Resource, in db: Database) throws -> Chain {
    let fields = Self.grantedFields(Self.grantOf(terms), of: resource)
    let personal = fields.contains(where: ApiDefinitionCheck.isPersonal)
    var dataset = resource
    // What an API reads decides as well as what it outputs: a COUNT narrowed by an ID-number
    // parameter, or a MIN of birth dates, reads personal data whatever its output is called.
    var personalInputs = false
    if resource.type == .api, let (_, table) = try catalog.stored(resource.api.datasetCode, in: db) {
      dataset = table
      personalInputs = !ApiDefinitionCheck.personalInputs(resource.api, of: table).isEmpty
    }
    let minors: Bool
    switch dataset.dataset.source {
    case .view(let view): minors = ["", "student"].contains(view.personKind)
    // Rows of an ingested dataset may be anyone's: the safe side.
    case .ingested, nil: minors = true
    }
    if personalInputs { return Chain(steward: true, securityOfficer: minors) }
    switch resource.sharingClass {
    case .unconditional:
      // Granted at once, except personal fields in clear.
      let steward = personal && terms.masking == .clear
      return Chain(steward: steward, securityOfficer: steward && minors)
    default:
      return Chain(steward: true, securityOfficer: personal && minors)
    }
  }

  /// A grant of `terms` (the shape `grantedFields` reads).
  static func grantOf(_ terms: Eduhub_Sharing_V1_AccessTerms) -> Eduhub_Sharing_V1_Grant {
    var grant = Eduhub_Sharing_V1_Grant()
    grant.terms = terms
    return grant
  }

  static func step(_ actor: String, _ action: String, _ reason: String = "", at time: Int64) -> Eduhub_Sharing_V1_RequestStep {
    var step = Eduhub_Sharing_V1_RequestStep()
    step.actor = actor
    step.action = action
    step.reason = reason
    step.timeMs = time
    return step
  }

  func loadRequest(_ id: String, in db: Database) throws -> (StoredRecord, Eduhub_Sharing_V1_AccessRequest)? {
    guard let record = try store.live(SharingCollections.request, id, in: db) else { return nil }
    var request = try SharingCollections.request.decode(record)
    request.resourceOrgPath = record.scope
    return (record, request)
  }

  /// Stores a request; an approved one gets its grant, written after it (so a node above, which
  /// checks a pushed grant against its request, always receives the approval first).
  func saveRequest(_ request: Eduhub_Sharing_V1_AccessRequest, scope: String, in db: Database) throws {
    var stored = request
    stored.resourceOrgPath = ""
    try store.put(SharingCollections.request, request.id, scope: scope, stored, in: db)
    if request.state == .approved, try store.records.get(SharingCollections.grant, request.id, in: db) == nil {
      try writeGrant(of: request, scope: scope, in: db)
    }
  }

  /// Approves `request` for good; its grant is written when the request is saved.
  static func approve(_ request: inout Eduhub_Sharing_V1_AccessRequest) {
    request.state = .approved
    request.grantID = request.id
  }

  /// Writes the grant of an approved request and keeps the resource's subscription count.
  func writeGrant(of request: Eduhub_Sharing_V1_AccessRequest, scope: String, in db: Database) throws {
    var grant = Eduhub_Sharing_V1_Grant()
    grant.id = request.id
    grant.terms = request.terms
    grant.state = .active
    grant.createdMs = identity.nowMs()
    grant.updatedMs = grant.createdMs
    grant.version = 1
    grant.consumerPath = request.consumerPath
    try store.put(SharingCollections.grant, grant.id, scope: scope, grant, in: db)
    try recountSubscriptions(request.terms.resourceCode, in: db)
  }

  /// The catalog's subscription count of a resource: its usable grants (active, not expired).
  func recountSubscriptions(_ code: String, in db: Database) throws {
    guard try catalog.stored(code, in: db) != nil else { return }
    var count: Int64 = 0
    let now = identity.nowMs()
    for grantRecord in try store.records.find(SharingCollections.grant, index: "resource", key: code, limit: 100_000, in: db) {
      if Self.unusable(try Eduhub_Sharing_V1_Grant(serializedBytes: grantRecord.body), now: now) == nil { count += 1 }
    }
    try catalog.setSubscriptions(count, of: code, in: db)
  }

  /// Takes `step` on `request` (recorded in its history, its state moved as the workflow says), or
  /// FAILED_PRECONDITION naming what the request's state allows.
  static func take(
    _ step: RequestMachine.Step, on request: inout Eduhub_Sharing_V1_AccessRequest, by actor: String, _ reason: String = "",
    chain: Chain, at now: Int64
  ) throws {
    guard let next = RequestMachine.transition(step, from: request.state, chain: chain) else {
      let why =
        switch step {
        case .amended: "it can no longer change"
        case .withdrawn: "it cannot be withdrawn (a grant is revoked by its steward)"
        default: "there is nothing to decide"
        }
      throw RPCError(.failedPrecondition, "request \(request.id) is \(stateName(request.state)): \(why)")
    }
    request.steps.append(Self.step(actor, step.rawValue, reason, at: now))
    if next == .approved { approve(&request) } else { request.state = next }
  }

  /// Sends a new or amended request down its chain: to the steward, or granted at once.
  func route(_ step: RequestMachine.Step, _ request: inout Eduhub_Sharing_V1_AccessRequest, by actor: String, _ chain: Chain, at now: Int64)
    throws
  {
    request.needsSecurityOfficer = chain.securityOfficer
    try Self.take(step, on: &request, by: actor, chain: chain, at: now)
    if !chain.steward {
      try Self.take(.granted, on: &request, by: "system", "the resource is shared unconditionally", chain: chain, at: now)
    }
  }

  /// ABORTED unless `expected` is 0 or the request's version.
  static func checkVersion(_ request: Eduhub_Sharing_V1_AccessRequest, _ expected: Int32) throws {
    if expected != 0, expected != request.version {
      throw RPCError(.aborted, "request \(request.id) is at version \(request.version), not \(expected)")
    }
  }

  /// Writes a step taken on a stored request (its version bumped) with its audit event.
  func saveStep(
    _ request: inout Eduhub_Sharing_V1_AccessRequest, scope: String, caller: Caller, action: String, detail: String = "", peer: String,
    at now: Int64, in db: Database
  ) throws {
    request.version += 1
    request.updatedMs = now
    try saveRequest(request, scope: scope, in: db)
    try identity.audit.append(.init(actor: caller.actor, action: action, target: request.id, detail: detail, peer: peer, timeMs: now), in: db)
  }

  public func requestAccess(_ request: Eduhub_Sharing_V1_RequestAccessRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sharing_V1_AccessRequest
  {
    let action = "sharing.RequestAccess"
    var terms = request.terms
    return try store.transaction { db in
      let (record, resource) = try self.resource(terms.resourceCode, caller: caller, in: db)
      guard resource.sharingClass != .notShared else {
        throw RPCError(.failedPrecondition, "resource \(resource.code) is not shared")
      }
      guard !resource.retired else { throw RPCError(.failedPrecondition, "resource \(resource.code) is retired") }
      guard resource.dataset.source != nil || (resource.type == .api && resource.hasApi) else {
        throw RPCError(.failedPrecondition, "resource \(resource.code) is not served by this system (see its exchange forms)")
      }
      try checkTerms(&terms, resource)
      let consumerPath = try consumerPath(terms.consumer, caller: caller, action: action, peer: peer, in: db)
      let chain = try chain(terms, resource, in: db)
      let now = identity.nowMs()
      var access = Eduhub_Sharing_V1_AccessRequest()
      access.id = newID("R")
      access.terms = terms
      access.requester = caller.accountID
      access.createdMs = now
      access.updatedMs = now
      access.version = 1
      access.consumerPath = consumerPath
      try route(.submitted, &access, by: caller.actor, chain, at: now)
      try saveRequest(access, scope: record.scope, in: db)
      try identity.audit.append(
        .init(actor: caller.actor, action: action, target: access.id, detail: "\(resource.code) for \(terms.consumer.id)", peer: peer, timeMs: now), in: db)
      access.resourceOrgPath = record.scope
      return access
    }
  }

  /// Whether `actor` approving `request` would approve its own request.
  static func approvesOwn(_ actor: String, _ request: Eduhub_Sharing_V1_AccessRequest) -> Bool {
    actor == request.requester && !actor.hasPrefix("operator:")
  }

  /// The city a path lies in (its first org): where the data security officer's role is held.
  static func city(of path: String) -> String { String(path.prefix { $0 != "/" }) }

  /// Whether `caller` may see `request`.
  func mayRead(_ request: Eduhub_Sharing_V1_AccessRequest, path: String, _ caller: Caller) -> Bool {
    request.requester == caller.accountID || Self.actsFor(caller, request.terms.consumer, path: request.consumerPath)
      || caller.can(.catalogPublish, at: path) || caller.can(.shareSecurity, at: Self.city(of: path))
  }

  public func decide(_ decision: Eduhub_Sharing_V1_DecideRequest, caller: Caller, peer: String) throws -> Eduhub_Sharing_V1_AccessRequest {
    let action = "sharing.Decide"
    guard [.approve, .reject, .askChanges].contains(decision.decision) else { throw Validate.invalid("decision is required") }
    try Validate.text(decision.reason, "reason", maxLength: 500, required: decision.decision != .approve, multiline: true)
    return try store.transaction { db in
      guard let (record, stored) = try loadRequest(decision.requestID, in: db),
        mayRead(stored, path: record.scope, caller)
      else { throw RPCError(.notFound, "no request \(decision.requestID.prefix(64))") }
      var request = stored
      switch RequestMachine.decider(in: request.state) {
      case .steward?:
        guard caller.can(.catalogPublish, at: record.scope) else {
          throw identity.denied(caller, action, target: request.id, peer: peer, "the data steward of the resource's org decides this request")
        }
      case .securityOfficer?:
        guard caller.can(.shareSecurity, at: Self.city(of: record.scope)) else {
          throw identity.denied(caller, action, target: request.id, peer: peer, "the city's data security officer decides this request")
        }
      default:
        throw RPCError(.failedPrecondition, "request \(request.id) is \(Self.stateName(request.state)): there is nothing to decide")
      }
      try Self.checkVersion(request, decision.expectedVersion)
      // Four eyes: whoever asked does not approve (a county administrator is often its org's
      // steward as well). The node's operator at its console is exempt.
      if decision.decision == .approve, Self.approvesOwn(caller.actor, request) {
        throw identity.denied(caller, action, target: request.id, peer: peer, "a request is approved by someone other than its requester")
      }
      let now = identity.nowMs()
      guard let step = RequestMachine.step(deciding: decision.decision, in: request.state) else {
        throw Validate.invalid("decision is required")
      }
      // The chain the request was routed down (its terms have not changed since).
      let chain = Chain(steward: true, securityOfficer: request.needsSecurityOfficer)
      try Self.take(step, on: &request, by: caller.actor, decision.reason, chain: chain, at: now)
      try saveStep(
        &request, scope: record.scope, caller: caller, action: action, detail: request.steps.last?.action ?? "", peer: peer, at: now, in: db)
      return request
    }
  }

  /// The requester (or whoever acts for the consumer) takes back or changes a request.
  func ownRequest(_ id: String, caller: Caller, action: String, peer: String, in db: Database) throws
    -> (StoredRecord, Eduhub_Sharing_V1_AccessRequest)
  {
    guard let (record, request) = try loadRequest(id, in: db) else { throw RPCError(.notFound, "no request \(id.prefix(64))") }
    guard request.requester == caller.accountID || Self.actsFor(caller, request.terms.consumer, path: request.consumerPath) else {
      if mayRead(request, path: record.scope, caller) {
        throw identity.denied(caller, action, target: id, peer: peer, "only the requester changes or withdraws a request")
      }
      throw RPCError(.notFound, "no request \(id.prefix(64))")
    }
    return (record, request)
  }

  public func amendRequest(_ amendment: Eduhub_Sharing_V1_AmendRequestRequest, caller: Caller, peer: String) throws -> Eduhub_Sharing_V1_AccessRequest {
    let action = "sharing.AmendRequest"
    return try store.transaction { db in
      let (record, stored) = try ownRequest(amendment.requestID, caller: caller, action: action, peer: peer, in: db)
      var request = stored
      guard RequestMachine.transition(.amended, from: request.state, chain: Chain(steward: true, securityOfficer: false)) != nil else {
        throw RPCError(.failedPrecondition, "request \(request.id) is \(Self.stateName(request.state)): it can no longer change")
      }
      try Self.checkVersion(request, amendment.expectedVersion)
      var terms = amendment.terms
      guard terms.resourceCode.isEmpty || terms.resourceCode == request.terms.resourceCode,
        !terms.hasConsumer || (terms.consumer.kind == request.terms.consumer.kind && terms.consumer.id == request.terms.consumer.id)
      else { throw Validate.invalid("an amendment keeps the request's resource and consumer") }
      terms.resourceCode = request.terms.resourceCode
      terms.consumer = request.terms.consumer
      let (_, resource) = try self.resource(terms.resourceCode, caller: caller, in: db)
      try checkTerms(&terms, resource)
      let chain = try chain(terms, resource, in: db)
      let now = identity.nowMs()
      request.terms = terms
      try route(.amended, &request, by: caller.actor, chain, at: now)
      try saveStep(&request, scope: record.scope, caller: caller, action: action, peer: peer, at: now, in: db)
      return request
    }
  }

  public func withdrawRequest(_ withdrawal: Eduhub_Sharing_V1_WithdrawRequestRequest, caller: Caller, peer: String) throws -> Eduhub_Sharing_V1_AccessRequest {
    let action = "sharing.WithdrawRequest"
    return try store.transaction { db in
      let (record, stored) = try ownRequest(withdrawal.requestID, caller: caller, action: action, peer: peer, in: db)
      var request = stored
      let now = identity.nowMs()
      try Self.take(.withdrawn, on: &request, by: caller.actor, chain: Chain(steward: true, securityOfficer: request.needsSecurityOfficer), at: now)
      try saveStep(&request, scope: record.scope, caller: caller, action: action, peer: peer, at: now, in: db)
      return request
    }
  }

  public func getRequest(_ get: Eduhub_Sharing_V1_GetRequestRequest, caller: Caller) throws -> Eduhub_Sharing_V1_AccessRequest {
    try store.read { db in
      guard let (record, request) = try loadRequest(get.requestID, in: db),
        mayRead(request, path: record.scope, caller)
      else { throw RPCError(.notFound, "no request \(get.requestID.prefix(64))") }
      return request
    }
  }

  public func listRequests(_ list: Eduhub_Sharing_V1_ListRequestsRequest, caller: Caller) throws -> Eduhub_Sharing_V1_ListRequestsResponse {
    let size = try Validate.pageSize(list.page.pageSize, default: 50, maximum: 500)
    let after = try PageToken.parse(list.page.pageToken, parts: 1)?[0]
    let states = Set(list.states)
    return try store.read { db in
      var found: [String: (StoredRecord, Eduhub_Sharing_V1_AccessRequest)] = [:]
      func add(_ records: [StoredRecord], _ keep: (Eduhub_Sharing_V1_AccessRequest) -> Bool = { _ in true }) throws {
        for record in records where !record.deleted {
          var request = try SharingCollections.request.decode(record)
          request.resourceOrgPath = record.scope
          if keep(request) { found[request.id] = (record, request) }
        }
      }
      let store = store.records
      switch list.filter {
      case .mine:
        try add(store.find(SharingCollections.request, index: "requester", key: caller.accountID, limit: 10_000, in: db))
        let consumers = Self.consumerIDs(of: caller)
        for id in consumers.ids {
          try add(store.find(SharingCollections.request, index: "consumer", key: id, limit: 10_000, in: db)) {
            $0.terms.consumer.kind == consumers.kind
          }
        }
      case .toDecide:
        for scope in caller.scopes(for: .catalogPublish) {
          try add(subtree(SharingCollections.request.name, scope, limit: 10_000, in: db)) { $0.state == .pendingSteward }
        }
        for scope in caller.scopes(for: .shareSecurity) {
          try add(subtree(SharingCollections.request.name, scope, limit: 10_000, in: db)) { $0.state == .pendingSecurity }
        }
      case .stewarded, .UNRECOGNIZED:
        for scope in caller.scopes(for: .catalogPublish) {
          try add(subtree(SharingCollections.request.name, scope, limit: 10_000, in: db))
        }
      }
      var response = Eduhub_Sharing_V1_ListRequestsResponse()
      (response.requests, response.page) = Self.newestFirst(
        found.values.map(\.1).filter { states.isEmpty || states.contains($0.state) }, id: \.id, after: after, size: size)
      return response
    }
  }

  package static func stateName(_ state: Eduhub_Sharing_V1_RequestState) -> String {
    switch state {
    case .pendingSteward: "pending-steward"
    case .pendingSecurity: "pending-security"
    case .changesRequested: "changes-requested"
    case .approved: "approved"
    case .rejected: "rejected"
    case .withdrawn: "withdrawn"
    case .unspecified, .UNRECOGNIZED: "unspecified"
    }
  }
}
