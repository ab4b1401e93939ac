import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB

extension CatalogService {
  /// Checks and completes a table resource's dataset before it is stored: a view's fields typed and
  /// classified from identity.proto and its org inside the responsible org's subtree; an ingested
  /// dataset's key; every field's stable column. A schema change that would misread stored rows is
  /// refused while the dataset holds rows.
  static func prepareDataset(
    _ resource: inout Eduhub_Catalog_V1_Resource, old: Eduhub_Catalog_V1_Resource?, responsiblePath: String,
    orgPath: (String) throws -> String
  ) throws {
    let invalid = Validate.invalid
    if let old, case .ingested = old.dataset.source, old.rowCount > 0 {
      guard case .ingested = resource.dataset.source, resource.type == .table else {
        throw RPCError(.failedPrecondition, "the dataset holds \(old.rowCount) rows: it stays an ingested table")
      }
    }
    switch (resource.type, resource.dataset.source) {
    case (.table, nil):
      throw invalid("a table resource needs a dataset: a view (dataset.view) or ingested rows (dataset.ingested)")
    case (.table, .view(var view)):
      guard view.collection == PersonView.collection else {
        throw invalid("a view reads the collection \"person\" (got \"\(view.collection.prefix(32))\")")
      }
      guard PersonView.kind(view.personKind) != nil else {
        throw invalid("person_kind must be student, teacher, staff, guardian or empty")
      }
      if view.orgCode.isEmpty { view.orgCode = resource.responsibleOrgCode }
      let path = try orgPath(view.orgCode)
      guard RecordStore.inScope(path, responsiblePath), !path.isEmpty else {
        throw invalid("the view's org must lie within the responsible org's subtree")
      }
      resource.dataset.view = view
      resource.fields = try PersonView.normalize(resource.fields)
    case (.table, .ingested(let ingested)):
      guard !resource.fields.isEmpty else { throw invalid("an ingested dataset needs fields") }
      guard (1...5).contains(ingested.keyFields.count) else { throw invalid("an ingested dataset needs 1 to 5 key fields") }
      guard Set(ingested.keyFields).count == ingested.keyFields.count else { throw invalid("a key field appears twice") }
      for key in ingested.keyFields {
        guard let field = resource.fields.first(where: { $0.name == key }) else {
          throw invalid("key field \(key.prefix(64)) is not a field of the resource")
        }
        guard [.string, .integer, .date].contains(field.type) else {
          throw invalid("key field \(key.prefix(64)) must be a string, an integer or a date")
        }
      }
      if let old, old.rowCount > 0 {
        guard case .ingested(let before) = old.dataset.source, before.keyFields == ingested.keyFields else {
          throw RPCError(.failedPrecondition, "the dataset holds \(old.rowCount) rows: its key cannot change")
        }
        // Rows are stored under their key, or a hash of it when the key is personal: which one
        // cannot change under stored rows.
        guard DatasetSchema(resource).personalKey == DatasetSchema(old).personalKey else {
          throw RPCError(.failedPrecondition, "the dataset holds \(old.rowCount) rows: whether its key is personal cannot change")
        }
        for field in old.fields {
          guard let now = resource.fields.first(where: { $0.name == field.name }), now.type == field.type else {
            throw RPCError(
              .failedPrecondition,
              "the dataset holds \(old.rowCount) rows: field \(field.name) cannot be removed or change its type")
          }
        }
      }
    case (_, .some):
      throw invalid("only table resources hold a dataset")
    case (_, nil):
      break
    }
    DatasetSchema.assignColumns(&resource, old: old)
  }

  /// Fields of an ingested table whose classification `resource` lowers from `old`: a lower
  /// sensitivity, or another masking kind on a personal field. Stored rows are masked by the
  /// table's schema, so lowering it would hand out in clear what was written as personal: only
  /// someone who reads those people in clear may do it.
  static func declassified(_ resource: Eduhub_Catalog_V1_Resource, from old: Eduhub_Catalog_V1_Resource?) -> [String] {
    guard let old, case .ingested = old.dataset.source else { return [] }
    let personal = Eduhub_Common_V1_Sensitivity.sensitive.rawValue
    return old.fields.compactMap { before in
      // A personal field removed counts as lowered: its column could come back as a public one.
      guard let now = resource.fields.first(where: { $0.name == before.name }) else {
        return before.sensitivity.rawValue >= personal ? before.name : nil
      }
      let lowered = now.sensitivity.rawValue < before.sensitivity.rawValue
        || (before.sensitivity.rawValue >= personal && now.masking != before.masking)
      return lowered ? before.name : nil
    }
  }

