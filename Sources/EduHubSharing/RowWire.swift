import EduHubAPI
import EduHubCatalog
import EduHubPrivacy
import EduHubStorage

/// Protobuf wire encoding of subscription messages straight from stored row bytes: a million-row
/// snapshot costs no `Value` or `DataRow` objects (building and encoding those was most of a row's
/// cost). The bytes are exactly what SwiftProtobuf would write for the same messages.
enum RowWire {
  static func appendVarint(_ value: UInt64, to out: inout [UInt8]) { WireFields.appendVarint(value, to: &out) }

  static func varintSize(_ value: UInt64) -> Int {
    var size = 1
    var rest = value >> 7
    while rest != 0 {
      size += 1
      rest >>= 7
    }
    return size
  }

  /// Field `number` (length-delimited) holding `bytes`.
  static func appendField(_ number: Int, _ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
    appendVarint(UInt64(number) << 3 | 2, to: &out)
    appendVarint(UInt64(bytes.count), to: &out)
    out.append(contentsOf: bytes)
  }

  static func appendField(_ number: Int, _ text: String, to out: inout [UInt8]) {
    appendField(number, text.utf8, to: &out)
  }

  /// A varint field (bools, integers).
  static func appendVarintField(_ number: Int, _ value: UInt64, to out: inout [UInt8]) {
    appendVarint(UInt64(number) << 3, to: &out)
    appendVarint(value, to: &out)
  }

  /// An ASCII decimal integer, or nil.
  static func integer(_ bytes: ArraySlice<UInt8>) -> Int64? {
    guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
    var index = bytes.startIndex
    let negative = bytes[index] == UInt8(ascii: "-")
    if negative || bytes[index] == UInt8(ascii: "+") { index += 1 }
    guard index < bytes.endIndex else { return nil }
    var value: Int64 = 0
    while index < bytes.endIndex {
      let digit = bytes[index] &- 0x30
      guard digit < 10 else { return nil }
      // Negative numbers accumulate downwards, so that Int64.min parses.
      let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = negative ? times.subtractingReportingOverflow(Int64(digit)) : times.addingReportingOverflow(Int64(digit))
      guard !overflow1, !overflow2 else { return nil }
      value = sum
      index += 1
    }
    return value
  }

  /// One `Value` (field 2 of DataRow) for stored text of `type`. `trusted`: the text is as ingestion
  /// checked it (not rewritten by masking), so it parses as its type; otherwise it is checked, and
  /// text that no longer parses (a masked birth date "2012") goes as `text`, as `DatasetSchema.value`
  /// decides.
  static func appendValue(_ stored: ArraySlice<UInt8>?, _ type: Eduhub_Catalog_V1_FieldType, trusted: Bool, to row: inout [UInt8]) {
    guard let stored else {
      row += [0x12, 0x02, 0x08, 0x01]  // values { null: true }
      return
    }
    func inner(_ tag: UInt8, _ bytes: ArraySlice<UInt8>) {
      let size = 1 + varintSize(UInt64(bytes.count)) + bytes.count
      row.append(0x12)
      appendVarint(UInt64(size), to: &row)
      row.append(tag)
      appendVarint(UInt64(bytes.count), to: &row)
      row.append(contentsOf: bytes)
    }
    func varint(_ tag: UInt8, _ value: UInt64) {
      row.append(0x12)
      appendVarint(UInt64(1 + varintSize(value)), to: &row)
      row.append(tag)
      appendVarint(value, to: &row)
    }
    switch type {
    case .integer, .timestamp:
      if let number = integer(stored) {
        varint(type == .integer ? 0x18 : 0x30, UInt64(bitPattern: number))
        return
      }
    case .decimal:
      if trusted || (try? DatasetSchema.decimal(String(decoding: stored, as: UTF8.self), "")) != nil {
        inner(0x22, stored)
        return
      }
    case .date:
      if trusted || CivilDate(isoBytes: stored) != nil {
        inner(0x2A, stored)
        return
      }
    case .boolean:
      if stored.elementsEqual("true".utf8) || stored.elementsEqual("false".utf8) {
        varint(0x38, stored.count == 4 ? 1 : 0)
        return
      }
    default:
      break
    }
    inner(0x12, stored)
  }
}
