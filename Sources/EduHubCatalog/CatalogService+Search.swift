import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// The order of one search's results, kept so that later pages continue it even while the
/// catalog changes (ten minutes, a bounded number at a time).
struct SearchSnapshot: Sendable {
  let account: String
  let fingerprint: String
  let codes: [String]
  let total: Int64
  let facets: [Eduhub_Catalog_V1_Facet]
  let createdMs: Int64
}

extension CatalogService {
  static let snapshotLifetimeMs: Int64 = 10 * 60 * 1000
  static let snapshotLimit = 64

  /// Search: the visible resources that pass the filters and match the text, best first; facet
  /// counts per filter over the resources that pass every other filter (so each count says how
  /// many results choosing that value gives); a page of them.
  public func searchResources(_ request: Eduhub_Catalog_V1_SearchResourcesRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_SearchResourcesResponse
  {
    guard request.query.count <= 100 else { throw RPCError(.invalidArgument, "query has at most 100 characters") }
    let size = try Validate.pageSize(request.page.pageSize, default: 20, maximum: 200)
    let token = try PageToken.parse(request.page.pageToken, parts: 2)
    let offset = Int(token?[1] ?? "0") ?? -1
    guard offset >= 0 else { throw RPCError(.invalidArgument, "page_token is not valid") }
    var unpaged = request
    unpaged.page = .init()
    let fingerprint = Self.fingerprint((try? unpaged.serializedBytes()) ?? [])
    let now = identity.nowMs()
    return try store.read { db in
      let (entries, facetNames) = try index.entries(store: store.records, collection: CatalogCollections.resource.name, in: db)
      let mine = try followed(by: caller, in: db)
      var response = Eduhub_Catalog_V1_SearchResourcesResponse()
      let codes: [String]
      if let id = token?[0], let snapshot = snapshot(id, account: caller.accountID, fingerprint: fingerprint, now: now) {
        codes = snapshot.codes
        response.total = snapshot.total
        response.facets = snapshot.facets
      } else {
        let orgPath = request.orgCode.isEmpty ? nil : try identity.orgPath(request.orgCode, in: db)
        let found = try match(request, entries: entries, facetNames: facetNames, orgPath: orgPath, followed: mine, caller: caller)
        codes = found.codes
        response.total = Int64(codes.count)
        response.facets = found.facets
      }
      for code in codes.dropFirst(offset).prefix(size) {
        // Later pages show each resource as it is now; one gone (or hidden) since is left out.
        guard let entry = entries[code], visible(entry.resource, path: entry.scope, to: caller) else { continue }
        var resource = entry.resource
        resource.followed = mine.contains(code)
        response.resources.append(resource)
      }
      if offset + size < codes.count {
        var id = token?[0] ?? ""
        if offset == 0 || snapshot(id, account: caller.accountID, fingerprint: fingerprint, now: now) == nil {
          id = keep(SearchSnapshot(account: caller.accountID, fingerprint: fingerprint, codes: codes, total: response.total, facets: response.facets, createdMs: now))
        }
        response.page.nextPageToken = PageToken.make([id, "\(offset + size)"])
      }
      return response
    }
  }

  /// The filters a search can set, in facet order.
  enum Filter: Int, CaseIterable {
    case org, system, type, theme, exchangeForm, sharingClass, followed

    var name: String {
      switch self {
      case .org: "org_code"
      case .system: "publishing_system"
      case .type: "type"
      case .theme: "theme"
      case .exchangeForm: "exchange_form"
      case .sharingClass: "sharing_class"
      case .followed: "followed_by_me"
      }
    }

  }

  /// The codes of the matching resources in the requested order, and the facets.
  func match(
    _ request: Eduhub_Catalog_V1_SearchResourcesRequest, entries: [String: CatalogIndex.Entry], facetNames: CatalogIndex.Facets,
    orgPath: String?,
    followed mine: Set<String>, caller: Caller
  ) throws -> (codes: [String], facets: [Eduhub_Catalog_V1_Facet]) {
    let query = CatalogIndex.Query(request.query, exact: request.exact)
    var counts = [[Int64]](repeating: [Int64](repeating: 0, count: facetNames.names.count), count: Filter.allCases.count)
    var followedCount: Int64 = 0
    var matched: [(entry: CatalogIndex.Entry, score: Int)] = []
    // Visibility, hoisted: readers of the catalog see shared resources, and not-shared ones of
    // their own subtrees.
    guard caller.holdsAnywhere(.catalogRead) || caller.holdsAnywhere(.catalogPublish) else { return ([], []) }
    let ownScopes = caller.scopes(for: .orgRead)
    for entry in entries.values {
      let resource = entry.resource
      guard request.includeRetired || !resource.retired else { continue }
      if resource.sharingClass == .notShared, !ownScopes.contains(where: { RecordStore.inScope(entry.scope, $0) }) {
        continue
      }
      let isFollowed = mine.contains(resource.code)
      // Which filter, if exactly one, turns the resource away: it still counts in that facet.
      var failing: Filter?
      var failures = 0
      for filter in Filter.allCases {
        let passes: Bool
        switch filter {
        case .org: passes = orgPath.map { RecordStore.inScope(entry.scope, $0) } ?? true
        case .system: passes = request.publishingSystem.isEmpty || resource.publishingSystem == request.publishingSystem
        case .type: passes = request.type == .unspecified || resource.type == request.type
        case .theme: passes = request.theme.isEmpty || resource.theme == request.theme
        case .exchangeForm: passes = request.exchangeForm.isEmpty || resource.exchangeForms.contains(request.exchangeForm)
        case .sharingClass: passes = request.sharingClass == .unspecified || resource.sharingClass == request.sharingClass
        case .followed: passes = !request.followedByMe || isFollowed
        }
        if !passes {
          failures += 1
          failing = filter
          if failures > 1 { break }
        }
      }
      guard failures <= 1 else { continue }
      var score = 0
      if !query.isEmpty {
        guard let found = CatalogIndex.score(entry, query) else { continue }
        score = found
      }
      for filter in Filter.allCases where failing == nil || failing == filter {
        if filter == .followed {
          if isFollowed { followedCount += 1 }
        } else {
          for value in entry.facetValues[filter.rawValue] { counts[filter.rawValue][value] += 1 }
        }
      }
      if failing == nil { matched.append((entry, score)) }
    }
    func byName(_ a: Eduhub_Catalog_V1_Resource, _ b: Eduhub_Catalog_V1_Resource) -> Bool { (a.name, a.code) < (b.name, b.code) }
    switch request.sort {
    case .updated: matched.sort { ($0.entry.resource.updatedMs, $1.entry.resource.code) > ($1.entry.resource.updatedMs, $0.entry.resource.code) }
    case .views: matched.sort { ($0.entry.resource.views, $1.entry.resource.code) > ($1.entry.resource.views, $0.entry.resource.code) }
    case .follows: matched.sort { ($0.entry.resource.follows, $1.entry.resource.code) > ($1.entry.resource.follows, $0.entry.resource.code) }
    case .subscriptions:
      matched.sort { ($0.entry.resource.subscriptions, $1.entry.resource.code) > ($1.entry.resource.subscriptions, $0.entry.resource.code) }
    default:
      matched.sort { $0.score != $1.score ? $0.score > $1.score : byName($0.entry.resource, $1.entry.resource) }
    }
    let facets = Filter.allCases.map { filter in
      var facet = Eduhub_Catalog_V1_Facet()
      facet.filter = filter.name
      if filter == .followed {
        if followedCount > 0 { facet.counts = ["true": followedCount] }
      } else {
        for (number, count) in counts[filter.rawValue].enumerated() where count > 0 { facet.counts[facetNames.names[number]] = count }
      }
      return facet
    }
    return (matched.map(\.entry.resource.code), facets)
  }

  /// A kept search order, if `id` names one of this caller's for the same request, still fresh.
  func snapshot(_ id: String, account: String, fingerprint: String, now: Int64) -> SearchSnapshot? {
    snapshots.withLock { kept in
      guard let snapshot = kept[id], snapshot.account == account, snapshot.fingerprint == fingerprint,
        now - snapshot.createdMs < Self.snapshotLifetimeMs
      else { return nil }
      return snapshot
    }
  }

  /// Keeps a search order; returns its id. The oldest go first when too many are kept.
  func keep(_ snapshot: SearchSnapshot) -> String {
    let id = String(UInt64.random(in: 1...UInt64.max), radix: 36)
    snapshots.withLock { kept in
      kept = kept.filter { snapshot.createdMs - $0.value.createdMs < Self.snapshotLifetimeMs }
      while kept.count >= Self.snapshotLimit, let oldest = kept.min(by: { $0.value.createdMs < $1.value.createdMs }) {
        kept[oldest.key] = nil
      }
      kept[id] = snapshot
    }
    return id
  }

  /// FNV-1a of a request's bytes: tells a page token which request it belongs to.
  static func fingerprint(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return String(hash, radix: 36)
  }
}
