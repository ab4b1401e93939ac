import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication

/// The RPC face of ``CatalogService``: one method per RPC of catalog.proto, each calling the
/// implementation of the same name with the caller the server's authenticator resolved.
extension CatalogService: Eduhub_Catalog_V1_CatalogService.Handler {
  public func publishResource(request: Eduhub_Catalog_V1_PublishResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try await store.blocking { try self.publishResource(request, caller: try context.caller(), peer: context.peer) }
  }

  public func updateResource(request: Eduhub_Catalog_V1_UpdateResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try await store.blocking { try self.updateResource(request, caller: try context.caller(), peer: context.peer) }
  }

  public func retireResource(request: Eduhub_Catalog_V1_RetireResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try await store.blocking { try self.retireResource(request, caller: try context.caller(), peer: context.peer) }
  }

  public func getResource(request: Eduhub_Catalog_V1_GetResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try getResource(request, caller: try context.caller(), peer: context.peer)
  }

  public func searchResources(request: Eduhub_Catalog_V1_SearchResourcesRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_SearchResourcesResponse {
    try searchResources(request, caller: try context.caller(), peer: context.peer)
  }

  public func follow(request: Eduhub_Catalog_V1_FollowRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_FollowResponse {
    try await store.blocking { try self.follow(request.code, true, caller: try context.caller(), peer: context.peer) }
  }

  public func unfollow(request: Eduhub_Catalog_V1_FollowRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_FollowResponse {
    try await store.blocking { try self.follow(request.code, false, caller: try context.caller(), peer: context.peer) }
  }

  public func listFollowed(request: Eduhub_Catalog_V1_ListFollowedRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_ListFollowedResponse {
    try listFollowed(caller: try context.caller())
  }

  public func ingestRows(requests: RPCStream<Eduhub_Catalog_V1_IngestRowsRequest>, context: ServerContext) async throws -> Eduhub_Catalog_V1_IngestRowsResponse {
    try await ingestRows(requests, caller: try context.caller(), peer: context.peer)
  }

  public func readRows(request: Eduhub_Catalog_V1_ReadRowsRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_ReadRowsResponse {
    try readRows(request, caller: try context.caller(), peer: context.peer)
  }
}
