import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubStorage
import Foundation
import SwiftProtobuf
import Synchronization

/// A shared API resolved once (until the catalog changes): the API, the table it computes over,
/// and its parameters bound to the table's fields.
struct ApiPlan: Sendable {
  let api: Eduhub_Catalog_V1_Resource
  let scope: String
  let table: Eduhub_Catalog_V1_Resource
  let tableScope: String
  /// A view's org path.
  let viewPath: String?
  let parameters: [String: (parameter: Eduhub_Catalog_V1_ApiParameter, field: Eduhub_Catalog_V1_SchemaField)]
  /// The parameters that, bound by EQUALS, name each key field in key order: a call giving them
  /// all reads one row by its id.
  let pointKey: [String]?

  init(api: Eduhub_Catalog_V1_Resource, scope: String, table: Eduhub_Catalog_V1_Resource, tableScope: String, viewPath: String?) {
    self.api = api
    self.scope = scope
    self.table = table
    self.tableScope = tableScope
    self.viewPath = viewPath
    let fields = Dictionary(table.fields.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    var parameters: [String: (Eduhub_Catalog_V1_ApiParameter, Eduhub_Catalog_V1_SchemaField)] = [:]
    for parameter in api.api.parameters {
      if let field = fields[parameter.field] { parameters[parameter.name] = (parameter, field) }
    }
    self.parameters = parameters
    if case .ingested(let ingested) = table.dataset.source {
      let point = ingested.keyFields.map { key in api.api.parameters.first { $0.field == key && $0.operator == .equals }?.name }
      pointKey = point.contains(nil) ? nil : point.compactMap { $0 }
    } else {
      pointKey = nil
    }
  }
}

/// One filter of a call: a field's stored text compared with a parameter's canonical value.
struct ApiFilter: Sendable {
  let field: Eduhub_Catalog_V1_SchemaField
  let operation: Eduhub_Catalog_V1_ApiOperator
  let value: String

  func matches(_ stored: String?) -> Bool {
    guard let stored else { return false }
    switch operation {
    case .equals:
      return ApiValues.compare(stored, value, field.type) == .orderedSame
    case .prefix:
      return stored.hasPrefix(value)
    case .atLeast:
      return ApiValues.compare(stored, value, field.type) != .orderedAscending
    case .atMost:
      return ApiValues.compare(stored, value, field.type) != .orderedDescending
    case .UNRECOGNIZED:
      return false
    }
  }
}

/// Comparison and arithmetic on stored (canonical text) values.
enum ApiValues {
  static func compare(_ a: String, _ b: String, _ type: Eduhub_Catalog_V1_FieldType) -> ComparisonResult {
    switch type {
    case .integer, .timestamp:
      if let x = Int64(a), let y = Int64(b) { return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame }
    case .decimal:
      if let x = Decimal(string: a), let y = Decimal(string: b) { return x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame }
    default:
      break
    }
    return a < b ? .orderedAscending : a > b ? .orderedDescending : .orderedSame
  }

  /// Running values of one aggregate over one group.
  struct Accumulator {
    var count: Int64 = 0
    var sum = Decimal(0)
    var extreme: String?
  }

  static func add(_ text: String?, to accumulator: inout Accumulator, _ aggregate: Eduhub_Catalog_V1_ApiAggregate, _ type: Eduhub_Catalog_V1_FieldType) {
    switch aggregate.function {
    case .count:
      accumulator.count += 1
    case .sum, .avg:
      guard let text, let value = Decimal(string: text) else { return }
      accumulator.sum += value
      accumulator.count += 1
    case .min, .max:
      guard let text else { return }
      accumulator.count += 1
      guard let current = accumulator.extreme else {
        accumulator.extreme = text
        return
      }
      let order = compare(text, current, type)
      if (aggregate.function == .min && order == .orderedAscending) || (aggregate.function == .max && order == .orderedDescending) {
        accumulator.extreme = text
      }
    case .unspecified, .UNRECOGNIZED:
      return
    }
  }

  static func result(_ accumulator: Accumulator, _ aggregate: Eduhub_Catalog_V1_ApiAggregate, _ type: Eduhub_Catalog_V1_FieldType)
    -> Eduhub_Catalog_V1_Value
  {
    var value = Eduhub_Catalog_V1_Value()
    switch aggregate.function {
    case .count:
      value.integer = accumulator.count
    case .sum:
      if accumulator.count == 0 {
        value.null = true
      } else if type == .integer, let whole = Int64(exactly: NSDecimalNumber(decimal: accumulator.sum).int64Value),
        Decimal(whole) == accumulator.sum
      {
        value.integer = whole
      } else {
        value.decimal = "\(accumulator.sum)"
      }
    case .avg:
      if accumulator.count == 0 {
        value.null = true
      } else {
        var mean = accumulator.sum / Decimal(accumulator.count)
        var rounded = Decimal()
        NSDecimalRound(&rounded, &mean, 4, .plain)
        value.decimal = "\(rounded)"
      }
    case .min, .max:
      value = DatasetSchema.value(accumulator.extreme, type)
    case .unspecified, .UNRECOGNIZED:
      value.null = true
    }
    return value
  }
}
