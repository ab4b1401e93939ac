import EduHubAPI
import Foundation
import SwiftProtobuf

/// The manual of a resource, generated from its definition (so it cannot drift from it): what it
/// provides, the method to call, request and response fields with types, examples, status codes.
enum CatalogManual {
  static let readRows = "/eduhub.catalog.v1.CatalogService/ReadRows"

  static func make(for resource: Eduhub_Catalog_V1_Resource) -> Eduhub_Catalog_V1_Manual {
    var manual = Eduhub_Catalog_V1_Manual()
    let source: String
    switch resource.dataset.source {
    case .view(let view):
      source = "数据来自人员库（\(view.personKind.isEmpty ? "全部人员" : view.personKind)，机构 \(view.orgCode) 及其下级），实时反映源数据。"
    case .ingested(let ingested):
      source = "数据由\(resource.publishingSystem.isEmpty ? "发布系统" : resource.publishingSystem)按主键（\(ingested.keyFields.joined(separator: ", "))）推送，更新周期：\(resource.updateCycle.isEmpty ? "未声明" : resource.updateCycle)。"
    case nil:
      source = "本资源不在本系统中保存数据，交换方式：\(resource.exchangeForms.joined(separator: "、"))。"
    }
    manual.function = "\(resource.name)：\(resource.summary)\(resource.summary.hasSuffix("。") ? "" : "。")\(source)"
    if resource.type == .api, resource.hasApi { return api(resource, manual) }
    guard resource.dataset.source != nil else {
      manual.responseFields = resource.fields.map(field)
      return manual
    }
    manual.protocol = "gRPC（HTTP/2，protobuf），任意 gRPC 客户端；请求头 authorization: Bearer <访问令牌>"
    manual.method = readRows
    manual.requestFields = [
      described("code", "string", required: true, "资源代码，固定为 \(resource.code)"),
      described("key_prefix", "string", required: false, "只返回主键以此开头的行"),
      described("page.page_size", "int32", required: false, "每页行数，默认 100，最多 1000"),
      described("page.page_token", "string", required: false, "上一页返回的 next_page_token"),
    ]
    manual.responseFields =
      [
        described("columns", "repeated string", required: true, "各值对应的字段名，顺序同下"),
        described("rows[].key", "string", required: true, "行主键"),
      ]
      + resource.fields.enumerated().map { index, schemaField in
        var out = field(schemaField)
        out.name = "rows[].values[\(index)] (\(schemaField.name))"
        return out
      }
      + [
        described("rows[].masked", "bool", required: true, "为 true 时至少一个值已按调用方权限脱敏（以 text 返回）"),
        described("page.next_page_token", "string", required: false, "为空表示没有更多行"),
      ]

    var request = Eduhub_Catalog_V1_ReadRowsRequest()
    request.code = resource.code
    request.page.pageSize = 2
    manual.requestExample = (try? request.jsonString()) ?? ""
    var response = Eduhub_Catalog_V1_ReadRowsResponse()
    response.columns = resource.fields.map(\.name)
    var row = Eduhub_Catalog_V1_DataRow()
    row.key = "示例主键"
    row.values = resource.fields.map(example)
    row.masked = resource.fields.contains { $0.sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue }
    response.rows = [row]
    manual.responseExample = (try? response.jsonString()) ?? ""
    manual.statuses = [
      status("OK", "成功；next_page_token 非空时继续翻页"),
      status("UNAUTHENTICATED", "缺少或无效的访问令牌"),
      status("PERMISSION_DENIED", "调用方不是责任机构范围内的读者：请通过共享服务申请授权"),
      status("NOT_FOUND", "资源不存在或对调用方不可见"),
      status("INVALID_ARGUMENT", "page_size 为负、page_token 无效或 key_prefix 过长"),
      status("FAILED_PRECONDITION", "资源不保存数据行"),
      status("UNAVAILABLE", "节点暂不可用，可稍后重试"),
    ]
    return manual
  }

  static let callApi = "/eduhub.sharing.v1.SharingService/CallApi"