  // MARK: Ingest

  /// Ingestion batches: rows are checked outside the write lock, then a batch is written in one
  /// transaction (each row whole or not at all: a row is one record).
  static let ingestBatch = 5_000

  /// What the first message of an ingest stream settles.
  struct IngestPlan {
    let schema: DatasetSchema
    let scope: String
    /// For each column of the stream, the position of its field in the schema.
    let positions: [Int]
    /// Where each key field is among the stream's columns.
    let keyColumns: [Int]
    /// Whether the stream carries every field (rows then replace whole rows).
    let complete: Bool
  }

  func ingestPlan(_ first: Eduhub_Catalog_V1_IngestRowsRequest, caller: Caller, peer: String) throws -> IngestPlan {
    guard !first.resourceCode.isEmpty else {
      throw Validate.invalid("the first message must name resource_code and the columns")
    }
    let action = "catalog.IngestRows"
    return try store.read { db in
      guard let (record, resource) = try stored(first.resourceCode, in: db), visible(resource, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(first.resourceCode.prefix(64))")
      }
      try identity.require(.catalogPublish, at: record.scope, caller, action, target: resource.code, peer: peer)
      guard case .ingested = resource.dataset.source else {
        throw RPCError(.failedPrecondition, "resource \(resource.code) has no ingested dataset (its rows are not sent)")
      }
      guard !resource.retired else { throw RPCError(.failedPrecondition, "resource \(resource.code) is retired") }
      let schema = DatasetSchema(resource)
      // Rows keyed by a personal field (an ID number) are written by someone who reads those
      // people in clear: an upsert's row count, or where a probe row sorts among the others, would
      // tell anyone else whether an ID number is there and what it is.
      if schema.personalKey {
        try identity.require(.peopleReadClear, at: record.scope, caller, action, target: resource.code, peer: peer)
      }
      var positions: [Int] = []
      for column in first.columns {
        guard let position = resource.fields.firstIndex(where: { $0.name == column }) else {
          throw Validate.invalid("column \(column.prefix(64)) is not a field of \(resource.code)")
        }
        guard !positions.contains(position) else { throw Validate.invalid("column \(column.prefix(64)) appears twice") }
        positions.append(position)
      }
      let keyColumns = try schema.keyPositions.map { key in
        guard let column = positions.firstIndex(of: key) else {
          throw Validate.invalid("the columns must include the key field \(resource.fields[key].name)")
        }
        return column
      }
      return IngestPlan(
        schema: schema, scope: record.scope, positions: positions, keyColumns: keyColumns,
        complete: positions.count == resource.fields.count)
    }
  }

  /// A checked row, ready to write.
  struct CheckedRow {
    let stream: Int64
    let key: String
    /// nil: delete.
    let values: [(column: Int32, text: String?)]?
  }

  /// Checks one row against the plan: its key, and each value against its field's type and limits.
  static func check(_ row: Eduhub_Catalog_V1_IngestRow, _ plan: IngestPlan, position: Int64) throws(RowProblem) -> CheckedRow {
    let fields = plan.schema.fields
    guard row.values.count == plan.positions.count || (row.delete && row.values.count <= plan.positions.count) else {
      throw RowProblem("the row has \(row.values.count) values for \(plan.positions.count) columns")
    }
    var keyParts: [String] = []
    for column in plan.keyColumns {
      let field = fields[plan.positions[column]]
      guard column < row.values.count, let text = try DatasetSchema.canonical(row.values[column], for: field) else {
        throw RowProblem("the key field \(field.name) is missing")
      }
      guard !text.unicodeScalars.contains(where: { $0 == "|" || $0.value < 0x20 }) else {
        throw RowProblem("the key field \(field.name) may not contain '|' or control characters")
      }
      keyParts.append(text)
    }
    let key = keyParts.joined(separator: "|")
    guard key.utf8.count <= DatasetSchema.maxKeyLength else {
      throw RowProblem("the key is longer than \(DatasetSchema.maxKeyLength) bytes")
    }
    if row.delete { return CheckedRow(stream: position, key: key, values: nil) }
    var values: [(column: Int32, text: String?)] = []
    values.reserveCapacity(row.values.count)
    for (index, value) in row.values.enumerated() {
      let field = fields[plan.positions[index]]
      let text = try DatasetSchema.canonical(value, for: field)
      if text == nil, field.required { throw RowProblem("\(field.name) is required") }
      values.append((field.column, text))
    }
    return CheckedRow(stream: position, key: key, values: values)
  }

