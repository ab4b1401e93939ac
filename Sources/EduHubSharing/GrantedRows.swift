import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import SwiftProtobuf
import Synchronization

/// One row as read from its source: a record of an ingested table (masked when it is encoded), or a
/// person that Identity masked for the grant's reader (``OrgDirectory`` hands out nothing else).
struct SourceRow {
  let record: StoredRecord
  /// What masking decided for a person; nil for a table's row, or a deletion.
  let masking: RecordMasker.Result?

  init(_ record: StoredRecord) {
    self.record = record
    masking = nil
  }

  init(_ person: MaskedPerson) {
    record = person.record
    masking = person.masking
  }
}

/// Rows of one table resource as one grant shows them: only the granted fields, each masked for
/// the grant's level by the same `RecordMasker` every other read goes through.
struct GrantedRows: Sendable {
  enum Source: Sendable {
    /// An ingested dataset: rows are `catalog_row` records `code|key`.
    case ingested(schema: DatasetSchema, masker: RecordMasker)
    /// A view over people: the kind kept and the org subtree read.
    case view(kind: Eduhub_Identity_V1_PersonKind, path: String, masker: RecordMasker)
  }

  let code: String
  /// The fields shown, in the resource's order.
  let fields: [Eduhub_Catalog_V1_SchemaField]
  let source: Source
  let reader: Reader
  let today: CivilDate
  /// Per shown field: masking never rewrites it (not personal), so its stored text is as checked.
  let trusted: [Bool]
  /// Whose pseudonyms replace the row keys (nil: keys go out as stored): a de-identified reader's
  /// for a view (whose keys are person ids), any reader's but a clear one's for a table keyed by a
  /// personal field (an ID number as key is the ID number).
  let keySubject: String?
  let keyMasker: RecordMasker
  /// The record's field numbers of the shown fields: a row is flagged masked when the policy hides
  /// one of them from the reader.
  let shownNumbers: Set<Int>
  /// Whether the table's key is personal (its record ids hold a hash of the key, its bodies the key).
  let personalKey: Bool

  /// - Parameter fields: the dataset fields shown (granted, or an API's projection).
  init(
    resource: Eduhub_Catalog_V1_Resource, fields: [Eduhub_Catalog_V1_SchemaField], reader: Reader, identity: IdentityService,
    viewPath: String?
  ) {
    code = resource.code
    self.fields = fields
    self.reader = reader
    today = identity.today
    trusted = fields.map { $0.sensitivity.rawValue <= Eduhub_Common_V1_Sensitivity.internal.rawValue || $0.masking == .none }
    keyMasker = identity.peopleMasker
    switch reader {
    case .consumer(let id):
      keySubject = id
    case .staff(let subject, let grants) where grants.isEmpty:
      let personal = Set(resource.fields.filter { $0.sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue }.map(\.name))
      let keyed = resource.dataset.ingested.keyFields.contains(where: personal.contains)
      keySubject = keyed && resource.dataset.source.map({ if case .ingested = $0 { true } else { false } }) == true ? subject : nil
    default:
      keySubject = nil
    }
    let names = Set(fields.map(\.name))
    personalKey = resource.dataset.source.map { if case .ingested = $0 { true } else { false } } == true && DatasetSchema(resource).personalKey
    switch resource.dataset.source {
    case .view(let view):
      source = .view(kind: PersonView.kind(view.personKind) ?? .unspecified, path: viewPath ?? "", masker: identity.peopleMasker)
      shownNumbers = Set(Eduhub_Identity_V1_Person.classifiedFields.filter { names.contains($0.name) }.map(\.number))
    case .ingested, nil:
      shownNumbers = Set(fields.map { DatasetSchema.fieldNumber($0.column) })
      var shown = resource
      shown.fields = fields
      let schema = DatasetSchema(resource)
      // Masking decides on the whole row (a birth date not shown still tells a child's age);
      // decoding keeps only the shown fields.
      source = .ingested(schema: DatasetSchema(shown), masker: identity.masker(for: schema.classified))
    }
  }

  /// The id prefix of the rows' records ("" for a view, which is read by scope).
  var idPrefix: String {
    if case .view = source { return "" }
    return DatasetSchema.recordID(code, "")
  }

  /// The view's subtree (nil for an ingested dataset).
  var scope: String? {
    if case .view(_, let path, _) = source { return path }
    return nil
  }

  /// The row key of a record as this reader sees it.
  func key(of record: StoredRecord) throws -> String {
    let stored: String
    if case .view = source { stored = record.id } else { stored = DatasetSchema.key(of: record, code: code, personalKey: personalKey) }
    guard let keySubject else { return stored }
    return try keyMasker.rowKeyPseudonym(stored, subject: keySubject)
  }

