import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import SwiftProtobuf

/// The Dazhou education bureau's data resources, as `eduhub seed` publishes them (metadata and
/// schemas; their datasets come with the catalog's next step).
public enum CatalogSeeder {
  struct Definition {
    let code, name, summary, theme, system, org, cycle: String
    let type: Eduhub_Catalog_V1_ResourceType
    let sharing: Eduhub_Catalog_V1_SharingClass
    let fields: [(String, Eduhub_Catalog_V1_FieldType, String, Eduhub_Common_V1_Sensitivity, Eduhub_Common_V1_MaskingKind)]
  }

  static let definitions: [Definition] = [
    Definition(
      code: "dz.student.basic", name: "学生基础数据", summary: "全市中小学学生学籍基础信息：姓名、性别、出生日期、身份证号、学校、年级、班级",
      theme: "student", system: "学籍管理系统", org: "511700", cycle: "每日", type: .table, sharing: .conditional,
      fields: [
        ("name", .string, "学生姓名", .sensitive, .name), ("gender", .string, "性别", .internal, .none),
        ("birth_date", .date, "出生日期", .sensitive, .birthDate), ("national_id", .string, "身份证号", .highlySensitive, .nationalID),
        ("school_code", .string, "学校标识码", .public, .none), ("grade", .integer, "年级", .internal, .none),
      ]),
    Definition(
      code: "dz.teacher.basic", name: "教师基础数据", summary: "全市在编教师信息：姓名、职称、任教学科、所在学校", theme: "teacher",
      system: "教师管理信息系统", org: "511700", cycle: "每月", type: .table, sharing: .conditional,
      fields: [
        ("name", .string, "教师姓名", .sensitive, .name), ("title", .string, "职称", .internal, .none),
        ("subject", .string, "任教学科", .internal, .none), ("phone", .string, "手机号", .sensitive, .phone),
      ]),
    Definition(
      code: "dz.school.annual", name: "学校年度统计", summary: "各校办学规模、班级数、在校生数、专任教师数的年度统计", theme: "school",
      system: "教育事业统计系统", org: "511700", cycle: "每年", type: .table, sharing: .unconditional,
      fields: [
        ("school_code", .string, "学校标识码", .public, .none), ("students", .integer, "在校生数", .public, .none),
        ("teachers", .integer, "专任教师数", .public, .none), ("classes", .integer, "班级数", .public, .none),
      ]),
    Definition(
      code: "dz.evaluation.scores", name: "学业质量评价成绩", summary: "义务教育学业质量监测各科成绩与等级", theme: "evaluation",
      system: "考试评价系统", org: "511700", cycle: "每学期", type: .table, sharing: .conditional,
      fields: [
        ("student_id", .string, "学生编号", .internal, .none), ("subject", .string, "科目", .public, .none),
        ("score", .decimal, "成绩", .sensitive, .redact),
      ]),
    Definition(
      code: "dz.enrollment.primary", name: "小学招生报名", summary: "小学一年级招生报名与录取信息", theme: "enrollment",
      system: "招生入学平台", org: "511700", cycle: "实时", type: .api, sharing: .conditional,
      fields: [
        ("child_name", .string, "儿童姓名", .sensitive, .name), ("guardian_phone", .string, "监护人手机号", .sensitive, .phone),
        ("address", .string, "户籍地址", .sensitive, .address),
      ]),
    Definition(
      code: "dz.safety.inspection", name: "校园安全隐患排查", summary: "学校安全检查记录与隐患整改情况", theme: "safety",
      system: "校园安全管理平台", org: "511700", cycle: "每周", type: .table, sharing: .unconditional,
      fields: [
        ("school_code", .string, "学校标识码", .public, .none), ("hazard", .string, "隐患描述", .internal, .none),
        ("status", .string, "整改状态", .public, .none),
      ]),
    Definition(
      code: "tc.student.health", name: "通川区学生体质健康数据", summary: "国家学生体质健康标准测试结果", theme: "student",
      system: "体质健康监测系统", org: "511702", cycle: "每年", type: .file, sharing: .notShared,
      fields: [("student_id", .string, "学生编号", .internal, .none), ("bmi", .decimal, "体重指数", .highlySensitive, .redact)]),
  ]

  /// Publishes the definitions whose responsible org exists, as the operator; returns how many.
  @discardableResult
  public static func run(into replica: Replica, now: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) throws -> Int {
    var writes: [Replica.Write] = []
    for definition in definitions {
      guard let org = try replica.store.get(IdentityCollections.org, definition.org), !org.deleted,
        try replica.store.get(CatalogCollections.resource, definition.code) == nil
      else { continue }
      var resource = Eduhub_Catalog_V1_Resource()
      resource.code = definition.code
      resource.name = definition.name
      resource.summary = definition.summary
      resource.theme = definition.theme
      resource.type = definition.type
      resource.publishingSystem = definition.system
      resource.responsibleOrgCode = definition.org
      resource.exchangeForms = definition.type == .api ? ["接口"] : ["数据库", "文件"]
      resource.sharingClass = definition.sharing
      resource.openingClass = .notOpen
      resource.updateCycle = definition.cycle
      resource.updatedMs = now
      resource.fields = definition.fields.map { name, type, description, sensitivity, masking in
        var field = Eduhub_Catalog_V1_SchemaField()
        field.name = name
        field.type = type
        field.description_p = description
        field.sensitivity = sensitivity
        field.masking = masking
        return field
      }
      try CatalogService.validate(resource)
      writes.append(.init(collection: CatalogCollections.resource, id: resource.code, scope: org.scope, body: try resource.serializedBytes()))
    }
    try replica.write(writes)
    return writes.count
  }
}