  /// Receives an ingest stream: every row checked, valid ones written per batch, invalid ones
  /// reported by position; the resource's row count and update time kept with each batch.
  public func ingestRows(
    _ requests: some AsyncSequence<Eduhub_Catalog_V1_IngestRowsRequest, any Error>, caller: Caller, peer: String
  ) async throws -> Eduhub_Catalog_V1_IngestRowsResponse {
    var response = Eduhub_Catalog_V1_IngestRowsResponse()
    var plan: IngestPlan?
    var batch: [CheckedRow] = []
    batch.reserveCapacity(Self.ingestBatch)
    func reject(_ position: Int64, _ key: String, _ message: String) {
      response.rejected += 1
      if response.errors.count < 1000 {
        var error = Eduhub_Catalog_V1_RowError()
        error.row = position
        error.key = key
        error.message = message
        response.errors.append(error)
      }
    }
    // One batch is written (on its own task) while the next is received and checked: the two
    // halves of the work overlap on two cores. At most one write is in flight, and outcomes are
    // taken in order.
    var inFlight: Task<WriteOutcome, any Error>?
    func settle() async throws {
      guard let task = inFlight else { return }
      inFlight = nil
      let outcome = try await task.value
      response.upserted += outcome.upserted
      response.deleted += outcome.deleted
      response.rowCount = outcome.rowCount
      for (position, key, message) in outcome.errors { reject(position, key, message) }
    }
    func flush(_ plan: IngestPlan) async throws {
      guard !batch.isEmpty else { return }
      try await settle()
      let rows = batch
      batch.removeAll(keepingCapacity: true)
      inFlight = Task { try self.write(rows, plan) }
    }
    func receive() async throws {
      for try await message in requests {
        if let plan {
          guard message.resourceCode.isEmpty || message.resourceCode == plan.schema.code else {
            throw Validate.invalid("one stream ingests one resource")
          }
          guard message.columns.isEmpty || message.columns == plan.positions.map({ plan.schema.fields[$0].name }) else {
            throw Validate.invalid("the columns are named once, in the first message")
          }
        } else {
          plan = try ingestPlan(message, caller: caller, peer: peer)
        }
        guard let plan else { continue }
        for row in message.rows {
          response.received += 1
          do {
            batch.append(try Self.check(row, plan, position: response.received))
          } catch {
            reject(response.received, "", error.message)
          }
          if batch.count >= Self.ingestBatch { try await flush(plan) }
        }
      }
    }
    do {
      try await receive()
    } catch {
      // A batch being written finishes (it is atomic) before the call ends with the error.
      _ = try? await inFlight?.value
      throw error
    }
    guard let plan else { throw Validate.invalid("the stream carried no message: name resource_code and the columns") }
    try await flush(plan)
    try await settle()
    response.errors.sort { $0.row < $1.row }
    if response.received == 0 {
      response.rowCount = try store.read { db in try stored(plan.schema.code, in: db)?.1.rowCount ?? 0 }
    }
    identity.audit.record(
      .init(
        actor: caller.actor, action: "catalog.IngestRows", target: plan.schema.code,
        outcome: response.rejected == 0 ? "ok" : "partial",
        detail: "\(response.upserted) upserted, \(response.deleted) deleted, \(response.rejected) rejected", peer: peer,
        timeMs: identity.nowMs()))
    return response
  }

  /// What writing one batch did.
  typealias WriteOutcome = (upserted: Int64, deleted: Int64, rowCount: Int64, errors: [(Int64, String, String)])

