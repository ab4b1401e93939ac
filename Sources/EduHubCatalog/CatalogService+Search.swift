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
    guard let response = try searchResources(request, caller: caller, peer: peer, quick: false) else {
      throw RPCError(.internalError, "search declined")  // only a quick search declines
    }
    return response
  }

  /// A search, or nil when `quick` and it would be slow: a term that may match approximately, or
  /// more than 256 resources changed since the last search (decoding them is the slow part).
  /// Quick searches run on an event loop (`CatalogEndpoints`).
  func searchResources(_ request: Eduhub_Catalog_V1_SearchResourcesRequest, caller: Caller, peer: String, quick: Bool) throws
    -> Eduhub_Catalog_V1_SearchResourcesResponse?
  {
    guard request.query.count <= 100 else { throw RPCError(.invalidArgument, "query has at most 100 characters") }
    let query = CatalogIndex.Query(request.query, exact: request.exact)
    if quick, query.approximate { return nil }
    let size = try Validate.pageSize(request.page.pageSize, default: 20, maximum: 200)
    let token = try PageToken.parse(request.page.pageToken, parts: 2)
    let offset = Int(token?[1] ?? "0") ?? -1
    guard offset >= 0 else { throw RPCError(.invalidArgument, "page_token is not valid") }
    var unpaged = request
    unpaged.page = .init()
    let fingerprint = Self.fingerprint((try? unpaged.serializedBytes()) ?? [])
    let now = identity.nowMs()
    return try store.read { db in
      guard let catalog = try index.snapshot(store: store.records, collection: CatalogCollections.resource.name, limit: quick ? 256 : nil, in: db)
      else { return nil }
      let mine = try followed(by: caller, in: db)
      var response = Eduhub_Catalog_V1_SearchResourcesResponse()
      let codes: [String]
      if let id = token?[0], let snapshot = snapshot(id, account: caller.accountID, fingerprint: fingerprint, now: now) {
        codes = snapshot.codes
        response.total = snapshot.total
        response.facets = snapshot.facets
      } else {
        let orgPath = request.orgCode.isEmpty ? nil : try identity.orgPath(request.orgCode, in: db)
        let found = match(request, query, in: catalog, orgPath: orgPath, followed: mine, caller: caller)
        codes = found.codes
        response.total = Int64(codes.count)
        response.facets = found.facets
      }
      for code in codes.dropFirst(offset).prefix(size) {
        // Later pages show each resource as it is now; one gone (or hidden) since is left out.
        guard let entry = catalog.entry(code), visible(entry.resource, path: entry.scope, to: caller) else { continue }
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
  ///
  /// Only resources the query's byte pairs (`PairBits`) leave in are read at all. For those,
  /// visibility and each filter compare small numbers from the snapshot's flat keys (a filter value
  /// no resource has gets a number nothing equals); the text is tried only where at most one
  /// filter fails, from the packed texts.
  func match(
    _ request: Eduhub_Catalog_V1_SearchResourcesRequest, _ query: CatalogIndex.Query, in catalog: CatalogIndex.Snapshot, orgPath: String?,
    followed mine: Set<String>, caller: Caller
  ) -> (codes: [String], facets: [Eduhub_Catalog_V1_Facet]) {
    // Readers of the catalog see shared resources, and not-shared ones of their own subtrees.
    guard caller.holdsAnywhere(.catalogRead) || caller.holdsAnywhere(.catalogPublish) else { return ([], []) }
    let facetNames = catalog.facets
    var followedCount: Int64 = 0
    var matched: [(entry: CatalogIndex.Entry, score: Int)] = []
    // Each scope path's subtree tests, decided once per search.
    let ownScopes = caller.scopes(for: .orgRead)
    let ownsScope = catalog.scopes.names.map { path in ownScopes.contains { RecordStore.inScope(path, $0) } }
    let inOrg = catalog.scopes.names.map { path in orgPath.map { RecordStore.inScope(path, $0) } ?? true }
    // A requested value no resource has: -2, which no key holds (-1 is "no value").
    func wanted(_ value: String) -> Int32 { value.isEmpty ? -1 : Int32(facetNames.numbers[value] ?? -2) }
    let system = wanted(request.publishingSystem), theme = wanted(request.theme), form = wanted(request.exchangeForm)
    let type = request.type == .unspecified ? -1 : wanted(CatalogIndex.typeName(request.type))
    let sharing = request.sharingClass == .unspecified ? -1 : wanted(CatalogIndex.sharingName(request.sharingClass))
    let followedSlots = Set(mine.compactMap { catalog.slots[$0] })
    let keys = catalog.keys, entries = catalog.entries, names = facetNames.names.count
    var order: [Int] = []
    if let candidates = catalog.candidates(query.required) {
      for (index, var word) in candidates.enumerated() {
        while word != 0 {
          let slot = index * 64 + word.trailingZeroBitCount
          if slot < keys.count { order.append(slot) }
          word &= word - 1
        }
      }
    } else {
      order = Array(keys.indices)
    }
    // Plain locals and no closures in the loop: captured arrays and boxed counters cost a retain
    // per resource.
    let formFacet = Filter.exchangeForm.rawValue
    var counts = [Int64](repeating: 0, count: Filter.allCases.count * names)
    for slot in order {
      let key = keys[slot]
      guard key.live, request.includeRetired || !key.retired else { continue }
      if key.notShared, !ownsScope[Int(key.scope)] { continue }
      // Which filter, if exactly one, turns the resource away: it still counts in that facet.
      var failing = -1
      var failures = 0
      if !inOrg[Int(key.scope)] { (failures, failing) = (failures + 1, Filter.org.rawValue) }
      if system != -1, key.system != system { (failures, failing) = (failures + 1, Filter.system.rawValue) }
      if type != -1, key.type != type { (failures, failing) = (failures + 1, Filter.type.rawValue) }
      if theme != -1, key.theme != theme { (failures, failing) = (failures + 1, Filter.theme.rawValue) }
      if sharing != -1, key.sharing != sharing { (failures, failing) = (failures + 1, Filter.sharingClass.rawValue) }
      let isFollowed = !followedSlots.isEmpty && followedSlots.contains(slot)
      if request.followedByMe, !isFollowed { (failures, failing) = (failures + 1, Filter.followed.rawValue) }
      guard failures <= 1 else { continue }
      var score = 0
      if !query.isEmpty {
        guard let found = catalog.score(slot, query) else { continue }
        score = found
      }
      guard let entry = entries[slot] else { continue }
      if form != -1, form < 0 || key.forms & (1 << UInt64(form & 63)) == 0 || !entry.facetValues[formFacet].contains(Int(form)) {
        (failures, failing) = (failures + 1, formFacet)
        if failures > 1 { continue }
      }
      func count(_ filter: Filter, _ value: Int32) {
        if value >= 0, failing == -1 || failing == filter.rawValue { counts[filter.rawValue * names + Int(value)] += 1 }
      }
      count(.org, key.org)
      count(.system, key.system)
      count(.type, key.type)
      count(.theme, key.theme)
      count(.sharingClass, key.sharing)
      if failing == -1 || failing == formFacet {
        for value in entry.facetValues[formFacet] { counts[formFacet * names + value] += 1 }
      }
      if isFollowed, failing == -1 || failing == Filter.followed.rawValue { followedCount += 1 }
      if failing == -1 { matched.append((entry, score)) }
    }
    func by<T: Comparable>(_ value: (Eduhub_Catalog_V1_Resource) -> T) {
      matched.sort { x, y in
        let a = x.entry.resource, b = y.entry.resource
        return (value(a), b.code) > (value(b), a.code)
      }
    }
    switch request.sort {
    case .updated: by(\.updatedMs)
    case .views: by(\.views)
    case .follows: by(\.follows)
    case .subscriptions: by(\.subscriptions)
    default: matched.sort { $0.score != $1.score ? $0.score > $1.score : $0.entry.precedes($1.entry) }
    }
    let facets = Filter.allCases.map { filter in
      var facet = Eduhub_Catalog_V1_Facet()
      facet.filter = filter.name
      if filter == .followed {
        if followedCount > 0 { facet.counts = ["true": followedCount] }
      } else {
        for number in 0..<names where counts[filter.rawValue * names + number] > 0 {
          facet.counts[facetNames.names[number]] = counts[filter.rawValue * names + number]
        }
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
