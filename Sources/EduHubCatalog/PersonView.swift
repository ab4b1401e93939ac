import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// The fields a view over people may expose, typed and classified as identity.proto declares them
/// (a view's publisher names the fields; their classification is the .proto's, never lowered).
package enum PersonView {
  /// The name a dataset view gives its source: people of the org tree (catalog.proto).
  package static let collection = "person"

  /// The person a (masked) body from ``OrgDirectory`` holds; a body that does not decode is
  /// DATA_LOSS.
  package static func person(_ body: [UInt8]) throws -> Eduhub_Identity_V1_Person {
    do { return try Eduhub_Identity_V1_Person(serializedBytes: body) } catch { throw StorageError(.corrupted, "a person record cannot be read") }
  }

  package struct Field {
    let type: Eduhub_Catalog_V1_FieldType
    let description: String
    package let value: @Sendable (Eduhub_Identity_V1_Person) -> String?
  }

  package static let fields: [String: Field] = [
    "name": Field(type: .string, description: "姓名") { $0.name },
    "gender": Field(type: .string, description: "性别") { person in
      switch person.gender {
      case .male: "男"
      case .female: "女"
      default: nil
      }
    },
    "birth_date": Field(type: .date, description: "出生日期") { $0.birthDate },
    "national_id": Field(type: .string, description: "身份证号") { $0.nationalID },
    "ethnicity": Field(type: .string, description: "民族") { $0.ethnicity },
    "phone": Field(type: .string, description: "手机号") { $0.phone },
    "address": Field(type: .string, description: "住址") { $0.address },
    "email": Field(type: .string, description: "电子邮箱") { $0.email },
    "org_code": Field(type: .string, description: "所在学校或单位代码") { $0.orgCode },
    "grade": Field(type: .integer, description: "年级") { $0.kind == .student ? String($0.grade) : nil },
    "class_name": Field(type: .string, description: "班级") { $0.className },
    "title": Field(type: .string, description: "职称") { $0.title },
    "kind": Field(type: .string, description: "人员类别") { person in
      switch person.kind {
      case .student: "student"
      case .teacher: "teacher"
      case .staff: "staff"
      case .guardian: "guardian"
      default: nil
      }
    },
  ]

  static let defaultFields = ["name", "gender", "birth_date", "org_code", "grade", "class_name"]

  package static func kind(_ name: String) -> Eduhub_Identity_V1_PersonKind? {
    switch name {
    case "": .unspecified
    case "student": .student
    case "teacher": .teacher
    case "staff": .staff
    case "guardian": .guardian
    default: nil
    }
  }

  /// `fields` with each one's type and classification set from the .proto (descriptions kept).
  static func normalize(_ fields: [Eduhub_Catalog_V1_SchemaField]) throws -> [Eduhub_Catalog_V1_SchemaField] {
    let classified = Dictionary(
      Eduhub_Identity_V1_Person.classifiedFields.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    let named = fields.isEmpty ? defaultFields.map { name in
      var field = Eduhub_Catalog_V1_SchemaField()
      field.name = name
      return field
    } : fields
    return try named.map { requested in
      guard let known = Self.fields[requested.name] else {
        throw Validate.invalid(
          "a view over people has no field \(requested.name.prefix(64)); it may show \(Self.fields.keys.sorted().joined(separator: ", "))")
      }
      var field = requested
      field.type = known.type
      if field.description_p.isEmpty { field.description_p = known.description }
      if let classification = classified[requested.name] {
        field.sensitivity = classification.sensitivity
        field.masking = classification.masking
      } else {
        field.sensitivity = .internal
        field.masking = .none
      }
      return field
    }
  }

  /// A (masked) person as a row of the view.
  package static func row(_ person: Eduhub_Identity_V1_Person, fields: [Eduhub_Catalog_V1_SchemaField]) -> Eduhub_Catalog_V1_DataRow {
    var row = Eduhub_Catalog_V1_DataRow()
    row.key = person.id
    row.masked = person.masked
    row.values = fields.map { field in
      let text = Self.fields[field.name]?.value(person)
      return DatasetSchema.value(text?.isEmpty == false ? text : nil, field.type)
    }
    return row
  }

  /// Where a page of a view stands: a person's scope and id, joined by U+001F (people are read in
  /// (scope, id) order).
  package static func position(of record: StoredRecord) -> String { record.scope + "\u{1F}" + record.id }

  /// The record a `position` names, as `RecordStore.inScope` pages after it; nil for anything else.
  package static func cursor(_ position: String) -> StoredRecord? {
    guard let split = position.firstIndex(of: "\u{1F}") else { return nil }
    return StoredRecord(collection: collection, id: String(position[position.index(after: split)...]), scope: String(position[..<split]), body: [])
  }
}
