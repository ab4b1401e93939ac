import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

extension SharingService {
  /// Rows an API call examines at most (a scan beyond it is refused rather than left running).
  static let maxScannedRows = 5_000_000
  /// Rows an online test returns at most.
  static let testRows = 10

  /// The plan of API `code` (cached until the store signals a commit).
  /// The catalog's last write, read again only after a commit; a change drops the cached plans.
  @discardableResult
  func catalogSequence() throws -> (sequence: Int64, generation: UInt64) {
    let generation = store.records.changed.generation
    let now = ContinuousClock.now
    // Known while nothing committed here, and for a second at most: writes by another process (the
    // command line on the same data) do not signal.
    if let known = apis.withLock({ cache in
      cache.generation == generation && cache.checked.map { now - $0 < .seconds(1) } == true ? cache.catalogSequence : nil
    }) {
      return (known, generation)
    }
    let latest = try store.read { db in try catalog.definitionsSequence(in: db) }
    apis.withLock { cache in
      if cache.catalogSequence != latest { cache = ApiCache(catalogSequence: latest) }
      cache.generation = generation
      cache.checked = now
    }
    return (latest, generation)
  }

  func apiPlan(_ code: String, caller: Caller) throws -> ApiPlan {
    let generation = try catalogSequence().generation
    let cached = apis.withLock { $0.byCode[code] }
    let plan: ApiPlan
    if let cached {
      plan = cached
    } else {
      plan = try store.read { db in
        guard let (record, api) = try catalog.stored(code, in: db) else { throw RPCError(.notFound, "no API \(code.prefix(64))") }
        guard api.type == .api, api.hasApi else {
          throw RPCError(.failedPrecondition, "resource \(api.code) is not an API served by this system")
        }
        guard let (tableRecord, table) = try catalog.stored(api.api.datasetCode, in: db) else {
          throw RPCError(.failedPrecondition, "the dataset of API \(api.code) no longer exists")
        }
        var viewPath: String?
        if case .view(let view) = table.dataset.source { viewPath = try identity.orgPath(view.orgCode, in: db) }
        return ApiPlan(api: api, scope: record.scope, table: table, tableScope: tableRecord.scope, viewPath: viewPath)
      }
      apis.withLock { cache in if cache.generation == generation { cache.byCode[code] = plan } }
    }
    guard catalog.visible(plan.api, path: plan.scope, to: caller) else { throw RPCError(.notFound, "no API \(code.prefix(64))") }
    guard !plan.api.retired else { throw RPCError(.failedPrecondition, "API \(plan.api.code) is retired") }
    guard !plan.table.retired else {
      throw RPCError(.failedPrecondition, "the dataset \(plan.table.code) of API \(plan.api.code) is retired")
    }
    return plan
  }

  /// The call's parameters checked and parsed by their fields' types.
  static func filters(_ values: [String: String], _ plan: ApiPlan) throws -> [String: ApiFilter] {
    var filters: [String: ApiFilter] = [:]
    for (name, text) in values {
      guard let (parameter, field) = plan.parameters[name] else {
        throw Validate.invalid("API \(plan.api.code) has no parameter \(name.prefix(64))")
      }
      guard text.utf8.count <= 1000 else { throw Validate.invalid("parameter \(name) is too long") }
      let canonical: String?
      do {
        canonical = parameter.operator == .prefix ? text : try DatasetSchema.parse(text, for: field)
      } catch {
        throw Validate.invalid("parameter \(name): \(error.message)")
      }
      guard let canonical, !canonical.isEmpty else { continue }
      filters[name] = ApiFilter(field: field, operation: parameter.operator, value: canonical)
    }
    for (name, (parameter, _)) in plan.parameters where parameter.required && filters[name] == nil {
      throw Validate.invalid("parameter \(name) is required")
    }
    return filters
  }

  /// A fingerprint of the parameters (the same call, the same fingerprint; never the values),
  /// keyed with this node's own key: an ID number passed as a parameter cannot be found again by
  /// hashing candidates, whoever holds the database.
  func fingerprint(_ values: [String: String]) -> String {
    let canonical = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{0}")
    return identity.keyedFingerprint(Array(canonical.utf8))
  }

  /// Calls a shared API with `caller`'s grant: rate limit and quota, filters, rows masked for the
  /// grant or groups aggregated (small groups suppressed), one log entry.
  public func callApi(_ request: Eduhub_Sharing_V1_CallApiRequest, caller: Caller, peer: String) throws -> Eduhub_Sharing_V1_CallApiResponse {
    try Eduhub_Sharing_V1_CallApiResponse(serializedBytes: try callApiEncoded(request, caller: caller, peer: peer))
  }

