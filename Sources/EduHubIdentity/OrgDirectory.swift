import EduHubAPI
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB

/// What other services ask of the org tree, its accounts and its people, answered by Identity, which
/// owns those collections: no other service names them.
///
/// People come back masked for the reader the caller names (``MaskedPerson``): no service but
/// Identity holds a person's stored body.
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
  /// People whose org lies in `path`'s subtree, by scope and id, after `after`, masked for `reader`:
  /// a page (at most `limit` stored people are read; all of them come back).
  func people(inScope path: String, after: StoredRecord?, limit: Int, for reader: Reader, on today: CivilDate, in db: Database) throws
    -> [MaskedPerson]
  /// Every person after `after` (in the store's order of people), masked for `reader`: a page.
  func people(after: StoredRecord?, limit: Int, for reader: Reader, on today: CivilDate, in db: Database) throws -> [MaskedPerson]
  /// People of `kind` in `path`'s subtree whose ids start with `idPrefix`, after `after` in (scope,
  /// id) order, each as `caller` may read it (as `reader` instead, when given): masked, and every
  /// clear read of a minor's sensitive field audited. Reads up to `scan` stored people and stops
  /// once `keep` are kept; returns them with where each stands (scope and id, for the next page),
  /// and whether the subtree has no more.
  func viewPeople(
    inScope path: String, kind: Eduhub_Identity_V1_PersonKind, idPrefix: String, after: StoredRecord?, scan: Int, keep: Int,
    for caller: Caller, as reader: Reader?, peer: String, on today: CivilDate, in db: Database
  ) throws -> (people: [(position: StoredRecord, person: Eduhub_Identity_V1_Person)], next: StoredRecord?, exhausted: Bool)
  /// Changes to people in `path`'s subtree written after sequence `after` and up to `through`, in
  /// sequence order, at most `limit` of them (those who moved out of the subtree come as
  /// deletions), masked for `reader`; and the sequence up to which every change was read.
  func peopleChanges(
    inScope path: String, after: Int64, through: Int64, limit: Int, for reader: Reader, on today: CivilDate, in db: Database
  ) throws -> (changes: [MaskedPerson], through: Int64)
  /// How many people of `kind` (any kind: `.unspecified`) the subtree of `path` holds.
  func countPeople(inScope path: String, kind: Eduhub_Identity_V1_PersonKind, in db: Database) throws -> Int64
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

  public func people(inScope path: String, after: StoredRecord?, limit: Int, for reader: Reader, on today: CivilDate, in db: Database) throws
    -> [MaskedPerson]
  {
    try masked(store.records.inScope(IdentityCollections.person, scope: path, after: after, limit: limit, in: db), for: reader, on: today)
  }

  public func people(after: StoredRecord?, limit: Int, for reader: Reader, on today: CivilDate, in db: Database) throws -> [MaskedPerson] {
    try masked(store.records.records(IdentityCollections.person, after: after, limit: limit, in: db), for: reader, on: today)
  }

  public func viewPeople(
    inScope path: String, kind: Eduhub_Identity_V1_PersonKind, idPrefix: String, after: StoredRecord?, scan: Int, keep: Int,
    for caller: Caller, as reader: Reader?, peer: String, on today: CivilDate, in db: Database
  ) throws -> (people: [(position: StoredRecord, person: Eduhub_Identity_V1_Person)], next: StoredRecord?, exhausted: Bool) {
    let page = try store.records.inScope(IdentityCollections.person, scope: path, after: after, limit: scan, in: db)
    var kept: [(position: StoredRecord, person: Eduhub_Identity_V1_Person)] = []
    var last = after
    for record in page {
      // Where the page stands, without the body.
      let position = StoredRecord(collection: record.collection, id: record.id, scope: record.scope, body: [])
      last = position
      guard Self.isKind(record.body, kind), record.id.hasPrefix(idPrefix) else { continue }
      let person = try view(record, for: caller, as: reader, peer: peer, on: today)
      kept.append((position, person))
      if kept.count >= keep { return (kept, last, false) }
    }
    return (kept, last, page.count < scan)
  }

  public func peopleChanges(
    inScope path: String, after: Int64, through: Int64, limit: Int, for reader: Reader, on today: CivilDate, in db: Database
  ) throws -> (changes: [MaskedPerson], through: Int64) {
    let collection = IdentityCollections.person.name
    var page = try store.records.changes(of: collection, after: after, through: through, inScope: path, limit: limit, in: db)
    // Everything up to `through` was read when the page was not full.
    let covered = page.count < limit ? max(after, through) : page.last?.sequence ?? after
    for exit in try store.records.exits(after: after, through: covered, fromScope: path, in: db) where exit.collection == collection {
      page.append(StoredRecord(collection: collection, id: exit.id, scope: exit.oldScope, body: [], deleted: true, sequence: exit.sequence))
    }
    page.sort { $0.sequence < $1.sequence }
    return (try masked(page, for: reader, on: today), covered)
  }

  public func countPeople(inScope path: String, kind: Eduhub_Identity_V1_PersonKind, in db: Database) throws -> Int64 {
    try countPeople(inScope: path, kinds: [kind], in: db)[kind] ?? 0
  }

  /// `countPeople` for several kinds in one pass over the people of `path` (each pass over a
  /// city's 2.7 million reads them all).
  public func countPeople(
    inScope path: String, kinds: Set<Eduhub_Identity_V1_PersonKind>, in db: Database
  ) throws -> [Eduhub_Identity_V1_PersonKind: Int64] {
    var counts = Dictionary(uniqueKeysWithValues: kinds.map { ($0, Int64(0)) })
    // Each body is read once, whatever the number of kinds.
    try store.records.forEachLive(IdentityCollections.person.name, inScope: path, in: db) { _, body in
      let found = Self.kindValue(body)
      for kind in kinds where kind == .unspecified || (found != nil && found == UInt64(kind.rawValue)) {
        counts[kind, default: 0] += 1
      }
    }
    return counts
  }

  /// Whether a person body (stored or masked: the kind is not classified) is of `kind` (field 2, a
  /// varint; the last occurrence counts, as for a decoder), read without decoding it.
  package static func isKind(_ body: [UInt8], _ kind: Eduhub_Identity_V1_PersonKind) -> Bool {
    guard kind != .unspecified else { return true }
    return kindValue(body) == UInt64(kind.rawValue)
  }

  /// The raw kind of a person body (0 when absent), or nil for a body that is not protobuf.
  private static func kindValue(_ body: [UInt8]) -> UInt64? {
    var index = 0
    var found: UInt64 = 0
    while index < body.count {
      guard let field = try? WireFields.nextField(body, &index) else { return nil }
      if field.number == 2, field.wireType == 0 {
        var at = field.value.lowerBound
        guard let value = try? WireFields.varint(body, &at) else { return nil }
        found = value
      }
    }
    return found
  }
}