  /// Writes one batch of checked rows in one transaction, with the resource's new row count.
  func write(_ rows: [CheckedRow], _ plan: IngestPlan) throws -> WriteOutcome {
    let schema = plan.schema
    return try store.transaction { db in
      // The resource as it is now: a concurrent update may have retired it or changed its schema.
      guard let (record, resource) = try stored(schema.code, in: db), !resource.retired,
        resource.fields.map(\.column) == schema.fields.map(\.column), resource.fields.map(\.type) == schema.fields.map(\.type)
      else {
        throw RPCError(.aborted, "resource \(schema.code) changed while rows were sent; send them again")
      }
      var upserted: Int64 = 0
      var deleted: Int64 = 0
      var errors: [(Int64, String, String)] = []
      var writes: [Replica.Write] = []
      writes.reserveCapacity(rows.count)
      // Whether each key is live as of the rows before it in this batch (a key may come twice: the
      // later row wins, as it would across batches). Keys not here are looked up only when a row
      // needs it (deletes, partial rows); the others learn it from the write itself.
      var live: [String: Bool] = [:]
      // Values of rows written earlier in this batch (not in the store until the batch is written).
      var pendingValues: [String: [(column: Int32, text: String)]] = [:]
      func isLive(_ id: String) throws -> Bool {
        if let known = live[id] { return known }
        return try store.records.get(DatasetSchema.rowCollection, id, in: db).map { !$0.deleted } ?? false
      }
      for row in rows {
        let id = rowID(schema, row.key)
        guard let values = row.values else {
          guard try isLive(id) else {
            errors.append((row.stream, row.key, "no row with this key"))
            continue
          }
          writes.append(.init(collection: DatasetSchema.rowCollection, id: id, scope: plan.scope, body: nil))
          live[id] = false
          pendingValues[id] = nil
          deleted += 1
          continue
        }
        var merged = values.compactMap { value in value.text.map { (column: value.column, text: $0) } }
        if !plan.complete {
          // Columns not sent keep their stored values; a new row must have every required field.
          let sent = Set(values.map(\.column))
          if let earlier = pendingValues[id] {
            merged += earlier.filter { !sent.contains($0.column) }
          } else if try isLive(id), let old = try store.records.get(DatasetSchema.rowCollection, id, in: db) {
            let fields = try WireFields(parsing: old.body)
            for field in schema.fields where !sent.contains(field.column) {
              if let text = fields.text(DatasetSchema.fieldNumber(field.column)) {
                merged.append((field.column, text))
              }
            }
          } else if let missing = schema.fields.first(where: { field in field.required && !values.contains { $0.column == field.column } }) {
            errors.append((row.stream, row.key, "\(missing.name) is required"))
            continue
          }
        }
        writes.append(
          .init(collection: DatasetSchema.rowCollection, id: id, scope: plan.scope, body: schema.body(key: row.key, values: merged)))
        live[id] = true
        if !plan.complete { pendingValues[id] = merged }
        upserted += 1
      }
      var prior: [Bool] = []
      try store.replica.write(writes, in: db, prior: &prior)
      // Live rows before and after, key by key in order: the row count's change.
      var delta: Int64 = 0
      var state: [String: Bool] = [:]
      for (write, wasLive) in zip(writes, prior) {
        let before = state[write.id] ?? wasLive
        let after = write.body != nil
        delta += (after ? 1 : 0) - (before ? 1 : 0)
        state[write.id] = after
      }
      var updated = resource
      updated.rowCount = max(0, resource.rowCount + delta)
      updated.updatedMs = identity.nowMs()
      try store.put(CatalogCollections.resource, resource.code, scope: record.scope, Self.writable(updated), in: db)
      return (upserted, deleted, updated.rowCount, errors)
    }
  }

  // MARK: Reading rows

  /// The record id of row `key` of `schema`'s table: `code|key`, or, when the key is personal (an
  /// ID number), `code|#` and a hash of it keyed with the region's pseudonym key, which every node
  /// holding such rows has (clear nodes; masked ones never receive them). Rows are then stored, and
  /// read, in an order that says nothing of the keys: rows keyed by ID number in ID order would
  /// tell a reader who sees the keys masked each pupil's birth date within the year, and gender.
  package func rowID(_ schema: DatasetSchema, _ key: String) -> String {
    guard schema.personalKey else { return DatasetSchema.recordID(schema.code, key) }
    let message = Array("eduhub-row\u{0}\(schema.code)\u{0}\(key)".utf8)
    // The key is 32 bytes and the length valid: hashing cannot fail.
    let digest = (try? KeyedHash.hash(message, key: identity.regionPseudonymKey, length: 16)) ?? []
    return DatasetSchema.recordID(schema.code, DatasetSchema.hashedKeyMark + IdentityService.hex(digest))
  }

