import EduHubAPI
import EduHubCatalog
import EduHubCore
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// Who may originate writes of sharing's collections. Applications are registered by the city's
/// administrators only (never accepted from below). Requests and grants may be written on an edge
/// node (a county steward decides offline), checked as RequestAccess, Decide, AmendRequest,
/// WithdrawRequest and ChangeGrant check them: a grant exists only for a request approved by the
/// whole chain its terms need, and no edge node takes the city security officer's step.
extension SharingService {
  func registerWriteRules() {
    identity.declare(SharingCollections.app, writes: .downOnly)
    identity.declare(unclassified: SharingCollections.request, writes: .checked(by: self) { $0.checkRequest })
    identity.declare(unclassified: SharingCollections.grant, writes: .checked(by: self) { $0.checkGrant })
    identity.registerCallerCollection(SharingCollections.app.name)
  }

  func checkRequest(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "access request \(record.id.prefix(64))"
    guard !record.deleted else { throw PushRefusal("\(what): requests are never deleted") }
    let request = try IdentityService.decode(Eduhub_Sharing_V1_AccessRequest.self, record)
    guard request.id == record.id, let table = try catalog.resource(request.terms.resourceCode, in: view),
      table.scope == record.scope
    else { throw PushRefusal("\(what): it is not stored with its resource") }
    let resource = try IdentityService.decode(Eduhub_Catalog_V1_Resource.self, table)
    let old = try existing.map { try IdentityService.decode(Eduhub_Sharing_V1_AccessRequest.self, $0) }
    if old?.terms != request.terms {
      // Terms as RequestAccess and AmendRequest store them: a field list fixed to fields the
      // resource has, a known masking level, an expiry at most two years ahead, bounded rates.
      var checked = request.terms
      do { try checkTerms(&checked, resource) } catch let error as RPCError {
        throw PushRefusal("\(what): RequestAccess would refuse its terms: \(error.message)")
      }
      guard checked == request.terms else { throw PushRefusal("\(what): its terms are not stored as RequestAccess stores them") }
    }
    if let old {
      guard old.terms.consumer == request.terms.consumer, old.consumerPath == request.consumerPath, old.requester == request.requester
      else { throw PushRefusal("\(what): its consumer and requester do not change") }
    } else {
      // RequestAccess at the node: share.request on a consumer org of its scope.
      guard request.terms.consumer.kind == .org,
        try IdentityService.orgPath(request.terms.consumer.id, view) == request.consumerPath
      else { throw PushRefusal("\(what): an edge node asks only for orgs of its scope") }
      try IdentityService.requireAuthority(.shareRequest, at: request.consumerPath, node, what)
    }
    // The history is kept; the steps a push adds are ones a user of the node could take.
    let before = old?.steps ?? []
    guard request.steps.count >= before.count, Array(request.steps.prefix(before.count)) == before else {
      throw PushRefusal("\(what): its history was rewritten")
    }
    let chain = try self.chain(request.terms, resource, in: view.database)
    for step in request.steps.dropFirst(before.count) {
      guard let kind = RequestMachine.Step(rawValue: step.action) else {
        throw PushRefusal("\(what): \(step.action.prefix(40)) is not a step of the workflow")
      }
      // Every step names who took it: a user of the node's scope, or the system for a grant of
      // unconditional terms.
      if kind == .granted {
        guard step.actor == "system" else { throw PushRefusal("\(what): only the system grants unconditional terms") }
      } else {
        try IdentityService.checkActor(step.actor, node, view, "\(what) (\(step.action))")
      }
      if kind == .approved || kind == .securityApproved, Self.approvesOwn(step.actor, request) {
        throw PushRefusal("\(what): its requester approved it")
      }
      switch RequestMachine.taker(of: kind) {
      case .steward:
        try IdentityService.requireAuthority(.catalogPublish, at: record.scope, node, "\(what) (\(step.action))")
      case .requester:
        try IdentityService.requireAuthority(.shareRequest, at: request.consumerPath, node, "\(what) (\(step.action))")
      case .system:
        guard !chain.steward else { throw PushRefusal("\(what): its terms need the steward's approval") }
      case .securityOfficer:
        // The city's data security officer decides at the city only.
        throw PushRefusal("\(what): node \(node.id) cannot take the step \(step.action)")
      }
    }
    // The state is where the workflow leads from the stored state through the steps added.
    switch RequestMachine.replay(request.steps.dropFirst(before.count).map(\.action), from: old?.state ?? .unspecified, chain: chain) {
    case .success(let state):
      guard state == request.state else {
        throw PushRefusal("\(what): its steps lead to \(Self.stateName(state)), not \(Self.stateName(request.state))")
      }
    case .failure(let error):
      throw PushRefusal("\(what): the step \(error.action) cannot follow \(Self.stateName(error.state))")
    }
    if let old, old.terms != request.terms {
      guard [.pendingSteward, .changesRequested].contains(old.state),
        request.steps.dropFirst(before.count).contains(where: { $0.action == "amended" })
      else { throw PushRefusal("\(what): its terms change only by an amendment before approval") }
    }
    guard request.needsSecurityOfficer == chain.securityOfficer else {
      throw PushRefusal("\(what): its approval chain does not match its terms")
    }
    if request.state == .approved {
      // Approved by the whole chain since the last time the terms were set.
      guard RequestMachine.approvalsCover(chain, in: request.steps) else { throw PushRefusal("\(what): approved without the approvals its terms need") }
    }
  }

