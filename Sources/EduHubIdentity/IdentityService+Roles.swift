import EduHubAPI
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB
import SwiftProtobuf

extension IdentityService {
  func publicGrant(_ record: StoredRecord) throws -> Eduhub_Identity_V1_RoleGrant {
    var grant = try IdentityCollections.roleGrant.decode(record)
    grant.orgPath = record.scope
    grant.permissions = Roles.permissions(of: grant.role).map(\.rawValue).sorted()
    return grant
  }

  /// Throws PERMISSION_DENIED (audited) unless `caller` may hand out `role` at `path`: roles.grant
  /// there, and every permission of the role there too (nobody grants more than they hold).
  func requireGrantable(_ role: Eduhub_Identity_V1_Role, at path: String, _ caller: Caller, _ action: String, target: String, peer: String) throws {
    try require(.rolesGrant, at: path, caller, action, target: target, peer: peer)
    let needed = Roles.permissions(of: role)
    // In a fixed order, so the message names the same missing permission every time.
    for permission in Permission.allCases where needed.contains(permission) && !caller.can(permission, at: path) {
      throw denied(caller, action, target: target, peer: peer, "granting \(Roles.name(of: role)) needs \(permission.rawValue) on \(target)")
    }
  }

  public func grantRole(_ request: Eduhub_Identity_V1_GrantRoleRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_RoleGrant
  {
    try Validate.identifier(request.accountID, "account_id")
    try Validate.identifier(request.orgCode, "org_code", maxLength: 32)
    guard !Roles.permissions(of: request.role).isEmpty else { throw Validate.invalid("role is required") }
    guard request.role != .node else { throw Validate.invalid("ROLE_NODE comes with a node's enrollment, not with GrantRole") }
    let action = "identity.GrantRole"
    let record = try store.transaction { db -> StoredRecord in
      let path = try orgPath(request.orgCode, in: db)
      guard try account(request.accountID, in: db) != nil else { throw RPCError(.notFound, "no account \(request.accountID)") }
      try requireGrantable(request.role, at: path, caller, action, target: request.orgCode, peer: peer)
      let existing = try store.records.find(IdentityCollections.roleGrant, index: "account", key: request.accountID, limit: 1000, in: db)
      for record in existing where record.scope == path {
        if try IdentityCollections.roleGrant.decode(record).role == request.role {
          throw RPCError(.alreadyExists, "the account already holds \(Roles.name(of: request.role)) on \(request.orgCode)")
        }
      }
      var grant = Eduhub_Identity_V1_RoleGrant()
      grant.id = Self.newID("G")
      grant.accountID = request.accountID
      grant.role = request.role
      grant.orgCode = request.orgCode
      grant.grantedBy = caller.accountID
      grant.grantedMs = nowMs()
      try store.put(IdentityCollections.roleGrant, grant.id, scope: path, grant, in: db)
      try audit.append(
        .init(actor: caller.actor, action: action, target: request.accountID, detail: "\(Roles.name(of: request.role)) on \(request.orgCode)", peer: peer, timeMs: nowMs()),
        in: db)
      return try store.live(IdentityCollections.roleGrant, grant.id, in: db)!
    }
    invalidateCallers()
    return try publicGrant(record)
  }

  public func revokeRole(_ request: Eduhub_Identity_V1_RevokeRoleRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_RevokeRoleResponse
  {
    try Validate.identifier(request.grantID, "grant_id")
    let action = "identity.RevokeRole"
    try store.transaction { db in
      guard let record = try store.live(IdentityCollections.roleGrant, request.grantID, in: db) else {
        throw RPCError(.notFound, "no role grant \(request.grantID)")
      }
      let grant = try IdentityCollections.roleGrant.decode(record)
      try requireGrantable(grant.role, at: record.scope, caller, action, target: grant.orgCode, peer: peer)
      try store.delete(record, in: db)
      try audit.append(
        .init(actor: caller.actor, action: action, target: grant.accountID, detail: "\(Roles.name(of: grant.role)) on \(grant.orgCode)", peer: peer, timeMs: nowMs()),
        in: db)
    }
    invalidateCallers()
    return Eduhub_Identity_V1_RevokeRoleResponse()
  }

  public func listRoleGrants(_ request: Eduhub_Identity_V1_ListRoleGrantsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_ListRoleGrantsResponse
  {
    try Validate.identifier(request.accountID, "account_id")
    return try store.read { db in
      guard let (record, _) = try account(request.accountID, in: db) else {
        throw RPCError(.notFound, "no account \(request.accountID)")
      }
      if request.accountID != caller.accountID {
        try require(.accountsManage, at: record.scope, caller, "identity.ListRoleGrants", target: request.accountID, peer: peer)
      }
      var response = Eduhub_Identity_V1_ListRoleGrantsResponse()
      response.grants = try store.records.find(IdentityCollections.roleGrant, index: "account", key: request.accountID, limit: 1000, in: db)
        .map(publicGrant)
      return response
    }
  }

  public func listAuditEvents(_ request: Eduhub_Identity_V1_ListAuditEventsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_ListAuditEventsResponse
  {
    // The log covers the whole node, so reading it needs audit.read on the node's whole tree.
    guard caller.roles.contains(where: { $0.permissions.contains(.auditRead) && !$0.scope.contains("/") }) else {
      throw denied(caller, "identity.ListAuditEvents", target: "audit", peer: peer, "audit.read is needed on the root of the org tree")
    }
    guard request.afterSequence >= 0, request.limit >= 0 else { throw Validate.invalid("after_sequence and limit may not be negative") }
    for (value, name) in [(request.actor, "actor"), (request.action, "action"), (request.outcome, "outcome")] {
      try Validate.text(value, name, maxLength: 64)
    }
    let limit = request.limit == 0 ? 100 : min(Int(request.limit), 1000)
    var response = Eduhub_Identity_V1_ListAuditEventsResponse()
    do {
      response.events = try audit.events(
        after: request.afterSequence, actor: request.actor, action: request.action, outcome: request.outcome, limit: limit)
    } catch {
      throw RPCError(.internalError, "the audit log cannot be read")
    }
    if response.events.count == limit, let last = response.events.last { response.nextAfterSequence = last.sequence }
    return response
  }
}