  /// `callApi` with the answer as protobuf bytes (CallApiResponse): rows are encoded straight from
  /// the stored bytes, as subscriptions do, and the log records the answer's exact size.
  public func callApiEncoded(_ request: Eduhub_Sharing_V1_CallApiRequest, caller: Caller, peer: String) throws -> [UInt8] {
    try callApiEncoded(request, plan: try apiPlan(request.apiCode, caller: caller), caller: caller, peer: peer)
  }

  /// `callApiEncoded` when `request` reads one row by its key (every key field bound by EQUALS):
  /// cheap enough to answer on an event loop. nil for any other call, which then runs as a task.
  public func pointLookupEncoded(_ request: Eduhub_Sharing_V1_CallApiRequest, caller: Caller, peer: String) throws -> [UInt8]? {
    let plan = try apiPlan(request.apiCode, caller: caller)
    guard let point = plan.pointKey, point.allSatisfy({ request.parameters[$0]?.isEmpty == false }) else { return nil }
    return try callApiEncoded(request, plan: plan, caller: caller, peer: peer)
  }

  func callApiEncoded(_ request: Eduhub_Sharing_V1_CallApiRequest, plan: ApiPlan, caller: Caller, peer: String) throws -> [UInt8] {
    let started = ContinuousClock.now
    let action = "sharing.CallApi"
    let grant = try self.grant(for: plan.api.code, caller: caller, consumerID: request.consumerID, action: action, peer: peer)
    let fingerprint = fingerprint(request.parameters)
    let kind = request.test ? "test" : "call"
    func fail(_ error: RPCError) -> RPCError {
      log(grant, resource: plan.api.code, scope: plan.scope, kind: kind, fingerprint: fingerprint, rows: 0, bytes: 0, status: Int(error.code.rawValue), since: started)
      return error
    }
    let day = identity.today.description
    // Tests count like calls: they return rows, and a point lookup's row is all a caller wants.
    let outcome = limiter.take(grant.id, rate: grant.terms.ratePerSecond, quota: grant.terms.dailyQuota, day: day) { (try? callLog.calls(of: grant.id, on: day)) ?? 0 }
    switch outcome {
    case .allowed: break
    case .limited(let retryAfter):
      var trailers = RPCMetadata()
      trailers.add("retry-after", String(retryAfter))
      throw fail(RPCError(.resourceExhausted, "grant \(grant.id) allows \(grant.terms.ratePerSecond) calls a second; retry after \(retryAfter) s", trailers: trailers))
    case .quotaUsed:
      throw fail(RPCError(.resourceExhausted, "grant \(grant.id) has used its quota of \(grant.terms.dailyQuota) calls today"))
    }
    let answer: (bytes: [UInt8], rows: Int)
    do {
      let filters = try Self.filters(request.parameters, plan)
      // A masked reader may not filter on what it sees masked: each answer to a filter on an ID
      // number's prefix or a score's bound is one bit of that value, and sixty calls spell it out.
      if grant.terms.masking != .clear, let (name, filter) = filters.first(where: { ApiDefinitionCheck.isPersonal($0.value.field) }) {
        throw identity.denied(
          caller, action, target: plan.api.code, peer: peer,
          "parameter \(name) filters on the personal field \(filter.field.name), which grant \(grant.id) shows masked")
      }
      // An aggregate of personal values answers a masked grant over fixed partitions only: one
      // parameter, by EQUALS. Two ranges (or prefixes, or two parameters) whose groups differ by one
      // pupil give that pupil's value as the difference of two sums or averages.
      // An API with no parameter has one partition; one with a parameter must be called with it
      // (a call without it would be the whole, the others its parts, and the difference one pupil).
      let defined = plan.api.api.parameters.count
      if grant.terms.masking != .clear, !plan.api.api.aggregates.isEmpty,
        plan.api.api.aggregates.contains(where: { aggregate in plan.table.fields.contains { $0.name == aggregate.field && ApiDefinitionCheck.isPersonal($0) } }),
        defined > 1 || (defined == 1 && filters.count != 1) || filters.values.contains(where: { $0.operation != .equals })
      {
        throw identity.denied(
          caller, action, target: plan.api.code, peer: peer,
          "an aggregate of personal values answers grant \(grant.id) (it shows them masked) over one parameter at most, bound by EQUALS in every call")
      }
      let shown = request.fields.isEmpty ? nil : try requestedFields(request.fields, grant, of: plan.api, caller: caller, action: action, peer: peer)
      answer = try execute(
        plan, grant: grant, shown: shown.map { Set($0.map(\.name)) }, filters: filters,
        limit: request.test ? Self.testRows : Int(plan.api.api.maxRows))
    } catch {
      throw fail(RPCError.from(error))
    }
    log(
      grant, resource: plan.api.code, scope: plan.scope, kind: kind, fingerprint: fingerprint, rows: Int64(answer.rows),
      bytes: Int64(answer.bytes.count), status: 0, since: started)
    return answer.bytes
  }