  func checkGrant(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "grant \(record.id.prefix(64))"
    guard !record.deleted else { throw PushRefusal("\(what): grants are never deleted") }
    let grant = try IdentityService.decode(Eduhub_Sharing_V1_Grant.self, record)
    // A grant is its request's, approved (the request's own check saw the chain through).
    guard grant.id == record.id, let requestRecord = try view.live(SharingCollections.request.name, grant.id),
      requestRecord.scope == record.scope
    else { throw PushRefusal("\(what): no request of that id is stored with it") }
    let request = try IdentityService.decode(Eduhub_Sharing_V1_AccessRequest.self, requestRecord)
    guard request.state == .approved else { throw PushRefusal("\(what): its request is not approved") }
    guard Self.sameTerms(grant.terms, request.terms), grant.consumerPath == request.consumerPath else {
      throw PushRefusal("\(what): its terms are not the ones approved")
    }
    guard let existing else {
      guard grant.state == .active, grant.terms.expiresMs == request.terms.expiresMs else {
        throw PushRefusal("\(what): a new grant is active with the approved expiry")
      }
      return
    }
    let old = try IdentityService.decode(Eduhub_Sharing_V1_Grant.self, existing)
    guard Self.sameTerms(old.terms, grant.terms), old.consumerPath == grant.consumerPath else {
      throw PushRefusal("\(what): a grant's terms are fixed when it is approved")
    }
    guard old.state != .revoked || grant.state == .revoked else { throw PushRefusal("\(what): a revoked grant stays revoked") }
    if old.state != grant.state || old.terms.expiresMs != grant.terms.expiresMs {
      // ChangeGrant: the steward of the resource's org.
      try IdentityService.requireAuthority(.catalogPublish, at: record.scope, node, what)
      if old.terms.expiresMs != grant.terms.expiresMs {
        guard grant.terms.expiresMs <= identity.nowMs() + 2 * Self.yearMs else {
          throw PushRefusal("\(what): it expires more than two years ahead")
        }
      }
    }
  }

  /// Whether two terms are the same but for their expiry (which renewal moves).
  static func sameTerms(_ a: Eduhub_Sharing_V1_AccessTerms, _ b: Eduhub_Sharing_V1_AccessTerms) -> Bool {
    var a = a
    var b = b
    a.expiresMs = 0
    b.expiresMs = 0
    return a == b
  }
}
