import EduHubAPI
import EduHubCore
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB
import SwiftProtobuf

/// Who may originate writes of the catalog's collections, checked as PublishResource,
/// UpdateResource, RetireResource, Follow and IngestRows check them, with the pushing node's
/// authority as the caller. Counters (views, follows, subscriptions, rows) change with every read;
/// any reader at the node may move them, nothing else of a resource.
extension CatalogService {
  func registerWriteRules() {
    let store = store.records
    identity.declare(CatalogCollections.resource, writes: .checked(by: self) { $0.checkResource })
    identity.declare(unclassified: CatalogCollections.follow, writes: .checked(by: self) { $0.checkFollow })
    // A row is classified by its table's schema (field numbers 8 + column).
    identity.declare(
      DatasetSchema.rowCollection, writes: .checked(by: self) { $0.checkRow },
      classified: .perGroup(
        group: { id in String(id.prefix { $0 != "|" }) },
        fields: { code, db in
          guard let record = try store.get(CatalogCollections.resource, code, in: db),
            let resource = try? CatalogCollections.resource.decode(record)
          else {
            // Rows whose table is unknown here cannot be masked: they are not sent.
            throw StorageError(.rejected, "rows of \(code.prefix(64)) have no table here to classify them")
          }
          return DatasetSchema(resource).classified
        }, idCarries: [DatasetSchema.keyField]))
  }

  /// A resource with its counters cleared: two versions that differ only there differ only by reads.
  package static func withoutCounters(_ resource: Eduhub_Catalog_V1_Resource) -> Eduhub_Catalog_V1_Resource {
    var copy = resource
    copy.views = 0
    copy.follows = 0
    copy.subscriptions = 0
    copy.rowCount = 0
    copy.updatedMs = 0
    return copy
  }

  /// A pushed resource is what PublishResource, UpdateResource or RetireResource would have stored:
  /// the same validation, and the same normalisation (a view's fields classified from
  /// identity.proto, an API's output classified from its dataset, group-by never personal, columns
  /// kept) gives back exactly the pushed definition.
  func checkResource(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "resource \(record.id.prefix(64))"
    let resource = try IdentityService.decode(Eduhub_Catalog_V1_Resource.self, IdentityService.judged(record, existing))
    let old = try existing.map { try IdentityService.decode(Eduhub_Catalog_V1_Resource.self, $0) }
    if let old, !record.deleted, existing?.scope == record.scope, Self.withoutCounters(old) == Self.withoutCounters(resource) {
      return  // only counters moved (views, follows, subscriptions, rows)
    }
    try IdentityService.requireWhereWritten(.catalogPublish, record, existing, node, what)
    guard !record.deleted else { return }
    guard resource.code == record.id, try IdentityService.orgPath(resource.responsibleOrgCode, view) == record.scope else {
      throw PushRefusal("\(what): its responsible org does not match the scope it is stored under")
    }
    if let old, old.responsibleOrgCode != resource.responsibleOrgCode {
      throw PushRefusal("\(what): a resource does not change its responsible org")
    }
    if let old, old.retired, !resource.retired {
      throw PushRefusal("\(what): a retired resource stays retired (no RPC brings one back)")
    }
    let lowered = Self.declassified(resource, from: old)
    if !lowered.isEmpty {
      try IdentityService.requireAuthority(.peopleReadClear, at: record.scope, node, "\(what) (lowers the classification of \(lowered.joined(separator: ", ")))")
    }
    var normalized = resource
    do {
      try Self.validate(normalized)
      var oldShown = old
      oldShown?.responsibleOrgPath = existing?.scope ?? ""
      // Whether the table holds rows is what the store says, not the counter: a counter pushed to
      // zero first would free the schema (drop a personal field, give its column to a public one).
      if var shown = oldShown, shown.rowCount == 0,
        try !store.records.withPrefix(DatasetSchema.rowCollection, idPrefix: resource.code + "|", limit: 1, in: view.database).isEmpty
      {
        shown.rowCount = 1
        oldShown = shown
      }
      try Self.prepareDataset(&normalized, old: oldShown, responsiblePath: record.scope) { code in
        guard let path = try IdentityService.orgPath(code, view) else { throw PushRefusal("no org \(code.prefix(40))") }
        return path
      }
      try prepareApi(&normalized, old: oldShown, responsiblePath: record.scope, in: view.database)
    } catch let error as RPCError {
      throw PushRefusal("\(what): PublishResource would refuse it: \(error.message)")
    }
    guard Self.withoutCounters(normalized) == Self.withoutCounters(resource) else {
      throw PushRefusal("\(what): its definition is not what PublishResource would store (classification, view or API output)")
    }
  }

  func checkFollow(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "follow \(record.id.prefix(100))"
    let mark = try IdentityService.decode(Eduhub_Catalog_V1_FollowRequest.self, IdentityService.judged(record, existing))
    let code = String(record.id.prefix { $0 != "|" })
    guard record.id == code + "|" + mark.code, let resource = try view.live(CatalogCollections.resource.name, code),
      resource.scope == record.scope
    else { throw PushRefusal("\(what): it does not name a resource stored at its scope and its follower") }
    guard let account = try identity.account(mark.code, in: view), !account.scope.isEmpty,
      RecordStore.inScope(account.scope, node.scope)
    else { throw PushRefusal("\(what): its follower is not an account of node \(node.id)'s scope") }
  }

  func checkRow(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "row \(record.id.prefix(100))"
    let code = String(record.id.prefix { $0 != "|" })
    // IngestRows: catalog.publish on the table's org, rows stored at the table's scope.
    guard let table = try view.live(CatalogCollections.resource.name, code), table.scope == record.scope else {
      throw PushRefusal("\(what): it is not a row of a table stored at its scope")
    }
    if let existing, existing.scope != record.scope {
      throw PushRefusal("\(what): a row does not move")
    }
    try IdentityService.requireAuthority(.catalogPublish, at: record.scope, node, what)
    let resource = try IdentityService.decode(Eduhub_Catalog_V1_Resource.self, table)
    guard case .ingested = resource.dataset.source else { throw PushRefusal("\(what): \(code.prefix(64)) does not take ingested rows") }
    if DatasetSchema(resource).personalKey {
      try IdentityService.requireAuthority(.peopleReadClear, at: record.scope, node, "\(what) (its key is personal)")
    }
    // A row, or a deletion with the last body it had: its body names its table and key, and its
    // id is the one IngestRows gives that key (a hash of it, for a personal key).
    guard let fields = try? WireFields.strings(record.body, [1, DatasetSchema.keyField]), fields[1] == code else {
      throw PushRefusal("\(what): its body names another table")
    }
    guard record.id == rowID(DatasetSchema(resource), fields[DatasetSchema.keyField] ?? "") else {
      throw PushRefusal("\(what): its id is not its key's")
    }
  }
}