  /// Rows of `resource` in key order after `after` (a key), masked for `caller`.
  func rows(
    of resource: Eduhub_Catalog_V1_Resource, scope: String, after: String?, keyPrefix: String = "", limit: Int,
    caller: Caller, peer: String, sample: Bool = false, in db: Database
  ) throws -> (rows: [Eduhub_Catalog_V1_DataRow], last: String?) {
    let today = identity.today
    // A sample for someone who does not read these people (an application, another county's
    // bureau) is de-identified, without keys: masked rows would still be real children's, their
    // region pseudonyms linkable to every other masked read.
    func sampleReader(_ path: String) -> Reader? {
      sample && !caller.can(.peopleRead, at: path) ? .consumer(id: "sample:\(caller.accountID)") : nil
    }
    switch resource.dataset.source {
    case .view(let view):
      let path = try identity.orgPath(view.orgCode, in: db)
      let deidentified = sampleReader(path)
      let kind = PersonView.kind(view.personKind) ?? .unspecified
      var out: [Eduhub_Catalog_V1_DataRow] = []
      var cursor = after.flatMap(PersonView.cursor)
      // Pages of people in the view's subtree of the view's kind, as Identity lets the caller read
      // them (masked, clear reads of minors audited).
      while true {
        let page = try identity.viewPeople(
          inScope: path, kind: kind, idPrefix: keyPrefix, after: cursor, scan: 1000, keep: limit - out.count,
          for: caller, as: deidentified, peer: peer, on: today, in: db)
        for viewed in page.people {
          var row = PersonView.row(viewed.person, fields: resource.fields)
          if deidentified != nil { row.key = "" }
          out.append(row)
          if out.count == limit { return (out, PersonView.position(of: viewed.position)) }
        }
        if page.exhausted { return (out, nil) }
        cursor = page.next
      }
    case .ingested:
      let schema = DatasetSchema(resource)
      let masker = identity.masker(for: schema.classified)
      let allNumbers = Set(resource.fields.map { DatasetSchema.fieldNumber($0.column) })
      if schema.personalKey, !keyPrefix.isEmpty {
        throw Validate.invalid("rows of a table keyed by a personal field are not kept in key order: key_prefix cannot select them")
      }
      let prefix = DatasetSchema.recordID(resource.code, keyPrefix)
      let page = try store.records.withPrefix(
        DatasetSchema.rowCollection, idPrefix: prefix, after: after.map { DatasetSchema.recordID(resource.code, $0) },
        limit: limit + 1, in: db)
      var out: [Eduhub_Catalog_V1_DataRow] = []
      var lastKey: String?
      for record in page.prefix(limit) {
        let key = DatasetSchema.key(of: record, code: resource.code, personalKey: schema.personalKey)
        let deidentified = sampleReader(record.scope)
        let result: RecordMasker.Result
        do {
          // A row's key is whatever the table says, not a person id: an account whose person id
          // (or a guardian whose child's) equals it is still staff here, or anyone able to create
          // a person with a chosen id could read a row of an exam-number table in clear.
          let reader = deidentified ?? .staff(subject: caller.accountID, grants: caller.grants)
          result = try masker.mask(record.body, personID: key, scope: record.scope, for: reader, on: today)
          // Masked: the policy hides one of the row's fields from this reader, whether or not it
          // holds a value (a flag for values present would tell who has, say, special needs).
          var row = try schema.row(result.body, masked: masker.hidesAny(of: allNumbers, age: result.age, owner: result.owner, for: reader))
          if deidentified != nil {
            row.key = ""
          } else if row.key != key {
            // The key names a person by a field this reader sees masked (an ID number): a
            // pseudonym of the reader's own stands in for it, stable across pages and reads.
            row.key = try masker.rowKeyPseudonym(key, subject: caller.accountID)
          }
          out.append(row)
          // Where the page ends in the store's order (the key itself, unless it is hashed).
          lastKey = DatasetSchema.key(ofRecordID: record.id, code: resource.code)
        } catch {
          throw RPCError(.dataLoss, "a row of \(resource.code) cannot be read")
        }
        if !result.auditedFields.isEmpty {
          identity.audit.record(
            .init(
              // A row keyed by ID number is named by a pseudonym of the audit's own, stable
              // across reads (auditors read people masked).
              actor: caller.actor, action: "privacy.clear-read",
              target: schema.personalKey ? resource.code + "|" + (try masker.rowKeyPseudonym(key, subject: "audit")) : record.id,
              detail: result.auditedFields.map(\.name).joined(separator: ","), peer: peer, timeMs: identity.nowMs()))
        }
      }
      return (out, page.count > limit ? lastKey : nil)
    case nil:
      return ([], nil)
    }
  }

