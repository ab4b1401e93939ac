import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Sharing: applications, access requests and their approval chains, grants, subscription streams,
/// shared APIs, rate limits, quotas and the call log.
public final class SharingService: Sendable {
  public let identity: IdentityService
  /// The node's storage (shared with every service; this one owns its own collections in it).
  public let store: NodeStore
  public let catalog: CatalogService
  /// Every grant, in memory, caught up from the grant collection's changes.
  let book: GrantBook
  let limiter = RateLimiter()
  public let callLog: CallLog
  /// Resolved API resources by code (with their datasets) and their row encoders by grant, dropped
  /// when a commit signal turns out to have changed the catalog.
  let apis = Mutex(ApiCache())

  struct ApiCache {
    var generation: UInt64 = 0
    /// The catalog's last write the plans were made after.
    var catalogSequence: Int64 = -1
    /// When the catalog's last write was read.
    var checked: ContinuousClock.Instant?
    var byCode: [String: ApiPlan] = [:]
    var rows: [String: GrantedRows] = [:]
  }

  /// Defaults of grant terms.
  static let defaultRate: Int32 = 10
  static let defaultQuota: Int64 = 100_000
  static let maxRate: Int32 = 100_000
  static let yearMs: Int64 = 365 * 86_400_000

  public init(identity: IdentityService, catalog: CatalogService) throws {
    self.identity = identity
    self.store = identity.store
    self.catalog = catalog
    self.book = GrantBook(store: store)
    self.callLog = try CallLog(database: store.records.database)
    registerWriteRules()
    identity.registerPrincipals(prefix: Self.appPrefix) { [weak self] claims in
      guard let self else { throw RPCError(.unauthenticated, "the node is shutting down") }
      return try self.appCaller(claims)
    }
  }

  /// When `sweep` last ran (ms).
  let lastSweep = Mutex<Int64>(0)
  /// Whether each grant's approvals still cover its resource, by the versions it was judged on.
  let approvalChecks = Mutex<[String: (versions: String, holds: Bool)]>([:])

  /// Recounts the catalog's subscriptions of the resources whose grants expired since the last sweep
  /// (`eduhub serve` runs it every minute); returns how many resources it recounted.
  @discardableResult
  public func sweep() throws -> Int {
    try book.refresh(force: true)
    let now = identity.nowMs()
    let since = lastSweep.withLock { last in
      defer { last = now }
      return last
    }
    let due = Set(book.all().filter { $0.state == .active && $0.terms.expiresMs > since && $0.terms.expiresMs <= now }.map(\.terms.resourceCode))
    for code in due.sorted() {
      try store.transaction { db in try recountSubscriptions(code, in: db) }
    }
    return due.count
  }

  /// Writes pending call log entries.
  public func shutdown() {
    try? callLog.flush()
  }

  // MARK: Consumers

  /// The consumer an application caller is.
  static func appConsumer(_ caller: Caller) -> String? {
    caller.accountID.hasPrefix(appPrefix) ? String(caller.accountID.dropFirst(appPrefix.count)) : nil
  }

  /// The consumers `caller` acts for, by id: an application itself, or the orgs where staff hold
  /// share.request (the last org of each such role's path).
  static func consumerIDs(of caller: Caller) -> (kind: Eduhub_Sharing_V1_ConsumerKind, ids: [String]) {
    if let app = appConsumer(caller) { return (.app, [app]) }
    return (.org, caller.scopes(for: .shareRequest).map { String($0.split(separator: "/").last ?? "") })
  }

  /// The key pseudonyms and rate limits are kept under: `org:CODE` or `app:ID`.
  static func consumerKey(_ consumer: Eduhub_Sharing_V1_Consumer) -> String {
    (consumer.kind == .app ? "app:" : "org:") + consumer.id
  }

  /// Whether `caller` acts for `consumer` (an application itself; staff with share.request on the org).
  static func actsFor(_ caller: Caller, _ consumer: Eduhub_Sharing_V1_Consumer, path: String) -> Bool {
    switch consumer.kind {
    case .app: return appConsumer(caller) == consumer.id
    case .org: return appConsumer(caller) == nil && !path.isEmpty && caller.can(.shareRequest, at: path)
    case .unspecified, .UNRECOGNIZED: return false
    }
  }

  /// Why `grant` cannot be used at `now`, or nil when it can.
  static func unusable(_ grant: Eduhub_Sharing_V1_Grant, now: Int64) -> String? {
    switch grant.state {
    case .active:
      return grant.terms.expiresMs > now ? nil : "the grant \(grant.id) expired"
    case .suspended: return "the grant \(grant.id) is suspended"
    case .revoked: return "the grant \(grant.id) was revoked"
    case .expired, .unspecified, .UNRECOGNIZED: return "the grant \(grant.id) is not active"
    }
  }

