import EduHubAPI
import EduHubIdentity
import EduHubStorage

/// Checks and completes the definition of a shared API before its resource is stored: the dataset
/// it computes over, its parameters, projection or grouping, and the output columns it yields (which
/// become the API resource's `fields`, classified as the dataset's fields are).
public enum ApiDefinitionCheck {
  static let defaultMinGroupSize: Int32 = 10
  static let defaultMaxRows: Int32 = 1000

  /// - Parameters:
  ///   - dataset: the table resource named by `dataset_code` and its org path (nil: none).
  static func prepare(
    _ resource: inout Eduhub_Catalog_V1_Resource, responsiblePath: String,
    dataset: (Eduhub_Catalog_V1_Resource, String)?
  ) throws {
    let invalid = Validate.invalid
    guard resource.hasApi else { return }
    guard resource.type == .api else { throw invalid("only API resources have an api definition") }
    var api = resource.api
    guard let (table, tablePath) = dataset, !table.retired else {
      throw invalid("api.dataset_code names no table resource (\(api.datasetCode.prefix(64)))")
    }
    guard table.type == .table, table.dataset.source != nil else {
      throw invalid("api.dataset_code must name a table resource with a dataset")
    }
    guard RecordStore.inScope(tablePath, responsiblePath), !tablePath.isEmpty else {
      throw invalid("an API computes over a table of its own org's subtree")
    }
    let fields = Dictionary(table.fields.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    func field(_ name: String, _ role: String) throws -> Eduhub_Catalog_V1_SchemaField {
      guard let found = fields[name] else { throw invalid("\(role) \(name.prefix(64)) is not a field of \(table.code)") }
      return found
    }
    guard api.parameters.count <= 20 else { throw invalid("at most 20 parameters") }
    var names = Set<String>()
    for parameter in api.parameters {
      try Validate.identifier(parameter.name, "parameter name", maxLength: 64)
      guard names.insert(parameter.name).inserted else { throw invalid("parameter \(parameter.name) appears twice") }
      let bound = try field(parameter.field, "parameter field")
      switch parameter.operator {
      case .equals: break
      case .prefix:
        guard bound.type == .string else { throw invalid("parameter \(parameter.name): PREFIX needs a string field") }
      case .atLeast, .atMost:
        guard [.integer, .decimal, .date, .timestamp].contains(bound.type) else {
          throw invalid("parameter \(parameter.name): a range needs a number, date or timestamp field")
        }
      case .UNRECOGNIZED:
        throw invalid("parameter \(parameter.name) has an unknown operator")
      }
      try Validate.text(parameter.description_p, "parameter description", maxLength: 500, multiline: true)
    }
    var output: [Eduhub_Catalog_V1_SchemaField] = []
    if api.aggregates.isEmpty {
      guard api.groupBy.isEmpty else { throw invalid("group_by needs at least one aggregate") }
      if api.fields.isEmpty { api.fields = table.fields.map(\.name) }
      guard Set(api.fields).count == api.fields.count else { throw invalid("a projected field appears twice") }
      output = try api.fields.map { try field($0, "projected field") }
    } else {
      guard api.fields.isEmpty else { throw invalid("an aggregate API returns its groups: fields must be empty") }
      guard api.aggregates.count <= 20, api.groupBy.count <= 5 else { throw invalid("at most 5 group_by fields and 20 aggregates") }
      for name in api.groupBy {
        let grouped = try field(name, "group_by field")
        // Grouping by a name or an ID number would make groups of one person.
        guard grouped.sensitivity.rawValue < Eduhub_Common_V1_Sensitivity.sensitive.rawValue else {
          throw invalid("group_by field \(name) is personal: groups by it would single people out")
        }
        output.append(grouped)
      }
      for (index, aggregate) in api.aggregates.enumerated() {
        var column = Eduhub_Catalog_V1_SchemaField()
        column.sensitivity = .internal
        column.masking = .none
        switch aggregate.function {
        case .count:
          guard aggregate.field.isEmpty else { throw invalid("COUNT takes no field") }
          column.type = .integer
        case .sum, .avg:
          let source = try field(aggregate.field, "aggregated field")
          guard source.type == .integer || source.type == .decimal else {
            throw invalid("SUM and AVG need an integer or decimal field (\(aggregate.field.prefix(64)))")
          }
          column.type = aggregate.function == .sum ? source.type : .decimal
        case .min, .max:
          let source = try field(aggregate.field, "aggregated field")
          guard [.integer, .decimal, .date, .timestamp].contains(source.type) else {
            throw invalid("MIN and MAX need a number, date or timestamp field (\(aggregate.field.prefix(64)))")
          }
          column.type = source.type
          // One row's own value: classified (and masked) as the field it comes from.
          column.sensitivity = source.sensitivity
          column.masking = source.masking
        case .unspecified, .UNRECOGNIZED:
          throw invalid("aggregate \(index + 1) needs a function")
        }
        let name = aggregate.name.isEmpty ? Self.defaultName(aggregate) : aggregate.name
        try Validate.identifier(name, "aggregate name", maxLength: 64)
        api.aggregates[index].name = name
        column.name = name
        column.description_p = Self.defaultName(aggregate)
        output.append(column)
      }
      guard Set(output.map(\.name)).count == output.count else { throw invalid("two output columns have the same name") }
    }
    if api.minGroupSize == 0 { api.minGroupSize = defaultMinGroupSize }
    guard (1...1000).contains(api.minGroupSize) else { throw invalid("min_group_size is 1 to 1,000") }
    // Aggregates over personal fields, or narrowed by them, keep groups large enough that no
    // answer is one person's.
    if !api.aggregates.isEmpty, let personal = personalInputs(api, of: table).first, api.minGroupSize < defaultMinGroupSize {
      throw invalid("min_group_size is at least \(defaultMinGroupSize) for an API that reads the personal field \(personal)")
    }
    if api.maxRows == 0 { api.maxRows = defaultMaxRows }
    guard (1...10_000).contains(api.maxRows) else { throw invalid("max_rows is 1 to 10,000") }
    // Output columns are the resource's fields: typed and classified from the dataset, never lower.
    for index in output.indices { output[index].required = false }
    resource.fields = output
    resource.api = api
  }

  /// Whether a field holds a person's own data (names, ID numbers, birth dates, phones...).
  public static func isPersonal(_ field: Eduhub_Catalog_V1_SchemaField) -> Bool {
    field.sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue
  }

  /// The personal fields of `table` an API reads without showing them as themselves: grouped,
  /// aggregated or bound to a parameter (a filter on a value reads it as surely as output does).
  /// Projected fields are output, masked per grant like any other.
  public static func personalInputs(_ api: Eduhub_Catalog_V1_ApiDefinition, of table: Eduhub_Catalog_V1_Resource) -> [String] {
    let read = Set(api.groupBy + api.aggregates.map(\.field) + api.parameters.map(\.field))
    return table.fields.filter { read.contains($0.name) && isPersonal($0) }.map(\.name)
  }

  static func defaultName(_ aggregate: Eduhub_Catalog_V1_ApiAggregate) -> String {
    let function: String
    switch aggregate.function {
    case .count: return "count"
    case .sum: function = "sum"
    case .avg: function = "avg"
    case .min: function = "min"
    case .max: function = "max"
    case .unspecified, .UNRECOGNIZED: function = "value"
    }
    return aggregate.field.isEmpty ? function : "\(function)_\(aggregate.field)"
  }
}
