import EduHubCore
import EduHubStorage
import GRDB

/// A downstream node pushing records, as this node knows it. An edge node may be owned by an
/// attacker (its files, keys and local accounts), so what it pushes is believed only as far as a
/// user on that node could have written it through the API.
public struct PushingNode: Sendable {
  /// The authenticated node.
  public let id: String
  /// The org path it holds.
  public let scope: String
  /// Whether it reads its scope in clear.
  public let clear: Bool
  /// The most a user on that node could hold: the administrator role of its level on its scope
  /// (a county's or a school's), without clear reads for a masked node. Every pushed write is
  /// checked as if this caller had made it through the RPC that writes it.
  public let authority: Caller
  /// Nodes whose writes it may carry: itself and the nodes registered below it (whose writes it
  /// relays). Stamps, vector entries and system actors may name only these.
  public internal(set) var writers: Set<String>
  /// The scope each node it relays is registered for (itself excluded): what a write made on that
  /// node can reach.
  public internal(set) var writerScopes: [String: String]
  /// The upstream sequence through which the node had applied this node's changes before it wrote
  /// anything it pushes now (0: unknown). Its new writes come after everything stored here
  /// through that sequence: a later hybrid clock, so it cannot backdate a write behind one it saw.
  public let knownThrough: Int64

  public init(
    id: String, scope: String, clear: Bool, authority: Caller, writers: Set<String>,
    writerScopes: [String: String] = [:], knownThrough: Int64 = 0
  ) {
    self.id = id
    self.scope = scope
    self.clear = clear
    self.authority = authority
    self.writers = writers
    self.writerScopes = writerScopes
    self.knownThrough = knownThrough
  }

  /// Whether the node may carry writes stamped by `node`.
  public func mayCarry(_ node: String) -> Bool { writers.contains(node) }

  /// Adds a node registered in this very push for `scope` (its writes may follow).
  public mutating func adopt(_ node: String, scope: String) {
    writers.insert(node)
    writerScopes[node] = scope
  }
}

/// Why a pushed record is refused: the whole push is, and the reason is audited and reported.
public typealias PushRefusal = Failure<PushRefused>
public enum PushRefused {}

/// The records of one push, as they stand while it is checked: the message's own records count
/// (a person and its account may arrive together), then the store.
public struct PushView {
  let store: RecordStore
  let db: Database
  var pending: [String: StoredRecord] = [:]
  /// The message's live records by index key: "collection \0 index \0 key" to ids (built once, so a
  /// message of 10,000 accounts costs 10,000 extractions, not 10,000 squared).
  var pendingKeys: [String: Set<String>] = [:]

  init(store: RecordStore, db: Database) {
    self.store = store
    self.db = db
  }

  /// The live record `collection/id` as this push would leave it, or nil.
  public func live(_ collection: String, _ id: String) throws -> StoredRecord? {
    let record = try pending[collection + "\u{0}" + id] ?? store.get(collection, id, in: db)
    return record.flatMap { $0.deleted ? nil : $0 }
  }

  /// Ids of live records of `collection` whose index `index` holds `key` as this push would leave
  /// them: stored ones this message does not replace, and this message's own.
  public func ids(_ collection: String, index: String, key: String) throws -> Set<String> {
    var ids = Set(
      try store.find(collection, index: index, key: key, limit: 10, in: db).map(\.id)
        .filter { pending[collection + "\u{0}" + $0] == nil })
    ids.formUnion(pendingKeys[collection + "\u{0}" + index + "\u{0}" + key] ?? [])
    return ids
  }

  /// Live records of `collection` whose index `index` holds `key` as this push would leave them
  /// (at most `limit` stored ones, and this message's own).
  public func records(_ collection: String, index: String, key: String, limit: Int = 100_000) throws -> [StoredRecord] {
    var found = try store.find(collection, index: index, key: key, limit: limit, in: db)
      .filter { pending[collection + "\u{0}" + $0.id] == nil }
    for id in pendingKeys[collection + "\u{0}" + index + "\u{0}" + key] ?? [] {
      if let record = pending[collection + "\u{0}" + id], !record.deleted { found.append(record) }
    }
    return found
  }

  /// The database, for checks that read more.
  public var database: Database { db }

  mutating func accept(_ record: StoredRecord) {
    pending[record.collection + "\u{0}" + record.id] = record
    guard !record.deleted else { return }
    for (index, key) in store.indexKeys(record.collection, body: record.body) {
      pendingKeys[record.collection + "\u{0}" + index + "\u{0}" + key, default: []].insert(record.id)
    }
  }
}

/// Checks one pushed record as the API that writes it would, given the version it replaces (nil
/// for a new record). A deletion arrives with `record.deleted` and the last body it had.
/// - Throws: ``PushRefusal`` naming what the node could not have written.
public typealias PushCheck = @Sendable (
  _ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView
) throws -> Void

/// Who may originate writes of a replicated collection.
public enum WriteAuthority: Sendable {
  /// Written only above (node registrations' keys, applications, security records): a push of it
  /// is refused whatever it holds.
  case downOnly
  /// May be written on an edge node, as the API would check it.
  case fromBelow(PushCheck)

  /// `fromBelow` with a check that needs its service (held weakly: the registry belongs to
  /// Identity, which the service holds).
  public static func checked<Service: AnyObject & Sendable>(
    by service: Service, _ check: @escaping @Sendable (Service) -> PushCheck
  ) -> WriteAuthority {
    .fromBelow { [weak service] record, existing, node, view in
      guard let service else { throw PushRefusal("the node is shutting down") }
      try check(service)(record, existing, node, view)
    }
  }
}

/// Every replicated collection's write authority, registered by the service that owns it. Push
/// consults it for every record; a collection nobody registered is refused, so a new collection
/// cannot be forgotten.
public typealias WriteAuthorities = CollectionRules<WriteAuthority>

extension PushView {
  /// Checks that every record of `records` is allowed, each seeing the whole message.
  /// - Parameter existing: the stored version each record replaces (nil: a new record), in order.
  /// - Returns: the pushing node with the nodes registered by this push added to its writers.
  public static func check(
    _ records: [StoredRecord], replacing existing: [StoredRecord?], from node: PushingNode, rules: WriteAuthorities,
    store: RecordStore, in db: Database, registersNode: (StoredRecord) -> String? = { _ in nil }
  ) throws -> PushingNode {
    var node = node
    var view = PushView(store: store, db: db)
    // The whole message is judged as one: a record may refer to one later in it (a grant is
    // written before the request that approves it is saved again). A refusal refuses them all.
    for record in records { view.accept(record) }
    for (record, existing) in zip(records, existing) {
      guard let rule = rules.of(record.collection) else {
        throw PushRefusal("\(record.collection) has no write rule here: it is not accepted from below")
      }
      switch rule {
      case .downOnly:
        throw PushRefusal("\(record.collection) records are written only above and never accepted from below")
      case .fromBelow(let check):
        try check(record, existing, node, view)
      }
      if let registered = registersNode(record) { node.adopt(registered, scope: record.scope) }
    }
    return node
  }
}