  /// ReadRows: for staff who read people in the responsible org's subtree, or publish there (and,
  /// for a view over people, readers of people there); the rows masked for the caller. Everyone
  /// else (data consumers, applications) asks for access through sharing.
  public func readRows(_ request: Eduhub_Catalog_V1_ReadRowsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Catalog_V1_ReadRowsResponse
  {
    let size = try Validate.pageSize(request.page.pageSize, default: 100, maximum: 1000)
    guard request.keyPrefix.utf8.count <= DatasetSchema.maxKeyLength else { throw Validate.invalid("key_prefix is too long") }
    let action = "catalog.ReadRows"
    return try store.read { db in
      guard let (record, resource) = try stored(request.code, in: db), visible(resource, path: record.scope, to: caller) else {
        throw RPCError(.notFound, "no resource \(request.code.prefix(64))")
      }
      guard resource.dataset.source != nil else {
        throw RPCError(.failedPrecondition, "resource \(resource.code) holds no rows here (see its exchange forms)")
      }
      // Staff who read the org's people (or publish its data): catalog.read alone, which data
      // consumers and external applications hold for searching, is not a right to the rows.
      guard (caller.can(.catalogRead, at: record.scope) && caller.can(.peopleRead, at: record.scope)) || caller.can(.catalogPublish, at: record.scope)
      else {
        throw identity.denied(
          caller, action, target: resource.code, peer: peer,
          "the rows of \(resource.code) are for readers of its org; other consumers ask for access (SharingService)")
      }
      if case .view(let view) = resource.dataset.source {
        try identity.require(.peopleRead, at: try identity.orgPath(view.orgCode, in: db), caller, action, target: resource.code, peer: peer)
      }
      // A key that is personal (an ID number) is neither searched by prefix by those who may see
      // it masked (a prefix oracle), nor carried in clear in page tokens: they are sealed.
      let personalKey = DatasetSchema(resource).personalKey
      if personalKey, !request.keyPrefix.isEmpty, !caller.can(.peopleReadClear, at: record.scope) {
        throw identity.denied(
          caller, action, target: resource.code, peer: peer, "key_prefix is not allowed on \(resource.code): its key is personal and you see it masked")
      }
      let context = "rows:\(resource.code):\(caller.accountID)"
      let after: String?
      if request.page.pageToken.isEmpty {
        after = nil
      } else if personalKey {
        guard let bytes = identity.openForSelf(request.page.pageToken, context: context) else { throw Validate.invalid("page_token is not valid") }
        after = String(decoding: bytes, as: UTF8.self)
      } else {
        after = try PageToken.parse(request.page.pageToken, parts: 1)?[0]
      }
      let page = try rows(of: resource, scope: record.scope, after: after, keyPrefix: request.keyPrefix, limit: size, caller: caller, peer: peer, in: db)
      var response = Eduhub_Catalog_V1_ReadRowsResponse()
      response.columns = resource.fields.map(\.name)
      response.rows = page.rows
      if let last = page.last {
        response.page.nextPageToken = personalKey ? try identity.sealForSelf(Array(last.utf8), context: context) : PageToken.make([last])
      }
      return response
    }
  }

  /// Rows a view holds now (people of its kind in its subtree).
  func countView(_ view: Eduhub_Catalog_V1_ViewSource, in db: Database) throws -> Int64 {
    try identity.countPeople(inScope: try identity.orgPath(view.orgCode, in: db), kind: PersonView.kind(view.personKind) ?? .unspecified, in: db)
  }
}