  /// The row key of a record as stored (what masking decides by: whose row it is).
  func storedKey(of record: StoredRecord) -> String {
    if case .view = source { return record.id }
    return DatasetSchema.key(of: record, code: code, personalKey: personalKey)
  }

  /// Whether a row belongs to the rows at all (a view keeps people of its kind).
  func includes(_ row: SourceRow) -> Bool {
    if case .view(let kind, _, _) = source { return row.record.deleted || IdentityService.isKind(row.record.body, kind) }
    return true
  }

  /// Buffers reused from row to row by `appendChange`.
  struct Scratch {
    /// Where each field number's value lies in the row being encoded.
    var slots: [Range<Int>?] = []
    var row: [UInt8] = []
    var change: [UInt8] = []
  }

  /// Appends `record` to `out` as a `RowChange` (field 2 of SubscribeResponse), encoded straight
  /// from the masked stored bytes; returns whether a minor's sensitive field went out in clear.
  func appendChange(_ row: SourceRow, to out: inout [UInt8], scratch: inout Scratch) throws -> Bool {
    let record = row.record
    let key = try key(of: record)
    scratch.change.removeAll(keepingCapacity: true)
    RowWire.appendField(1, key, to: &scratch.change)
    var clear = false
    if record.deleted {
      RowWire.appendVarintField(3, 1, to: &scratch.change)
    } else {
      clear = try encodeRow(row, key: key, scratch: &scratch)
      RowWire.appendField(2, scratch.row, to: &scratch.change)
    }
    RowWire.appendField(2, scratch.change, to: &out)
    return clear
  }

  /// Appends `record` to `out` as a `DataRow` in field `number` (2 of CallApiResponse).
  func appendRow(_ row: SourceRow, field number: Int, to out: inout [UInt8], scratch: inout Scratch) throws -> Bool {
    let clear = try encodeRow(row, key: try key(of: row.record), scratch: &scratch)
    RowWire.appendField(number, scratch.row, to: &out)
    return clear
  }

  /// `scratch.row` := the `DataRow` of a live record (masked, the shown fields); returns whether a
  /// minor's sensitive field is in it in clear.
  private func encodeRow(_ input: SourceRow, key: String, scratch: inout Scratch) throws -> Bool {
    let record = input.record
    scratch.row.removeAll(keepingCapacity: true)
    do {
      switch source {
      case .view(_, _, let masker):
        // People come masked for this reader by Identity, unless they were read in clear for a
        // computation (an API's filters): then they are masked here, by the same masker.
        let result = try input.masking ?? masker.mask(record.body, personID: record.id, scope: record.scope, for: reader, on: today)
        var person = try PersonView.person(result.body)
        person.masked = false
        // The row's key as this reader gets it (a de-identified consumer's own pseudonym), never
        // the person id the view's row would carry.
        var row = PersonView.row(person, fields: fields)
        row.key = key
        // Masked: the policy hides a shown field from this reader, said whether or not the field
        // holds a value, and never for a field the grant does not show.
        row.masked = masker.hidesAny(of: shownNumbers, age: result.age, owner: result.owner, for: reader)
        scratch.row = try row.serializedBytes()
        return !result.auditedFields.isEmpty
      case .ingested(let schema, let masker):
        let result = try masker.mask(record.body, personID: storedKey(of: record), scope: record.scope, for: reader, on: today)
        let body = result.body
        if scratch.slots.isEmpty {
          scratch.slots = Array(repeating: nil, count: (schema.fields.map { DatasetSchema.fieldNumber($0.column) }.max() ?? 0) + 1)
        } else {
          for index in scratch.slots.indices { scratch.slots[index] = nil }
        }
        var index = 0
        while index < body.count {
          let field = try WireFields.nextField(body, &index)
          if field.wireType == 2, field.number < scratch.slots.count { scratch.slots[field.number] = field.value }
        }
        RowWire.appendField(1, key, to: &scratch.row)
        for (position, field) in schema.fields.enumerated() {
          let range = scratch.slots[DatasetSchema.fieldNumber(field.column)]
          RowWire.appendValue(range.map { body[$0] }, field.type, trusted: trusted[position], to: &scratch.row)
        }
        // Masked: the policy hides a shown field from this reader, said whether or not the field
        // holds a value, and never for a field the grant does not show.
        if masker.hidesAny(of: shownNumbers, age: result.age, owner: result.owner, for: reader) {
          RowWire.appendVarintField(3, 1, to: &scratch.row)
        }
        return !result.auditedFields.isEmpty
      }
    } catch {
      throw RPCError(.dataLoss, "a row of \(code) cannot be read")
    }
  }
}
