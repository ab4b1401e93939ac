import EduHubAPI
import EduHubRPC
import EduHubReplication

/// The RPC face of ``IdentityService``: one method per RPC of identity.proto, each calling the
/// implementation of the same name with the caller the server's authenticator resolved.
extension IdentityService: Eduhub_Identity_V1_IdentityService.Handler {
  public func createOrg(request: Eduhub_Identity_V1_CreateOrgRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_Org {
    try await store.blocking { try self.createOrg(request, caller: try context.caller(), peer: context.peer) }
  }

  public func getOrg(request: Eduhub_Identity_V1_GetOrgRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_Org {
    try getOrg(request, caller: try context.caller(), peer: context.peer)
  }

  public func moveOrg(request: Eduhub_Identity_V1_MoveOrgRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_Org {
    try await store.blocking { try self.moveOrg(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listOrgs(request: Eduhub_Identity_V1_ListOrgsRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ListOrgsResponse {
    try listOrgs(request, caller: try context.caller(), peer: context.peer)
  }

  public func createPerson(request: Eduhub_Identity_V1_CreatePersonRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_Person {
    try await store.blocking { try self.createPerson(request, caller: try context.caller(), peer: context.peer) }
  }

  /// Inline on the event loop: a token cache hit, one point read from SQLite's page cache, masking.
  public func getPerson(request: Eduhub_Identity_V1_GetPersonRequest, context: ServerContext) throws -> Eduhub_Identity_V1_Person {
    try getPerson(request, caller: try context.caller(), peer: context.peer)
  }

  public func updatePerson(request: Eduhub_Identity_V1_UpdatePersonRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_Person {
    try await store.blocking { try self.updatePerson(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listPeople(request: Eduhub_Identity_V1_ListPeopleRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ListPeopleResponse {
    try listPeople(request, caller: try context.caller(), peer: context.peer)
  }

  public func searchPeople(request: Eduhub_Identity_V1_SearchPeopleRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_SearchPeopleResponse {
    try searchPeople(request, caller: try context.caller(), peer: context.peer)
  }

  public func importPeople(requests: RPCStream<Eduhub_Identity_V1_ImportPeopleRequest>, context: ServerContext) async throws -> Eduhub_Identity_V1_ImportPeopleResponse {
    try await importPeople(requests, caller: try context.caller(), peer: context.peer)
  }

  public func bindGuardian(request: Eduhub_Identity_V1_BindGuardianRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_GuardianBinding {
    try await store.blocking { try self.bindGuardian(request, caller: try context.caller(), peer: context.peer) }
  }

  public func unbindGuardian(request: Eduhub_Identity_V1_UnbindGuardianRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_GuardianBinding {
    try await store.blocking { try self.unbindGuardian(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listGuardianships(request: Eduhub_Identity_V1_ListGuardianshipsRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ListGuardianshipsResponse {
    try listGuardianships(request, caller: try context.caller(), peer: context.peer)
  }

  public func createAccount(request: Eduhub_Identity_V1_CreateAccountRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_CreateAccountResponse {
    try await store.blocking { try self.createAccount(request, caller: try context.caller(), peer: context.peer) }
  }

  public func activateAccount(request: Eduhub_Identity_V1_ActivateAccountRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_TokenPair {
    try await activateAccount(request, peer: context.peer)
  }

  public func login(request: Eduhub_Identity_V1_LoginRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_TokenPair {
    try await login(request, peer: context.peer)
  }

  public func refresh(request: Eduhub_Identity_V1_RefreshRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_TokenPair {
    try await store.blocking { try self.refresh(request, peer: context.peer) }
  }

  public func logout(request: Eduhub_Identity_V1_LogoutRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_LogoutResponse {
    try await store.blocking { try self.logout(caller: try context.caller(), peer: context.peer) }
  }

  public func changePassword(request: Eduhub_Identity_V1_ChangePasswordRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ChangePasswordResponse {
    try await changePassword(request, caller: try context.caller(), peer: context.peer)
  }

  public func endSessions(request: Eduhub_Identity_V1_EndSessionsRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_EndSessionsResponse {
    try await store.blocking { try self.endSessions(request, caller: try context.caller(), peer: context.peer) }
  }

  public func startReset(request: Eduhub_Identity_V1_StartResetRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_StartResetResponse {
    try await store.blocking { try self.startReset(request, caller: try context.caller(), peer: context.peer) }
  }

  public func whoAmI(request: Eduhub_Identity_V1_WhoAmIRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_WhoAmIResponse {
    whoAmI(caller: try context.caller())
  }

  public func grantRole(request: Eduhub_Identity_V1_GrantRoleRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_RoleGrant {
    try await store.blocking { try self.grantRole(request, caller: try context.caller(), peer: context.peer) }
  }

  public func revokeRole(request: Eduhub_Identity_V1_RevokeRoleRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_RevokeRoleResponse {
    try await store.blocking { try self.revokeRole(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listRoleGrants(request: Eduhub_Identity_V1_ListRoleGrantsRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ListRoleGrantsResponse {
    try listRoleGrants(request, caller: try context.caller(), peer: context.peer)
  }

  public func listAuditEvents(request: Eduhub_Identity_V1_ListAuditEventsRequest, context: ServerContext) async throws -> Eduhub_Identity_V1_ListAuditEventsResponse {
    try await store.blocking { try self.listAuditEvents(request, caller: try context.caller(), peer: context.peer) }
  }
}

/// The methods a node registers for Identity: the generated ones, with GetPerson answered from the
/// stored bytes (masked on the wire format, then sent without a decode and re-encode).
public struct IdentityEndpoints: RPCService {
  public let service: IdentityService

  public init(_ service: IdentityService) { self.service = service }

  public var methods: [RPCMethod] {
    let service = self.service
    return service.methods.replacing(
      with: .inlineUnaryEncoded(Eduhub_Identity_V1_IdentityService.Method.getPerson) {
        (request: Eduhub_Identity_V1_GetPersonRequest, context) in
        try service.getPersonBytes(request, caller: try context.caller(), peer: context.peer)
      })
  }
}