  /// The live grant through which `caller` receives `resource`, as `consumerID` (or its only one).
  /// - Throws: PERMISSION_DENIED (audited) naming why: no grant, or it is expired, suspended, revoked.
  func grant(for resource: String, caller: Caller, consumerID: String, action: String, peer: String) throws
    -> Eduhub_Sharing_V1_Grant
  {
    let now = identity.nowMs()
    var candidates: [Eduhub_Sharing_V1_Grant] = []
    // A refusal reads the store first: a grant written by another process (the command line) a
    // moment ago counts.
    for force in [false, true] {
      try book.refresh(force: force)
      candidates = book.grants(of: resource).filter { Self.actsFor(caller, $0.terms.consumer, path: $0.consumerPath) }
      if !consumerID.isEmpty { candidates = candidates.filter { $0.terms.consumer.id == consumerID } }
      if let usable = try candidates.first(where: { try Self.unusable($0, now: now) == nil && approvalHolds($0) }) { return usable }
    }
    let reason =
      try candidates.first.flatMap { try Self.unusable($0, now: now) ?? (approvalHolds($0) ? nil : Self.outgrown($0)) }
      ?? "no grant gives \(consumerID.isEmpty ? "the caller" : consumerID.prefix(64) + "") access to \(resource.prefix(64)); ask for it (RequestAccess)"
    throw identity.denied(caller, action, target: resource, peer: peer, reason)
  }

  /// Why a grant whose approvals no longer cover its resource is not honoured.
  static func outgrown(_ grant: Eduhub_Sharing_V1_Grant) -> String {
    "the grant \(grant.id) was approved for \(grant.terms.resourceCode.prefix(64)) as it was; as it stands now its terms need approvals they did not get: ask again (RequestAccess)"
  }

  /// Whether the approvals `grant`'s request received still cover its terms over the resource as
  /// it stands: a view switched from teachers to pupils, an API pointed at a personal table, or a
  /// class made conditional needs the steward or the security officer again, whatever was
  /// approved before. Judged again when the catalog or the grant changes (an approved request's
  /// steps change only with its grant), else answered from memory: it is on every call's path.
  func approvalHolds(_ grant: Eduhub_Sharing_V1_Grant) throws -> Bool {
    let versions = "\(try catalogSequence().sequence)|\(grant.version)"
    if let known = approvalChecks.withLock({ $0[grant.id] }), known.versions == versions { return known.holds }
    let judged = try store.read { db -> Bool? in
      guard let (_, resource) = try catalog.stored(grant.terms.resourceCode, in: db),
        let requestRecord = try store.live(SharingCollections.request, grant.id, in: db),
        let request = try? Eduhub_Sharing_V1_AccessRequest(serializedBytes: requestRecord.body)
      else { return nil }
      return RequestMachine.approvalsCover(try chain(grant.terms, resource, in: db), in: request.steps)
    }
    // Not judged (its request or resource not here yet): refused, and asked again next time.
    guard let holds = judged else { return false }
    approvalChecks.withLock { $0[grant.id] = (versions, holds) }
    return holds
  }

  /// The catalog resource `code` as the caller may know it, or NOT_FOUND.
  func resource(_ code: String, caller: Caller, in db: Database) throws -> (StoredRecord, Eduhub_Catalog_V1_Resource) {
    guard let (record, resource) = try catalog.stored(code, in: db), catalog.visible(resource, path: record.scope, to: caller)
    else { throw RPCError(.notFound, "no resource \(code.prefix(64))") }
    return (record, resource)
  }

  /// Live records of `collection` in the org subtree `scope`; the empty scope (the node's operator)
  /// is every record. (`RecordStore.inScope` reads "" as the global records only, which sync needs.)
  func subtree(_ collection: String, _ scope: String, limit: Int, in db: Database) throws -> [StoredRecord] {
    scope.isEmpty ? try store.records.records(collection, limit: limit, in: db) : try store.records.inScope(collection, scope: scope, limit: limit, in: db)
  }

  /// The privacy reader a grant reads as.
  static func reader(for grant: Eduhub_Sharing_V1_Grant) -> Reader {
    let subject = consumerKey(grant.terms.consumer)
    switch grant.terms.masking {
    case .clear:
      return .staff(subject: subject, grants: [EduHubPrivacy.Grant(permission: Permission.peopleReadClear.rawValue, scope: "")])
    case .masked:
      return .staff(subject: subject, grants: [])
    case .deidentified, .unspecified, .UNRECOGNIZED:
      return .consumer(id: subject)
    }
  }

  /// The granted fields of `resource`, in the resource's order (fields removed since are dropped).
  static func grantedFields(_ grant: Eduhub_Sharing_V1_Grant, of resource: Eduhub_Catalog_V1_Resource)
    -> [Eduhub_Catalog_V1_SchemaField]
  {
    guard !grant.terms.fields.isEmpty else { return resource.fields }
    let wanted = Set(grant.terms.fields)
    return resource.fields.filter { wanted.contains($0.name) }
  }

  /// The fields a call or stream asked for (empty: every granted one), each checked against the grant.
  /// - Throws: PERMISSION_DENIED (audited) for a field outside the grant.
  func requestedFields(
    _ names: [String], _ grant: Eduhub_Sharing_V1_Grant, of resource: Eduhub_Catalog_V1_Resource, caller: Caller, action: String,
    peer: String
  ) throws -> [Eduhub_Catalog_V1_SchemaField] {
    let granted = Self.grantedFields(grant, of: resource)
    guard !names.isEmpty else { return granted }
    let grantedNames = Set(granted.map(\.name))
    for name in names where !grantedNames.contains(name) {
      throw identity.denied(caller, action, target: resource.code, peer: peer, "field \(name.prefix(64)) is not in grant \(grant.id)")
    }
    let wanted = Set(names)
    return granted.filter { wanted.contains($0.name) }
  }
}
