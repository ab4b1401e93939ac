import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import SwiftProtobuf

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

/// The methods a node registers for the catalog: the generated ones, with SearchResources answered
/// on the event loop when it is quick (an in-memory pass over the caught-up catalog and a few
/// indexed reads, a fraction of a millisecond: the thread hop to a task and back cost more than
/// the search) and as a task otherwise (see `searchResources(_:caller:peer:quick:)`).
public struct CatalogEndpoints: RPCService {
  public let service: CatalogService

  public init(_ service: CatalogService) { self.service = service }

  public var methods: [RPCMethod] {
    let service = self.service
    return service.methods.replacing(
      with: .inlineOrTask(Eduhub_Catalog_V1_CatalogService.Method.searchResources) {
        (request: Eduhub_Catalog_V1_SearchResourcesRequest, context) -> [UInt8]? in
        try service.searchResources(request, caller: try context.caller(), peer: context.peer, quick: true)?.serializedBytes()
      } _: { request, context in
        try service.searchResources(request, caller: try context.caller(), peer: context.peer).serializedBytes()
      })
  }
}
