import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubStorage
import Foundation
import SwiftProtobuf
import Synchronization

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

  /// - Parameter fields: the dataset fields shown (granted, or an API's projection).
  init(
    resource: Eduhub_Catalog_V1_Resource, fields: [Eduhub_Catalog_V1_SchemaField], reader: Reader, identity: IdentityService,
    viewPath: String?
  ) {
    code = resource.code
    self.fields = fields
    self.reader = reader
    today = identity.today
    switch resource.dataset.source {
    case .view(let view):
      source = .view(kind: PersonView.kind(view.personKind) ?? .unspecified, path: viewPath ?? "", masker: identity.peopleMasker)
    case .ingested, nil:
      var shown = resource
      shown.fields = fields
      let schema = DatasetSchema(resource)
      // Masking decides on the whole row (a birth date not shown still tells a child's age);
      // decoding keeps only the shown fields.
      source = .ingested(schema: DatasetSchema(shown), masker: identity.masker(for: schema.classified))
    }
  }

  /// The collection the rows are records of.
  var collection: String {
    if case .view = source { return PersonView.collection }
    return DatasetSchema.rowCollection
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

  /// The row key of a record.
  func key(of record: StoredRecord) -> String {
    if case .view = source { return record.id }
    return String(record.id.utf8.dropFirst(code.utf8.count + 1)) ?? record.id
  }

  /// Whether a record belongs to the rows at all (a view keeps people of its kind).
  func includes(_ record: StoredRecord) -> Bool {
    if case .view(let kind, _, _) = source { return record.deleted || PersonView.isKind(record.body, kind) }
    return true
  }

  /// One record as a row for the grant; and whether a minor's sensitive field went out in clear
  /// (the caller audits).
  func row(_ record: StoredRecord) throws -> (row: Eduhub_Catalog_V1_DataRow, clearMinorFields: Bool) {
    switch source {
    case .ingested(let schema, let masker):
      let key = key(of: record)
      do {
        let result = try masker.mask(record.body, personID: key, scope: record.scope, for: reader, on: today)
        return (try schema.row(result.body, masked: result.changed), !result.auditedFields.isEmpty)
      } catch {
        throw RPCError(.dataLoss, "a row of \(code) cannot be read")
      }
    case .view(_, _, let masker):
      do {
        let result = try masker.mask(record.body, personID: record.id, scope: record.scope, for: reader, on: today)
        var person = try Eduhub_Identity_V1_Person(serializedBytes: result.body)
        person.masked = result.changed
        return (PersonView.row(person, fields: fields), !result.auditedFields.isEmpty)
      } catch {
        throw RPCError(.dataLoss, "a row of \(code) cannot be read")
      }
    }
  }
}