  /// The manual of a shared API: gRPC CallApi and HTTPS/JSON, with a curl call that works as shown
  /// once the token and host are filled in.
  static func api(_ resource: Eduhub_Catalog_V1_Resource, _ start: Eduhub_Catalog_V1_Manual) -> Eduhub_Catalog_V1_Manual {
    var manual = start
    let api = resource.api
    let grouped = !api.aggregates.isEmpty
    manual.function =
      "\(resource.name)：\(resource.summary)\(resource.summary.hasSuffix("。") ? "" : "。")基于数据资源 \(api.datasetCode)"
      + (grouped ? "，按 \(api.groupBy.isEmpty ? "全部行" : api.groupBy.joined(separator: "、")) 分组汇总，少于 \(api.minGroupSize) 行的分组不返回。" : "，返回匹配的行（每次最多 \(api.maxRows) 行）。")
      + "需先通过共享服务申请并获批授权。"
    manual.protocol = "gRPC（HTTP/2，protobuf）或 HTTPS/JSON（HTTP/1.1 或 HTTP/2）：POST /v1/apis/\(resource.code)，请求头 authorization: Bearer <访问令牌>"
    manual.method = callApi
    manual.requestFields =
      [described("api_code", "string", required: true, "固定为 \(resource.code)（HTTPS/JSON 时在路径中）")]
      + api.parameters.map { parameter in
        let operation: String
        switch parameter.operator {
        case .equals: operation = "等于"
        case .prefix: operation = "以其开头"
        case .atLeast: operation = "不小于"
        case .atMost: operation = "不大于"
        case .UNRECOGNIZED: operation = "?"
        }
        return described(
          "parameters.\(parameter.name)", "string", required: parameter.required,
          "\(parameter.field) \(operation) 该值。\(parameter.description_p)")
      }
    manual.responseFields =
      [described("columns", "repeated string", required: true, "各值对应的列名")]
      + resource.fields.enumerated().map { index, schemaField in
        var out = field(schemaField)
        out.name = "rows[].values[\(index)] (\(schemaField.name))"
        return out
      }
      + [
        described("suppressed_groups", "int64", required: false, "因行数少于最小分组而未返回的分组数"),
        described("truncated", "bool", required: false, "为 true 时匹配的行多于单次返回上限"),
      ]
    var parameters: [String: String] = [:]
    for parameter in api.parameters {
      let type = resource.fields.first { $0.name == parameter.field }?.type
      parameters[parameter.name] = type == .integer ? "9" : type == .date ? "2026-09-01" : "示例"
    }
    var call: [String: Any] = ["api_code": resource.code]
    if !parameters.isEmpty { call["parameters"] = parameters }
    manual.requestExample =
      (try? JSONSerialization.data(withJSONObject: call, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? ""
    let body = (try? JSONSerialization.data(withJSONObject: parameters, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    manual.curlExample =
      "curl -sS https://<节点地址>/v1/apis/\(resource.code) -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '\(body)'"
    var example = Eduhub_Sharing_V1_CallApiResponse()
    example.columns = resource.fields.map(\.name)
    var row = Eduhub_Catalog_V1_DataRow()
    row.values = resource.fields.map(Self.example)
    example.rows = [row]
    manual.responseExample = String(decoding: ApiJSON.answer(example), as: UTF8.self)
    manual.statuses = [
      status("OK / HTTP 200", "成功"),
      status("UNAUTHENTICATED / HTTP 401", "缺少或无效的访问令牌"),
      status("PERMISSION_DENIED / HTTP 403", "没有有效授权（未授权、已过期、已暂停或已撤销）"),
      status("INVALID_ARGUMENT / HTTP 400", "缺少必填参数、参数不是声明的类型或不认识的参数"),
      status("NOT_FOUND / HTTP 404", "接口不存在或对调用方不可见"),
      status("RESOURCE_EXHAUSTED / HTTP 429", "超过授权的调用频率（见 retry-after）或当日配额"),
      status("UNAVAILABLE / HTTP 503", "节点暂不可用，可稍后重试"),
    ]
    return manual
  }

  static func typeName(_ type: Eduhub_Catalog_V1_FieldType) -> String {
    switch type {
    case .string: "string (Value.text)"
    case .integer: "integer (Value.integer)"
    case .decimal: "decimal (Value.decimal)"
    case .date: "date YYYY-MM-DD (Value.date)"
    case .timestamp: "timestamp ms (Value.timestamp_ms)"
    case .boolean: "boolean (Value.boolean)"
    case .unspecified, .UNRECOGNIZED: "unspecified"
    }
  }

  static func field(_ schemaField: Eduhub_Catalog_V1_SchemaField) -> Eduhub_Catalog_V1_ManualField {
    var note = schemaField.description_p
    if schemaField.sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue {
      note += "（敏感字段：无权限的调用方得到脱敏值）"
    }
    return described(schemaField.name, typeName(schemaField.type), required: schemaField.required, note)
  }

  static func described(_ name: String, _ type: String, required: Bool, _ description: String) -> Eduhub_Catalog_V1_ManualField {
    var field = Eduhub_Catalog_V1_ManualField()
    field.name = name
    field.type = type
    field.required = required
    field.description_p = description
    return field
  }

  static func status(_ code: String, _ meaning: String) -> Eduhub_Catalog_V1_ManualStatus {
    var status = Eduhub_Catalog_V1_ManualStatus()
    status.code = code
    status.meaning = meaning
    return status
  }

  /// An example value of the field's type: never real data.
  static func example(_ field: Eduhub_Catalog_V1_SchemaField) -> Eduhub_Catalog_V1_Value {
    var value = Eduhub_Catalog_V1_Value()
    if field.sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue {
      switch field.masking {
      case .name: value.text = "张*"
      case .phone: value.text = "138****5663"
      case .birthDate: value.text = "2012"
      case .nationalID: value.text = "ID-3f9a0c2e"
      case .address: value.text = "达州市通川区"
      default: value.null = true
      }
      return value
    }
    switch field.type {
    case .integer: value.integer = 42
    case .decimal: value.decimal = "12.50"
    case .date: value.date = "2026-09-01"
    case .timestamp: value.timestampMs = 1_788_220_800_000
    case .boolean: value.boolean = true
    default: value.text = "示例"
    }
    return value
  }
}
