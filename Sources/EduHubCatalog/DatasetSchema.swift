import EduHubAPI
import EduHubPrivacy
import EduHubStorage
import Foundation

/// A row value that does not fit its field; the message names the field, never the value (which
/// may be personal).
package struct RowProblem: Error {
  package let message: String
  package init(_ message: String) { self.message = message }
}

/// The typed schema of a table resource and how its rows are stored.
///
/// A row is a record of collection `catalog_row` (so it replicates, is encrypted at rest and is
/// masked like every record) with id `code|key`, in the resource's org scope. Its body is protobuf
/// wire format: field 1 the resource code, 2 the key, and each value as the canonical text of its
/// type at field number `8 + column`, where a field's column is stable across schema updates. A
/// value per field number means concurrent edits of different columns of a row merge field by
/// field, as every record does, and the classification of each field number comes from the schema.
package struct DatasetSchema: Sendable {
  package static let rowCollection = "catalog_row"
  static let defaultMaxLength = 1000
  package static let maxKeyLength = 200

  package let code: String
  package let fields: [Eduhub_Catalog_V1_SchemaField]
  /// Positions in `fields` of the key fields, in key order.
  package let keyPositions: [Int]

  package init(_ resource: Eduhub_Catalog_V1_Resource) {
    code = resource.code
    fields = resource.fields
    let keys = resource.dataset.ingested.keyFields
    keyPositions = keys.compactMap { key in resource.fields.firstIndex { $0.name == key } }
  }

  package static func fieldNumber(_ column: Int32) -> Int { 8 + Int(column) }

  package static func recordID(_ code: String, _ key: String) -> String { code + "|" + key }

  /// What follows `code|` in a record id: the row key, or (a table keyed by a personal field) the
  /// mark of a hashed key and the hash (`CatalogService.rowID`).
  package static func key(ofRecordID id: String, code: String) -> String {
    String(id.utf8.dropFirst(code.utf8.count + 1)) ?? id
  }

  /// How a hashed row key begins in a record id.
  package static let hashedKeyMark = "#"

  /// The row key of `record`: from its id, or from its body when the table's key is personal (the
  /// id holds a keyed hash of it; a tombstone keeps its last body).
  package static func key(of record: StoredRecord, code: String, personalKey: Bool) -> String {
    guard personalKey else { return key(ofRecordID: record.id, code: code) }
    return (try? WireFields(parsing: record.body).text(keyField)) ?? ""
  }

  /// The field number of a row's key in its body (1 is the table's code).
  package static let keyField = 2

  /// The classification of stored rows' field numbers, for `RecordMasker`. The key (field 2) is as
  /// classified as its most classified key field, and removed whole when masked (a pseudonym or
  /// nothing stands in for it where rows go out).
  package var classified: [ClassifiedField] {
    var out = fields.map { field in
      ClassifiedField(
        number: Self.fieldNumber(field.column), name: field.name, sensitivity: field.sensitivity.rawValue,
        masking: field.masking.rawValue)
    }
    if let key = keyPositions.map({ fields[$0].sensitivity.rawValue }).max(), key > Eduhub_Common_V1_Sensitivity.unspecified.rawValue {
      out.append(ClassifiedField(number: Self.keyField, name: "key", sensitivity: key, masking: Eduhub_Common_V1_MaskingKind.redact.rawValue))
    }
    return out
  }

  /// Whether a row's key is personal: one of its key fields is (a table keyed by ID number).
  package var personalKey: Bool {
    keyPositions.contains { fields[$0].sensitivity.rawValue >= Eduhub_Common_V1_Sensitivity.sensitive.rawValue }
  }

  // MARK: Columns

  /// Gives every field of `resource` its column: fields already in `old` keep theirs, new ones
  /// take numbers after every number used so far.
  static func assignColumns(_ resource: inout Eduhub_Catalog_V1_Resource, old: Eduhub_Catalog_V1_Resource?) {
    let kept = Dictionary((old?.fields ?? []).map { ($0.name, $0.column) }, uniquingKeysWith: { first, _ in first })
    var next = (old?.fields.map(\.column).max() ?? 0) + 1
    for index in resource.fields.indices {
      if let column = kept[resource.fields[index].name] {
        resource.fields[index].column = column
      } else {
        resource.fields[index].column = next
        next += 1
      }
    }
  }

  // MARK: Values

  /// The stored text of `value` for `field`; nil for null. Text values are parsed by the field's
  /// type (as a CSV cell is); typed values must be of the field's type.
  static func canonical(_ value: Eduhub_Catalog_V1_Value, for field: Eduhub_Catalog_V1_SchemaField) throws(RowProblem) -> String? {
    let name = field.name
    switch value.kind {
    case .none, .null:
      return nil
    case .text(let text):
      return try parse(text, for: field)
    case .integer(let number):
      switch field.type {
      case .integer, .decimal: return String(number)
      case .timestamp: return String(number)
      default: throw RowProblem("\(name) is \(typeName(field.type)), not an integer")
      }
    case .decimal(let text):
      guard field.type == .decimal else { throw RowProblem("\(name) is \(typeName(field.type)), not a decimal") }
      return try decimal(text, name)
    case .date(let text):
      guard field.type == .date else { throw RowProblem("\(name) is \(typeName(field.type)), not a date") }
      return try date(text, name)
    case .timestampMs(let ms):
      guard field.type == .timestamp else { throw RowProblem("\(name) is \(typeName(field.type)), not a timestamp") }
      return String(ms)
    case .boolean(let flag):
      guard field.type == .boolean else { throw RowProblem("\(name) is \(typeName(field.type)), not a boolean") }
      return flag ? "true" : "false"
    }
  }

  /// Parses a text cell by the field's type; an empty cell is null.
  package static func parse(_ text: String, for field: Eduhub_Catalog_V1_SchemaField) throws(RowProblem) -> String? {
    let name = field.name
    if text.isEmpty { return nil }
    switch field.type {
    case .string:
      let limit = field.maxLength > 0 ? Int(field.maxLength) : defaultMaxLength
      // Cheap bound first: a string of n UTF-8 bytes has at most n characters.
      if text.utf8.count > limit, text.unicodeScalars.count > limit {
        throw RowProblem("\(name) is longer than \(limit) characters")
      }
      if text.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t" && $0 != "\n" && $0 != "\r") || $0.value == 0x7F }) {
        throw RowProblem("\(name) contains control characters")
      }
      return text
    case .integer:
      guard let number = Int64(text.trimmingCharacters(in: .whitespaces)) else { throw RowProblem("\(name) is not an integer") }
      return String(number)
    case .decimal:
      return try decimal(text.trimmingCharacters(in: .whitespaces), name)
    case .date:
      return try date(text.trimmingCharacters(in: .whitespaces), name)
    case .timestamp:
      let trimmed = text.trimmingCharacters(in: .whitespaces)
      if let ms = Int64(trimmed) { return String(ms) }
      guard let date = try? Date(trimmed, strategy: .iso8601) else {
        throw RowProblem("\(name) is not a timestamp (milliseconds or ISO 8601 with a zone)")
      }
      return String(Int64((date.timeIntervalSince1970 * 1000).rounded()))
    case .boolean:
      switch text.trimmingCharacters(in: .whitespaces).lowercased() {
      case "true", "1", "yes", "y", "是": return "true"
      case "false", "0", "no", "n", "否": return "false"
      default: throw RowProblem("\(name) is not a boolean (true/false)")
      }
    case .unspecified, .UNRECOGNIZED:
      throw RowProblem("\(name) has no type")
    }
  }

  /// A decimal: optional sign, at most 20 digits before the point and 10 after.
  package static func decimal(_ text: String, _ name: String) throws(RowProblem) -> String {
    var digitsBefore = 0
    var digitsAfter = 0
    var point = false
    for (index, byte) in text.utf8.enumerated() {
      if byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+"), index == 0 { continue }
      if byte == UInt8(ascii: "."), !point {
        point = true
        continue
      }
      guard byte >= 0x30, byte <= 0x39 else { throw RowProblem("\(name) is not a decimal number") }
      if point { digitsAfter += 1 } else { digitsBefore += 1 }
    }
    guard digitsBefore >= 1, digitsBefore <= 20, digitsAfter <= 10, !point || digitsAfter >= 1 else {
      throw RowProblem("\(name) is not a decimal number (at most 20 digits before the point and 10 after)")
    }
    return text.hasPrefix("+") ? String(text.dropFirst()) : text
  }

  static func date(_ text: String, _ name: String) throws(RowProblem) -> String {
    guard let date = CivilDate(iso: text) else { throw RowProblem("\(name) is not a date as YYYY-MM-DD (1900 to 2999)") }
    return date.description
  }

  static func typeName(_ type: Eduhub_Catalog_V1_FieldType) -> String {
    switch type {
    case .string: "a string"
    case .integer: "an integer"
    case .decimal: "a decimal"
    case .date: "a date"
    case .timestamp: "a timestamp"
    case .boolean: "a boolean"
    case .unspecified, .UNRECOGNIZED: "untyped"
    }
  }

  /// The typed value of stored text; text that no longer parses as its type (a masked birth date
  /// such as "2012", a pseudonym) is given as text.
  package static func value(_ stored: String?, _ type: Eduhub_Catalog_V1_FieldType) -> Eduhub_Catalog_V1_Value {
    var value = Eduhub_Catalog_V1_Value()
    guard let stored else {
      value.null = true
      return value
    }
    switch type {
    case .integer:
      if let number = Int64(stored) { value.integer = number } else { value.text = stored }
    case .decimal:
      if (try? decimal(stored, "")) != nil { value.decimal = stored } else { value.text = stored }
    case .date:
      if CivilDate(iso: stored) != nil { value.date = stored } else { value.text = stored }
    case .timestamp:
      if let ms = Int64(stored) { value.timestampMs = ms } else { value.text = stored }
    case .boolean:
      if stored == "true" || stored == "false" { value.boolean = stored == "true" } else { value.text = stored }
    default:
      value.text = stored
    }
    return value
  }

  // MARK: Rows

  /// The stored body of a row.
  func body(key: String, values: [(column: Int32, text: String)]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(32 + key.utf8.count + values.reduce(0) { $0 + $1.text.utf8.count + 3 })
    Self.appendString(1, code, to: &out)
    Self.appendString(2, key, to: &out)
    for (column, text) in values.sorted(by: { $0.column < $1.column }) {
      Self.appendString(Self.fieldNumber(column), text, to: &out)
    }
    return out
  }

  static func appendString(_ number: Int, _ text: String, to out: inout [UInt8]) {
    WireFields.appendVarint(UInt64(number) << 3 | 2, to: &out)
    WireFields.appendVarint(UInt64(text.utf8.count), to: &out)
    out.append(contentsOf: text.utf8)
  }

  /// A stored (possibly masked) row body as the reader sees it, values in schema order.
  package func row(_ body: [UInt8], masked: Bool) throws(WireFieldsError) -> Eduhub_Catalog_V1_DataRow {
    var texts: [Int: String] = [:]
    var index = 0
    while index < body.count {
      let field = try WireFields.nextField(body, &index)
      guard field.wireType == 2 else { continue }
      texts[field.number] = String(decoding: body[field.value], as: UTF8.self)
    }
    var row = Eduhub_Catalog_V1_DataRow()
    row.key = texts[2] ?? ""
    row.values = fields.map { field in Self.value(texts[Self.fieldNumber(field.column)], field.type) }
    row.masked = masked
    return row
  }
}