  /// The row encoder of a row API for a grant (and the fields asked for), kept until the catalog or
  /// a grant changes (building one builds a masker).
  func apiRows(_ plan: ApiPlan, grant: Eduhub_Sharing_V1_Grant, shown: Set<String>?) -> GrantedRows {
    let today = identity.today
    let key = "\(plan.api.code)|\(grant.id)|\(grant.version)|\(today)|\(shown.map { $0.sorted().joined(separator: ",") } ?? "*")"
    if let cached = apis.withLock({ $0.rows[key] }) { return cached }
    let granted = Set(Self.grantedFields(grant, of: plan.api).map(\.name))
    let api = plan.api.api
    let fields = plan.table.fields.filter { api.fields.contains($0.name) && granted.contains($0.name) && (shown?.contains($0.name) ?? true) }
    let rows = GrantedRows(resource: plan.table, fields: fields, reader: Self.reader(for: grant), identity: identity, viewPath: plan.viewPath)
    apis.withLock { cache in
      if cache.rows.count > 10_000 { cache.rows.removeAll() }
      cache.rows[key] = rows
    }
    return rows
  }

  /// Runs the API's computation; returns the encoded CallApiResponse and the rows it holds.
  func execute(
    _ plan: ApiPlan, grant: Eduhub_Sharing_V1_Grant, shown: Set<String>?, filters: [String: ApiFilter], limit: Int
  ) throws -> (bytes: [UInt8], rows: Int) {
    let api = plan.api.api
    if api.aggregates.isEmpty {
      let rows = apiRows(plan, grant: grant, shown: shown)
      var out: [UInt8] = []
      for field in rows.fields { RowWire.appendField(1, field.name, to: &out) }
      var scratch = GrantedRows.Scratch()
      var count = 0
      var truncated = false
      var clearMinors = 0
      try scan(plan, filters: filters) { row in
        guard count < limit else {
          truncated = true
          return false
        }
        if try rows.appendRow(row, field: 2, to: &out, scratch: &scratch) { clearMinors += 1 }
        count += 1
        return true
      }
      if truncated { RowWire.appendVarintField(4, 1, to: &out) }
      auditClearReads(clearMinors, grant: grant, target: plan.api.code, actor: Self.consumerKey(grant.terms.consumer), peer: "")
      return (out, count)
    }
    let shownNames = Set(Self.grantedFields(grant, of: plan.api).map(\.name)).filter { shown?.contains($0) ?? true }
    var response = Eduhub_Sharing_V1_CallApiResponse()
    // Aggregates: groups of clear values (group-by fields are never personal), then suppression.
    let byName = Dictionary(plan.table.fields.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let groupFields = api.groupBy.compactMap { byName[$0] }
    let aggregateTypes = api.aggregates.map { byName[$0.field]?.type ?? .integer }
    var groups: [[String?]: (rows: Int64, accumulators: [ApiValues.Accumulator])] = [:]
    try scan(plan, filters: filters) { row in
      let values = try Self.values(of: row.record, plan.table, fields: groupFields + api.aggregates.map { byName[$0.field] })
      let key = Array(values.prefix(groupFields.count))
      var group = groups[key] ?? (0, Array(repeating: ApiValues.Accumulator(), count: api.aggregates.count))
      group.rows += 1
      for (index, aggregate) in api.aggregates.enumerated() {
        ApiValues.add(values[groupFields.count + index], to: &group.accumulators[index], aggregate, aggregateTypes[index])
      }
      groups[key] = group
      return true
    }
    let outputs = plan.api.fields
    let shown = outputs.indices.filter { shownNames.contains(outputs[$0].name) }
    response.columns = shown.map { outputs[$0].name }
    // Groups in the order of their values by type (grade 2 before grade 10); null first.
    let ordered = groups.sorted { left, right in
      for (field, (a, b)) in zip(groupFields, zip(left.key, right.key)) where a != b {
        guard let a else { return true }
        guard let b else { return false }
        return ApiValues.compare(a, b, field.type) == .orderedAscending
      }
      return false
    }
    // One row's value (MIN/MAX) of a personal field is shown only to a grant that reads it clear.
    let hidden = api.aggregates.map { aggregate in
      [.min, .max].contains(aggregate.function) && grant.terms.masking != .clear && byName[aggregate.field].map(ApiDefinitionCheck.isPersonal) == true
    }
    for (key, group) in ordered {
      guard group.rows >= Int64(api.minGroupSize) else {
        // Counted only for a call without filters: with them, two calls differing by one person
        // would tell each other apart by this count (a group of one appearing as suppressed).
        if filters.isEmpty { response.suppressedGroups += 1 }
        continue
      }
      guard response.rows.count < limit else {
        response.truncated = true
        continue
      }
      var values = zip(key, groupFields).map { DatasetSchema.value($0, $1.type) }
      var row = Eduhub_Catalog_V1_DataRow()
      for (index, aggregate) in api.aggregates.enumerated() {
        if hidden[index] {
          var removed = Eduhub_Catalog_V1_Value()
          removed.null = true
          values.append(removed)
          row.masked = true
        } else {
          values.append(ApiValues.result(group.accumulators[index], aggregate, aggregateTypes[index]))
        }
      }
      row.key = key.map { $0 ?? "" }.joined(separator: "|")
      row.values = shown.map { values[$0] }
      response.rows.append(row)
    }
    return (try response.serializedBytes(), response.rows.count)
  }

  /// The stored (clear) text of `fields` of a record (nil fields: none).
  static func values(of record: StoredRecord, _ table: Eduhub_Catalog_V1_Resource, fields: [Eduhub_Catalog_V1_SchemaField?]) throws
    -> [String?]
  {
    if case .view = table.dataset.source {
      let person = try PersonView.person(record.body)
      return fields.map { field in field.flatMap { PersonView.fields[$0.name]?.value(person) }.flatMap { $0.isEmpty ? nil : $0 } }
    }
    let parsed = try WireFields(parsing: record.body)
    return fields.map { field in field.flatMap { parsed.text(DatasetSchema.fieldNumber($0.column)) } }
  }

  /// Visits the table's rows that pass `filters` (clear values), until `visit` returns false. Rows
  /// come as stored, in clear, for the API's computation: people are read by the node itself
  /// (every read of them names its reader), and what leaves is masked by ``GrantedRows``.
  func scan(_ plan: ApiPlan, filters: [String: ApiFilter], _ visit: (SourceRow) throws -> Bool) throws {
    let checks = Array(filters.values)
    let fields = checks.map(\.field)
    func passes(_ record: StoredRecord) throws -> Bool {
      guard !checks.isEmpty else { return true }
      let values: [String?]
      do { values = try Self.values(of: record, plan.table, fields: fields) } catch { throw RPCError(.dataLoss, "a row of \(plan.table.code) cannot be read") }
      for (check, value) in zip(checks, values) where !check.matches(value) { return false }
      return true
    }
    let code = plan.table.code
    // One row by its id: every key field bound by EQUALS (which the id itself then satisfies; only
    // other filters are checked on the row).
    if let point = plan.pointKey, point.allSatisfy({ filters[$0] != nil }) {
      let id = catalog.rowID(DatasetSchema(plan.table), point.compactMap { filters[$0]?.value }.joined(separator: "|"))
      guard let record = try store.records.pointGet(DatasetSchema.rowCollection, id), !record.deleted else { return }
      if try filters.count == point.count || passes(record) { _ = try visit(SourceRow(record)) }
      return
    }
    let node = Reader.node(id: identity.nodeID, clearScope: "")
    let today = identity.today
    try store.read { db in
      var scanned = 0
      var after: StoredRecord?
      let kind = plan.viewPath == nil ? nil : PersonView.kind(plan.table.dataset.view.personKind)
      while true {
        let page: [StoredRecord]
        if let path = plan.viewPath {
          // In clear: the masking facts of this read are the node's, never the output's.
          page = try identity.people(inScope: path, after: after, limit: 2000, for: node, on: today, in: db).map(\.record)
        } else {
          page = try store.records.withPrefix(
            DatasetSchema.rowCollection, idPrefix: DatasetSchema.recordID(code, ""), after: after?.id, limit: 2000, in: db)
        }
        for record in page {
          if let kind, !IdentityService.isKind(record.body, kind) { continue }
          if try passes(record), try !visit(SourceRow(record)) { return }
        }
        scanned += page.count
        guard page.count == 2000 else { return }
        guard scanned < Self.maxScannedRows else {
          throw RPCError(.failedPrecondition, "API \(plan.api.code) would examine more than \(Self.maxScannedRows) rows: narrow the parameters")
        }
        after = page.last
      }
    }
  }
}
