import EduHubPrivacy
import EduHubReplication
import EduHubStorage

extension IdentityService {
  /// A conflicting field's value as a steward without clear reads may see it: a person's field
  /// masked as the person's record (the policy sees the person's birth date and ID), the text of a
  /// field its collection declares readable by any staff, anything else by its size only.
  /// - Parameters: current: the record as stored (nil if gone).
  public func shownConflictValue(_ raw: [UInt8], of conflict: RecordStore.Conflict, current: StoredRecord?) -> String {
    guard !raw.isEmpty else { return "（空）" }
    if IdentityCollections.person.name == conflict.collection {
      guard let current else { return "（已隐藏）" }
      var fields = (try? WireFields(parsing: current.body)) ?? WireFields()
      fields[conflict.field] = raw
      let steward = Reader.staff(subject: "steward", grants: [])
      guard let masked = try? peopleMasker.mask(fields.joined(), personID: current.id, scope: current.scope, for: steward, on: today),
        let shown = try? WireFields(parsing: masked.body)
      else { return "（已隐藏）" }
      return Self.text(shown, conflict.field) ?? "（已隐藏）"
    }
    if readableByStaff(conflict.collection, field: conflict.field), let fields = try? WireFields(parsing: raw),
      let text = Self.text(fields, conflict.field), text.count <= 200
    {
      return text
    }
    return "（\(raw.count) 字节，不显示）"
  }

  /// Field `number` as text: a string, or a number.
  static func text(_ fields: WireFields, _ number: Int) -> String? {
    if let bytes = fields.bytes(number) { return String(validating: bytes, as: UTF8.self) }
    return fields.varint(number).map { String($0) }
  }
}
