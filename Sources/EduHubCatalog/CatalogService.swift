import EduHubAPI
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// The record-store collections of the catalog.
public enum CatalogCollections {
  /// Searched in memory (CatalogIndex), which catches up through the change index.
  public static let resource = RecordCollection<Eduhub_Catalog_V1_Resource>("catalog_resource", indexesChanges: true) { body in
    // A body that is not a resource is refused here rather than when search reads it.
    _ = try Eduhub_Catalog_V1_Resource(serializedBytes: body)
    return .init()
  }

  /// Follow marks: field 1 carries the follower (the index key).
  public static let follow = RecordCollection<Eduhub_Catalog_V1_FollowRequest>("catalog_follow", indexes: ["account"]) { body in
    .init(keys: [("account", try WireFields.strings(body, [1])[1] ?? "")])
  }

  public static var all: [CollectionDefinition] {
    [
      resource.definition, follow.definition,
      // Rows of ingested datasets (see DatasetSchema): found by id prefix, so no index. Their bodies
      // follow each table's own schema, so the collection has no one message type.
      CollectionDefinition(name: DatasetSchema.rowCollection),
    ]
  }
}

/// The data catalog: resources and their datasets, detail with a masked sample and a manual,
/// search with facets, follow.
public final class CatalogService: Sendable {
  public let identity: IdentityService
  /// The node's storage (shared with every service; this one owns its own collections in it).
  public let store: NodeStore
  /// Views counted today, one per viewer and resource (kept in memory: a restart may count again).
  private let viewed = Mutex<(day: String, seen: Set<String>)>(("", []))
  /// The resources in memory for search.
  let index = CatalogIndex()
  /// When each view's row count was last recounted (in memory: a restart recounts on first read).
  let viewCounted = Mutex<[String: Int64]>([:])
  /// Search orders kept for their later pages, by id.
  let snapshots = Mutex<[String: SearchSnapshot]>([:])

  /// Rows shown in a resource's detail.
  static let sampleRows = 5

  public init(identity: IdentityService) {
    self.identity = identity
    self.store = identity.store
    registerWriteRules()
  }

  static func validate(_ resource: Eduhub_Catalog_V1_Resource) throws {
    let invalid = Validate.invalid
    // Codes are identifiers that may also carry dots (dz.student.basic).
    guard (1...64).contains(resource.code.utf8.count),
      resource.code.utf8.allSatisfy({ byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
          || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
      })
    else { throw invalid("code must be 1 to 64 letters, digits, '-', '_' or '.'") }
    func text(_ value: String, _ field: String, _ limit: Int, required: Bool = false) throws {
      try Validate.text(value, field, maxLength: limit, required: required, multiline: true)
    }
    try text(resource.name, "name", 100, required: true)
    try text(resource.summary, "summary", 2000)
    try text(resource.theme, "theme", 32)
    try text(resource.publishingSystem, "publishing_system", 100)
    try text(resource.updateCycle, "update_cycle", 32)
    guard [.table, .api, .file].contains(resource.type) else { throw invalid("type is required") }
    guard [.unconditional, .conditional, .notShared].contains(resource.sharingClass) else { throw invalid("sharing_class is required") }
    guard [.unconditional, .conditional, .notOpen].contains(resource.openingClass) else { throw invalid("opening_class is required") }
    guard resource.exchangeForms.count <= 10 else { throw invalid("at most 10 exchange forms") }
    for form in resource.exchangeForms { try text(form, "exchange form", 32, required: true) }
    guard resource.fields.count <= 500 else { throw invalid("at most 500 fields") }
    var names = Set<String>()
    for field in resource.fields {
      try text(field.name, "field name", 64, required: true)
      try text(field.description_p, "field description", 500)
      guard names.insert(field.name).inserted else { throw invalid("field \(field.name) appears twice") }
      guard field.type != .unspecified, case .some = Optional(field.type) else { throw invalid("field \(field.name) needs a type") }
      if field.sensitivity.rawValue >= 3, field.masking == .unspecified || field.masking == .none {
        throw invalid("field \(field.name) is personal: it needs a masking kind")
      }
    }
    guard resource.rowCount >= 0 else { throw invalid("row_count may not be negative") }
  }

  /// Whether `caller` may know the resource exists: shared ones are visible to every reader of the
  /// catalog; not-shared ones only inside the caller's own subtree.
  package func visible(_ resource: Eduhub_Catalog_V1_Resource, path: String, to caller: Caller) -> Bool {
    guard caller.holdsAnywhere(.catalogRead) || caller.holdsAnywhere(.catalogPublish) else { return false }
    return resource.sharingClass != .notShared || caller.can(.orgRead, at: path)
  }

