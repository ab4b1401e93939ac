import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import SwiftProtobuf

/// The Dazhou education bureau's data resources, as `eduhub seed` publishes them: views over the
/// seeded people (students, teachers) and ingested datasets derived from them (school statistics,
/// evaluation scores, safety inspections), written through the same checks as IngestRows.
public enum CatalogSeeder {
  struct Definition {
    let code, name, summary, theme, system, org, cycle: String
    let type: Eduhub_Catalog_V1_ResourceType
    let sharing: Eduhub_Catalog_V1_SharingClass
    let fields: [(String, Eduhub_Catalog_V1_FieldType, String, Eduhub_Common_V1_Sensitivity, Eduhub_Common_V1_MaskingKind)]
    var dataset: Eduhub_Catalog_V1_Dataset? = nil
  }

  static func view(_ kind: String) -> Eduhub_Catalog_V1_Dataset {
    var dataset = Eduhub_Catalog_V1_Dataset()
    dataset.view.collection = PersonView.collection
    dataset.view.personKind = kind
    return dataset
  }

  static func ingested(_ keys: [String]) -> Eduhub_Catalog_V1_Dataset {
    var dataset = Eduhub_Catalog_V1_Dataset()
    dataset.ingested.keyFields = keys
    return dataset
  }

  static let definitions: [Definition] = [
    Definition(
      code: "dz.student.basic", name: "学生基础数据", summary: "全市中小学学生学籍基础信息：姓名、性别、出生日期、身份证号、学校、年级、班级",
      theme: "student", system: "学籍管理系统", org: "511700", cycle: "实时", type: .table, sharing: .conditional,
      fields: [
        ("name", .string, "学生姓名", .sensitive, .name), ("gender", .string, "性别", .internal, .none),
        ("birth_date", .date, "出生日期", .sensitive, .birthDate), ("national_id", .string, "身份证号", .highlySensitive, .nationalID),
        ("org_code", .string, "学校标识码", .public, .none), ("grade", .integer, "年级", .internal, .none),
        ("class_name", .string, "班级", .internal, .none),
      ], dataset: view("student")),
    Definition(
      code: "dz.teacher.basic", name: "教师基础数据", summary: "全市在编教师信息：姓名、职称、所在学校、联系电话", theme: "teacher",
      system: "教师管理信息系统", org: "511700", cycle: "实时", type: .table, sharing: .conditional,
      fields: [
        ("name", .string, "教师姓名", .sensitive, .name), ("title", .string, "职称", .internal, .none),
        ("org_code", .string, "所在学校", .public, .none), ("phone", .string, "手机号", .sensitive, .phone),
      ], dataset: view("teacher")),
    Definition(
      code: "dz.school.annual", name: "学校年度统计", summary: "各校办学规模、班级数、在校生数、专任教师数的年度统计", theme: "school",
      system: "教育事业统计系统", org: "511700", cycle: "每年", type: .table, sharing: .unconditional,
      fields: [
        ("school_code", .string, "学校标识码", .public, .none), ("year", .integer, "统计年度", .public, .none),
        ("students", .integer, "在校生数", .public, .none), ("teachers", .integer, "专任教师数", .public, .none),
        ("classes", .integer, "班级数", .public, .none),
      ], dataset: ingested(["school_code", "year"])),
    Definition(
      code: "dz.evaluation.scores", name: "学业质量评价成绩", summary: "义务教育学业质量监测（九年级）各科成绩", theme: "evaluation",
      system: "考试评价系统", org: "511700", cycle: "每学期", type: .table, sharing: .conditional,
      fields: [
        ("student_id", .string, "学生编号", .internal, .none), ("subject", .string, "科目", .public, .none),
        ("score", .decimal, "成绩", .sensitive, .redact), ("exam_date", .date, "考试日期", .public, .none),
      ], dataset: ingested(["student_id", "subject"])),
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
        ("school_code", .string, "学校标识码", .public, .none), ("inspected_on", .date, "检查日期", .public, .none),
        ("hazard", .string, "隐患描述", .internal, .none), ("status", .string, "整改状态", .public, .none),
      ], dataset: ingested(["school_code", "inspected_on"])),
    Definition(
      code: "tc.student.health", name: "通川区学生体质健康数据", summary: "国家学生体质健康标准测试结果", theme: "student",
      system: "体质健康监测系统", org: "511702", cycle: "每年", type: .file, sharing: .notShared,
      fields: [("student_id", .string, "学生编号", .internal, .none), ("bmi", .decimal, "体重指数", .highlySensitive, .redact)]),
  ]

  /// Publishes the definitions whose responsible org exists (as the operator) and fills their
  /// ingested datasets from the seeded people; returns how many resources were published.
  @discardableResult
  public static func run(into catalog: CatalogService, now: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) throws -> Int {
    var published: [Eduhub_Catalog_V1_Resource] = []
    // The views' row counts, every kind the views ask for counted in one pass per org.
    let viewKinds = Set(definitions.compactMap { definition -> Eduhub_Identity_V1_PersonKind? in
      guard case .view(let view) = definition.dataset?.source else { return nil }
      return PersonView.kind(view.personKind)
    })
    var census: [String: [Eduhub_Identity_V1_PersonKind: Int64]] = [:]
    try catalog.store.transaction { db in
      for definition in definitions {
        guard let org = try catalog.identity.org(definition.org, in: db),
          try catalog.store.records.get(CatalogCollections.resource, definition.code, in: db) == nil
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
          field.required = definition.dataset.map { $0.ingested.keyFields.contains(name) } ?? false
          return field
        }
        if let dataset = definition.dataset { resource.dataset = dataset }
        try CatalogService.validate(resource)
        try CatalogService.prepareDataset(&resource, old: nil, responsiblePath: org.scope) { code in
          guard let found = try catalog.identity.org(code, in: db)?.record else {
            throw Validate.invalid("no org \(code)")
          }
          return found.scope
        }
        if case .view(let view) = resource.dataset.source {
          let path = try catalog.identity.orgPath(view.orgCode, in: db)
          let kind = PersonView.kind(view.personKind) ?? .unspecified
          if census[path]?[kind] == nil {
            census[path] = try catalog.identity.countPeople(inScope: path, kinds: viewKinds.union([kind]), in: db)
          }
          resource.rowCount = census[path]?[kind] ?? 0
        }
        try catalog.store.put(CatalogCollections.resource, resource.code, scope: org.scope, resource, in: db)
        published.append(resource)
      }
    }
    let codes = Set(published.map(\.code))
    if codes.contains("dz.school.annual") || codes.contains("dz.evaluation.scores") || codes.contains("dz.safety.inspection") {
      let people = try SeededPeople.read(catalog)
      try fill(catalog, "dz.school.annual", rows: SeededPeople.schoolRows(people), if: codes)
      try fill(catalog, "dz.evaluation.scores", rows: SeededPeople.scoreRows(people), if: codes)
      try fill(catalog, "dz.safety.inspection", rows: SeededPeople.inspectionRows(people), if: codes)
    }
    return published.count
  }

  /// Writes text rows (every column, in schema order) into a just-published ingested resource.
  static func fill(_ catalog: CatalogService, _ code: String, rows: [[String]], if published: Set<String>) throws {
    guard published.contains(code) else { return }
    let plan = try catalog.store.read { db in
      guard let (record, resource) = try catalog.stored(code, in: db) else { throw Validate.invalid("no resource \(code)") }
      let schema = DatasetSchema(resource)
      return CatalogService.IngestPlan(
        schema: schema, scope: record.scope, positions: Array(resource.fields.indices), keyColumns: schema.keyPositions,
        complete: true)
    }
    var position: Int64 = 0
    for chunk in stride(from: 0, to: rows.count, by: CatalogService.ingestBatch) {
      let slice: ArraySlice<[String]> = rows[chunk..<min(rows.count, chunk + CatalogService.ingestBatch)]
      let checked = try slice.map { (texts: [String]) throws -> CatalogService.CheckedRow in
        var row = Eduhub_Catalog_V1_IngestRow()
        row.values = texts.map { (text: String) -> Eduhub_Catalog_V1_Value in
          var value = Eduhub_Catalog_V1_Value()
          value.text = text
          return value
        }
        position += 1
        do { return try CatalogService.check(row, plan, position: position) } catch let problem as RowProblem { throw Validate.invalid("seed row of \(code): \(problem.message)") }
      }
      _ = try catalog.write(checked, plan)
    }
  }
}
