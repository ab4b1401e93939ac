import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication

/// The RPC face of ``SharingService``: one method per RPC of sharing.proto, each calling the
/// implementation of the same name with the caller the server's authenticator resolved.
extension SharingService: Eduhub_Sharing_V1_SharingService.Handler {
  public func registerApp(request: Eduhub_Sharing_V1_RegisterAppRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AppSecret {
    try await store.blocking { try self.registerApp(request, caller: try context.caller(), peer: context.peer) }
  }

  public func rotateAppSecret(request: Eduhub_Sharing_V1_RotateAppSecretRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AppSecret {
    try await store.blocking { try self.rotateAppSecret(request, caller: try context.caller(), peer: context.peer) }
  }

  public func setAppDisabled(request: Eduhub_Sharing_V1_SetAppDisabledRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_App {
    try await store.blocking { try self.setAppDisabled(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listApps(request: Eduhub_Sharing_V1_ListAppsRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_ListAppsResponse {
    try listApps(caller: try context.caller())
  }

  public func exchangeToken(request: Eduhub_Sharing_V1_ExchangeTokenRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AppToken {
    try await store.blocking { try self.exchangeToken(request, peer: context.peer) }
  }

  public func requestAccess(request: Eduhub_Sharing_V1_RequestAccessRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AccessRequest {
    try await store.blocking { try self.requestAccess(request, caller: try context.caller(), peer: context.peer) }
  }

  public func decide(request: Eduhub_Sharing_V1_DecideRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AccessRequest {
    try await store.blocking { try self.decide(request, caller: try context.caller(), peer: context.peer) }
  }

  public func amendRequest(request: Eduhub_Sharing_V1_AmendRequestRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AccessRequest {
    try await store.blocking { try self.amendRequest(request, caller: try context.caller(), peer: context.peer) }
  }

  public func withdrawRequest(request: Eduhub_Sharing_V1_WithdrawRequestRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AccessRequest {
    try await store.blocking { try self.withdrawRequest(request, caller: try context.caller(), peer: context.peer) }
  }

  public func getRequest(request: Eduhub_Sharing_V1_GetRequestRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_AccessRequest {
    try getRequest(request, caller: try context.caller())
  }

  public func listRequests(request: Eduhub_Sharing_V1_ListRequestsRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_ListRequestsResponse {
    try listRequests(request, caller: try context.caller())
  }

  public func changeGrant(request: Eduhub_Sharing_V1_ChangeGrantRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_Grant {
    try await store.blocking { try self.changeGrant(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listGrants(request: Eduhub_Sharing_V1_ListGrantsRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_ListGrantsResponse {
    try listGrants(request, caller: try context.caller())
  }

  public func subscribe(
    request: Eduhub_Sharing_V1_SubscribeRequest, response: RPCWriter<Eduhub_Sharing_V1_SubscribeResponse>, context: ServerContext
  ) async throws {
    try await subscribe(request, caller: try context.caller(), peer: context.peer) { bytes in try await response.write(serialized: bytes) }
  }

  public func callApi(request: Eduhub_Sharing_V1_CallApiRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_CallApiResponse {
    try callApi(request, caller: try context.caller(), peer: context.peer)
  }

  public func getCallStats(request: Eduhub_Sharing_V1_CallStatsRequest, context: ServerContext) async throws -> Eduhub_Sharing_V1_CallStatsResponse {
    try await store.blocking { try self.getCallStats(request, caller: try context.caller()) }
  }
}

/// The methods a node registers for Sharing: the generated ones, with CallApi answered on the event
/// loop when it is a point lookup (every key field bound: one indexed read) and as a task otherwise
/// (filters and aggregates may scan a whole dataset).
public struct SharingEndpoints: RPCService {
  public let service: SharingService

  public init(_ service: SharingService) { self.service = service }

  public var methods: [RPCMethod] {
    let service = self.service
    return service.methods.replacing(
      with: .inlineOrTask(Eduhub_Sharing_V1_SharingService.Method.callApi) {
        (request: Eduhub_Sharing_V1_CallApiRequest, context) -> [UInt8]? in
        try service.pointLookupEncoded(request, caller: try context.caller(), peer: context.peer)
      } _: { request, context in
        try service.callApiEncoded(request, caller: try context.caller(), peer: context.peer)
      })
  }
}