  package static func writable(_ resource: Eduhub_Catalog_V1_Resource) -> Eduhub_Catalog_V1_Resource {
    var copy = resource
    copy.responsibleOrgPath = ""
    copy.followed = false
    copy.sample = []
    copy.clearManual()
    return copy
  }

  public func publishResource(_ request: Eduhub_Catalog_V1_PublishResourceRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_Resource
  {
    var resource = request.resource
    try Self.validate(resource)
    let action = "catalog.PublishResource"
    return try store.transaction { db in
      let path = try identity.orgPath(resource.responsibleOrgCode, in: db)
      try identity.require(.catalogPublish, at: path, caller, action, target: resource.code, peer: peer)
      if try store.records.get(CatalogCollections.resource, resource.code, in: db) != nil {
        throw RPCError(.alreadyExists, "resource \(resource.code) already exists")
      }
      try Self.prepareDataset(&resource, old: nil, responsiblePath: path) { try identity.orgPath($0, in: db) }
      try prepareApi(&resource, old: nil, responsiblePath: path, in: db)
      // Row counts of datasets are the store's to tell; a file or API resource declares its own.
      switch resource.dataset.source {
      case .view(let view): resource.rowCount = try countView(view, in: db)
      case .ingested: resource.rowCount = 0
      case nil: break
      }
      resource.views = 0
      resource.follows = 0
      resource.subscriptions = 0
      resource.retired = false
      resource.updatedMs = identity.nowMs()
      try store.put(CatalogCollections.resource, resource.code, scope: path, Self.writable(resource), in: db)
      try identity.audit.append(.init(actor: caller.actor, action: action, target: resource.code, peer: peer, timeMs: identity.nowMs()), in: db)
      resource.responsibleOrgPath = path
      return resource
    }
  }

  public func updateResource(_ request: Eduhub_Catalog_V1_UpdateResourceRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_Resource
  {
    try Self.validate(request.resource)
    let action = "catalog.UpdateResource"
    return try store.transaction { db in
      guard let (record, old) = try stored(request.resource.code, in: db), visible(old, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(request.resource.code)")
      }
      try identity.require(.catalogPublish, at: record.scope, caller, action, target: old.code, peer: peer)
      var resource = request.resource
      // The org, the counters and the retirement are not an update's to change.
      resource.responsibleOrgCode = old.responsibleOrgCode
      resource.views = old.views
      resource.follows = old.follows
      resource.subscriptions = old.subscriptions
      resource.retired = old.retired
      if resource.dataset.source != nil { resource.rowCount = old.rowCount }
      try Self.prepareDataset(&resource, old: old, responsiblePath: record.scope) { try identity.orgPath($0, in: db) }
      let lowered = Self.declassified(resource, from: old)
      if !lowered.isEmpty, !caller.can(.peopleReadClear, at: record.scope) {
        throw identity.denied(
          caller, action, target: old.code, peer: peer,
          "lowering the classification of \(lowered.joined(separator: ", ")) needs people.read.clear on the responsible org: its stored rows would go out in clear")
      }
      try prepareApi(&resource, old: old, responsiblePath: record.scope, in: db)
      if case .view(let view) = resource.dataset.source { resource.rowCount = try countView(view, in: db) }
      resource.updatedMs = identity.nowMs()
      try store.put(CatalogCollections.resource, resource.code, scope: record.scope, Self.writable(resource), in: db)
      try identity.audit.append(.init(actor: caller.actor, action: action, target: resource.code, peer: peer, timeMs: identity.nowMs()), in: db)
      resource.responsibleOrgPath = record.scope
      return resource
    }
  }

  public func retireResource(_ request: Eduhub_Catalog_V1_RetireResourceRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_Resource
  {
    let action = "catalog.RetireResource"
    return try store.transaction { db in
      guard let (record, old) = try stored(request.code, in: db), visible(old, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(request.code.prefix(64))")
      }
      try identity.require(.catalogPublish, at: record.scope, caller, action, target: old.code, peer: peer)
      var resource = old
      resource.retired = true
      resource.updatedMs = identity.nowMs()
      try store.put(CatalogCollections.resource, resource.code, scope: record.scope, Self.writable(resource), in: db)
      try identity.audit.append(.init(actor: caller.actor, action: action, target: resource.code, peer: peer, timeMs: identity.nowMs()), in: db)
      return resource
    }
  }

  /// Checks an API resource's definition against the dataset it names and sets its output fields.
  func prepareApi(
    _ resource: inout Eduhub_Catalog_V1_Resource, old: Eduhub_Catalog_V1_Resource?, responsiblePath: String, in db: Database
  ) throws {
    guard resource.hasApi else { return }
    let dataset = try stored(resource.api.datasetCode, in: db).map { ($0.1, $0.0.scope) }
    try ApiDefinitionCheck.prepare(&resource, responsiblePath: responsiblePath, dataset: dataset)
    DatasetSchema.assignColumns(&resource, old: old)
  }

  /// The codes `caller` follows.
  func followed(by caller: Caller, in db: Database) throws -> Set<String> {
    Set(
      try store.records.find(CatalogCollections.follow, index: "account", key: caller.accountID, limit: 10_000, in: db)
        .map { String($0.id.prefix { $0 != "|" }) })
  }

  public func getResource(_ request: Eduhub_Catalog_V1_GetResourceRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_Resource
  {
    let day = String(identity.today.description)
    let firstView = viewed.withLock { state -> Bool in
      if state.day != day { state = (day, []) }
      return state.seen.insert(request.code + "|" + caller.accountID).inserted
    }
    func find(_ db: Database) throws -> (StoredRecord, Eduhub_Catalog_V1_Resource) {
      guard let (record, found) = try stored(request.code, in: db), visible(found, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(request.code.prefix(64))")
      }
      return (record, found)
    }
    // Counting the view is the only write; the detail (a masked sample, which for a view reads
    // people) is read outside the writer's transaction.
    if firstView {
      try store.transaction { db in
        var (record, resource) = try find(db)
        resource.views += 1
        try store.put(CatalogCollections.resource, resource.code, scope: record.scope, Self.writable(resource), in: db)
      }
    }
    return try store.read { db in
      var (record, resource) = try find(db)
      resource.followed = try followed(by: caller, in: db).contains(resource.code)
      if case .view = resource.dataset.source { recountLater(resource.code) }
      // A few rows as this caller would get them (masked), and how to get them.
      resource.sample = try rows(of: resource, scope: record.scope, after: nil, limit: Self.sampleRows, caller: caller, peer: peer, sample: true, in: db).rows
      resource.manual = CatalogManual.make(for: resource)
      return resource
    }
  }

  /// Recounts a view's rows in the background when its count is more than an hour old (people
  /// come and go; counting a city's students takes about a second, too long for a detail call).
  func recountLater(_ code: String) {
    let now = identity.nowMs()
    let due = viewCounted.withLock { counted -> Bool in
      guard now - (counted[code] ?? 0) > 3_600_000 else { return false }
      counted[code] = now
      return true
    }
    guard due else { return }
    Task.detached(priority: .background) { [self] in
      do {
        guard let (view, count) = try store.read({ db -> (Eduhub_Catalog_V1_ViewSource, Int64)? in
          guard let (_, resource) = try stored(code, in: db), case .view(let view) = resource.dataset.source else { return nil }
          return (view, try countView(view, in: db))
        }) else { return }
        try store.transaction { db in
          guard let (record, resource) = try stored(code, in: db), resource.dataset.view == view, resource.rowCount != count else { return }
          var updated = resource
          updated.rowCount = count
          try store.put(CatalogCollections.resource, code, scope: record.scope, Self.writable(updated), in: db)
        }
      } catch {
        viewCounted.withLock { $0[code] = nil }  // try again on a later read
      }
    }
  }

  public func follow(_ code: String, _ on: Bool, caller: Caller, peer: String) throws -> Eduhub_Catalog_V1_FollowResponse {
    try store.transaction { db in
      guard let (record, found) = try stored(code, in: db), visible(found, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(code.prefix(64))")
      }
      let id = code + "|" + caller.accountID
      let existing = try store.live(CatalogCollections.follow, id, in: db)
      var resource = found
      if on, existing == nil {
        var mark = Eduhub_Catalog_V1_FollowRequest()
        mark.code = caller.accountID  // field 1 carries the follower (the index key)
        try store.put(CatalogCollections.follow, id, scope: record.scope, mark, in: db)
        resource.follows += 1
      } else if !on, let existing {
        try store.delete(existing, in: db)
        resource.follows = max(0, resource.follows - 1)
      }
      if (on && existing == nil) || (!on && existing != nil) {
        try store.put(CatalogCollections.resource, code, scope: record.scope, Self.writable(resource), in: db)
      }
      var response = Eduhub_Catalog_V1_FollowResponse()
      response.following = on
      response.follows = resource.follows
      return response
    }
  }

  public func listFollowed(caller: Caller) throws -> Eduhub_Catalog_V1_ListFollowedResponse {
    try store.read { db in
      var response = Eduhub_Catalog_V1_ListFollowedResponse()
      for code in try followed(by: caller, in: db).sorted() {
        guard let (record, resource) = try stored(code, in: db), visible(resource, path: record.scope, to: caller) else { continue }
        var shown = resource
        shown.followed = true
        response.resources.append(shown)
      }
      return response
    }
  }
}
