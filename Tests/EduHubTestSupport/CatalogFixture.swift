import EduHubAPI
import EduHubIdentity

/// Catalog requests the suites share: a school roster of minors and its rows.
package enum CatalogFixture {
  package static func field(
    _ name: String, _ type: Eduhub_Catalog_V1_FieldType, _ sensitivity: Eduhub_Common_V1_Sensitivity = .internal,
    _ masking: Eduhub_Common_V1_MaskingKind = .none, maxLength: Int32 = 0
  ) -> Eduhub_Catalog_V1_SchemaField {
    var field = Eduhub_Catalog_V1_SchemaField()
    field.name = name
    field.type = type
    field.sensitivity = sensitivity
    field.masking = masking
    field.maxLength = maxLength
    return field
  }

  /// A school's roster of minors, ingested: the school's staff own it, others see it masked.
  package static func roster(org: String = IdentityWorld.school) -> Eduhub_Catalog_V1_PublishResourceRequest {
    var request = Eduhub_Catalog_V1_PublishResourceRequest()
    request.resource.code = "school.roster"
    request.resource.name = "学生花名册"
    request.resource.summary = "本校学生名单与成绩"
    request.resource.theme = "student"
    request.resource.type = .table
    request.resource.publishingSystem = "校园管理系统"
    request.resource.responsibleOrgCode = org
    request.resource.exchangeForms = ["数据库"]
    request.resource.sharingClass = .conditional
    request.resource.openingClass = .notOpen
    request.resource.fields = [
      field("student_id", .string), field("name", .string, .sensitive, .name, maxLength: 20),
      field("birth_date", .date, .sensitive, .birthDate), field("score", .decimal), field("enrolled", .boolean),
    ]
    request.resource.dataset.ingested.keyFields = ["student_id"]
    return request
  }

  package static func text(_ value: String) -> Eduhub_Catalog_V1_Value {
    var out = Eduhub_Catalog_V1_Value()
    out.text = value
    return out
  }

  package static func row(_ values: [Eduhub_Catalog_V1_Value], delete: Bool = false) -> Eduhub_Catalog_V1_IngestRow {
    var row = Eduhub_Catalog_V1_IngestRow()
    row.values = values
    row.delete = delete
    return row
  }

  package static let columns = ["student_id", "name", "birth_date", "score", "enrolled"]
}
