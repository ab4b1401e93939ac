import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import GRDB

/// What other services (sharing) ask of the catalog's resources, answered by the catalog, which owns
/// them: no other service names the resource collection or writes a resource.
public protocol ResourceDirectory: Sendable {
  /// Resource `code` as stored (its `responsibleOrgPath` filled in), unless there is none.
  func stored(_ code: String, in db: Database) throws -> (StoredRecord, Eduhub_Catalog_V1_Resource)?
  /// Resource `code` as a push being checked would leave it.
  func resource(_ code: String, in view: PushView) throws -> StoredRecord?
  /// Sets the number of usable subscriptions the catalog shows for resource `code`.
  func setSubscriptions(_ count: Int64, of code: String, in db: Database) throws
  /// The last change to any resource (grows with every definition written here or applied by sync).
  func definitionsSequence(in db: Database) throws -> Int64
}

extension CatalogService: ResourceDirectory {
  public func stored(_ code: String, in db: Database) throws -> (StoredRecord, Eduhub_Catalog_V1_Resource)? {
    guard let stored = try store.value(CatalogCollections.resource, code, in: db) else { return nil }
    var resource = stored.value
    resource.responsibleOrgPath = stored.scope
    return (stored.record, resource)
  }

  public func resource(_ code: String, in view: PushView) throws -> StoredRecord? {
    try view.live(CatalogCollections.resource.name, code)
  }

  public func setSubscriptions(_ count: Int64, of code: String, in db: Database) throws {
    guard let stored = try store.value(CatalogCollections.resource, code, in: db), stored.value.subscriptions != count else { return }
    var updated = stored.value
    updated.subscriptions = count
    try store.put(CatalogCollections.resource, code, scope: stored.scope, Self.writable(updated), in: db)
  }

  public func definitionsSequence(in db: Database) throws -> Int64 {
    try store.records.lastSequence(of: CatalogCollections.resource, in: db)
  }
}
