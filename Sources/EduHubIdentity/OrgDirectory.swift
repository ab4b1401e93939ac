import EduHubAPI
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB

/// What other services ask of the org tree, its accounts and its people, answered by Identity, which
/// owns those collections: no other service names them.
///
/// People come back as stored records, for the caller to mask for its reader before anything of
/// them leaves (``IdentityService/peopleMasker``).
public protocol OrgDirectory: Sendable {
  /// The path of org `code`, or NOT_FOUND.
  func orgPath(_ code: String, in db: Database) throws -> String
  /// Org `code` as stored, unless there is none.
  func org(_ code: String, in db: Database) throws -> Stored<Eduhub_Identity_V1_Org>?
  /// Org `code` as stored, read outside any transaction (a point read), unless there is none.
  func org(_ code: String) throws -> StoredRecord?
  /// Account `id` (its scope is its home org's path), unless there is none.
  func account(_ id: String, in db: Database) throws -> StoredRecord?
  /// Account `id` as a push being checked would leave it.
  func account(_ id: String, in view: PushView) throws -> StoredRecord?
  /// Accounts holding one of `roles` on org `code` itself (not below it), sorted.
  func holders(of roles: Set<Eduhub_Identity_V1_Role>, at code: String, in db: Database) throws -> [String]
  /// Whether `node` has published a signing key here (as a push being checked would leave it).
  func publishesKey(_ node: String, in view: PushView) throws -> Bool
  /// Whether `node` has published a signing key here.
  func publishesKey(_ node: String, in db: Database) throws -> Bool
  /// People whose org lies in `path`'s subtree, by scope and id, after `after`: a page.
  func people(inScope path: String, after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord]
  /// Every person, by scope and id, after `after`: a page.
  func people(after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord]
  /// Changes to people in `path`'s subtree written after sequence `after` and up to `through`, in
  /// sequence order, at most `limit` of them (those who moved out of the subtree come as
  /// deletions), and the sequence up to which every change was read.
  func peopleChanges(inScope path: String, after: Int64, through: Int64, limit: Int, in db: Database) throws
    -> (changes: [StoredRecord], through: Int64)
}

extension IdentityService: OrgDirectory {
  public func orgPath(_ code: String, in db: Database) throws -> String {
    guard let record = try store.live(IdentityCollections.org, code, in: db) else {
      throw RPCError(.notFound, "no org \(code.prefix(40))")
    }
    return record.scope
  }

  public func org(_ code: String, in db: Database) throws -> Stored<Eduhub_Identity_V1_Org>? {
    try store.value(IdentityCollections.org, code, in: db)
  }

  public func org(_ code: String) throws -> StoredRecord? {
    guard !code.isEmpty, let record = try store.records.pointGet(IdentityCollections.org, code), !record.deleted else { return nil }
    return record
  }

  public func account(_ id: String, in db: Database) throws -> StoredRecord? {
    try store.live(IdentityCollections.account, id, in: db)
  }

  public func account(_ id: String, in view: PushView) throws -> StoredRecord? {
    try view.live(IdentityCollections.account.name, id)
  }

  public func holders(of roles: Set<Eduhub_Identity_V1_Role>, at code: String, in db: Database) throws -> [String] {
    // A grant is stored in its org's scope: those of the org's subtree, filtered to the org itself.
    guard let path = try store.live(IdentityCollections.org, code, in: db)?.scope else { return [] }
    var holders: [String] = []
    var after: StoredRecord?
    while true {
      let page = try store.records.inScope(IdentityCollections.roleGrant, scope: path, after: after, limit: 1000, in: db)
      for record in page where !record.deleted {
        guard let grant = try? IdentityCollections.roleGrant.decode(record), grant.orgCode == code, roles.contains(grant.role) else { continue }
        holders.append(grant.accountID)
      }
      guard page.count == 1000 else { break }
      after = page.last
    }
    return holders.sorted()
  }

  public func publishesKey(_ node: String, in view: PushView) throws -> Bool {
    try view.live(IdentityCollections.nodeKey.name, node) != nil
  }

  public func publishesKey(_ node: String, in db: Database) throws -> Bool {
    try store.records.get(IdentityCollections.nodeKey, node, in: db) != nil
  }

  public func people(inScope path: String, after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord] {
    try store.records.inScope(IdentityCollections.person, scope: path, after: after, limit: limit, in: db)
  }

  public func people(after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord] {
    try store.records.records(IdentityCollections.person, after: after, limit: limit, in: db)
  }

  public func peopleChanges(inScope path: String, after: Int64, through: Int64, limit: Int, in db: Database) throws
    -> (changes: [StoredRecord], through: Int64)
  {
    let collection = IdentityCollections.person.name
    var page = try store.records.changes(of: collection, after: after, through: through, inScope: path, limit: limit, in: db)
    // Everything up to `through` was read when the page was not full.
    let covered = page.count < limit ? max(after, through) : page.last?.sequence ?? after
    for exit in try store.records.exits(after: after, through: covered, fromScope: path, in: db) where exit.collection == collection {
      page.append(StoredRecord(collection: collection, id: exit.id, scope: exit.oldScope, body: [], deleted: true, sequence: exit.sequence))
    }
    page.sort { $0.sequence < $1.sequence }
    return (page, covered)
  }
}
