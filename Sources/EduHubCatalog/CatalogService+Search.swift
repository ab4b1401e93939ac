import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf

extension CatalogService {
  /// Search: the text match (Chinese terms of one or two characters included, best first), then
  /// the filters, the facets of what matched, the order, the page.
  public func search(_ request: Eduhub_Catalog_V1_SearchResourcesRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_SearchResourcesResponse
  {
    guard request.query.count <= 100 else { throw RPCError(.invalidArgument, "query has at most 100 characters") }
    let size = try Validate.pageSize(request.page.pageSize, default: 20, maximum: 200)
    let offset = Int(try PageToken.parse(request.page.pageToken, parts: 1)?[0] ?? "0") ?? -1
    guard offset >= 0 else { throw RPCError(.invalidArgument, "page_token is not valid") }
    return try identity.reading { db in
      let orgPath = request.orgCode.isEmpty ? nil : try identity.orgPath(request.orgCode, in: db)
      let records: [StoredRecord]
      if request.query.trimmingCharacters(in: .whitespaces).isEmpty {
        records = try identity.store.records(CatalogCollections.resource, limit: 100_000, in: db)
      } else {
        records = try identity.store.search(CatalogCollections.resource, query: request.query, limit: 100_000, in: db)
      }
      let mine = try followed(by: caller, in: db)
      var matched: [Eduhub_Catalog_V1_Resource] = []
      for record in records {
        var resource = try Eduhub_Catalog_V1_Resource(serializedBytes: record.body)
        resource.responsibleOrgPath = record.scope
        resource.followed = mine.contains(resource.code)
        guard visible(resource, path: record.scope, to: caller) else { continue }
        guard request.includeRetired || !resource.retired else { continue }
        if let orgPath, !RecordStore.inScope(record.scope, orgPath) { continue }
        if !request.publishingSystem.isEmpty, resource.publishingSystem != request.publishingSystem { continue }
        if request.type != .unspecified, resource.type != request.type { continue }
        if !request.theme.isEmpty, resource.theme != request.theme { continue }
        if !request.exchangeForm.isEmpty, !resource.exchangeForms.contains(request.exchangeForm) { continue }
        if request.sharingClass != .unspecified, resource.sharingClass != request.sharingClass { continue }
        if request.followedByMe, !resource.followed { continue }
        matched.append(resource)
      }
      var response = Eduhub_Catalog_V1_SearchResourcesResponse()
      response.total = Int64(matched.count)
      response.facets = Self.facets(of: matched)
      // Relevance keeps the text match's order (FTS rank); without a query, by name.
      switch request.sort {
      case .updated: matched.sort { ($0.updatedMs, $1.code) > ($1.updatedMs, $0.code) }
      case .views: matched.sort { ($0.views, $1.code) > ($1.views, $0.code) }
      case .follows: matched.sort { ($0.follows, $1.code) > ($1.follows, $0.code) }
      case .subscriptions: matched.sort { ($0.subscriptions, $1.code) > ($1.subscriptions, $0.code) }
      default:
        if request.query.trimmingCharacters(in: .whitespaces).isEmpty { matched.sort { ($0.name, $0.code) < ($1.name, $1.code) } }
      }
      response.resources = Array(matched.dropFirst(offset).prefix(size))
      if offset + size < matched.count { response.page.nextPageToken = PageToken.make(["\(offset + size)"]) }
      return response
    }
  }

  static func facets(of resources: [Eduhub_Catalog_V1_Resource]) -> [Eduhub_Catalog_V1_Facet] {
    func facet(_ name: String, _ values: (Eduhub_Catalog_V1_Resource) -> [String]) -> Eduhub_Catalog_V1_Facet {
      var out = Eduhub_Catalog_V1_Facet()
      out.filter = name
      for resource in resources {
        for value in values(resource) where !value.isEmpty { out.counts[value, default: 0] += 1 }
      }
      return out
    }
    return [
      facet("org_code") { [$0.responsibleOrgCode] },
      facet("publishing_system") { [$0.publishingSystem] },
      facet("type") { ["\($0.type)"] },
      facet("theme") { [$0.theme] },
      facet("exchange_form") { $0.exchangeForms },
      facet("sharing_class") { ["\($0.sharingClass)"] },
    ]
  }
}

extension CatalogService: Eduhub_Catalog_V1_CatalogService.Handler {
  public func publishResource(request: Eduhub_Catalog_V1_PublishResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try publish(request, caller: try context.caller(), peer: context.peer)
  }

  public func updateResource(request: Eduhub_Catalog_V1_UpdateResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try update(request, caller: try context.caller(), peer: context.peer)
  }

  public func retireResource(request: Eduhub_Catalog_V1_RetireResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try retire(request, caller: try context.caller(), peer: context.peer)
  }

  public func getResource(request: Eduhub_Catalog_V1_GetResourceRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_Resource {
    try get(request, caller: try context.caller(), peer: context.peer)
  }

  public func searchResources(request: Eduhub_Catalog_V1_SearchResourcesRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_SearchResourcesResponse {
    try search(request, caller: try context.caller(), peer: context.peer)
  }

  public func follow(request: Eduhub_Catalog_V1_FollowRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_FollowResponse {
    try follow(request.code, true, caller: try context.caller(), peer: context.peer)
  }

  public func unfollow(request: Eduhub_Catalog_V1_FollowRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_FollowResponse {
    try follow(request.code, false, caller: try context.caller(), peer: context.peer)
  }

  public func listFollowed(request: Eduhub_Catalog_V1_ListFollowedRequest, context: ServerContext) async throws -> Eduhub_Catalog_V1_ListFollowedResponse {
    try listFollowed(caller: try context.caller())
  }
}
