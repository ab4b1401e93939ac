import EduHubPrivacy
import EduHubStorage

/// A person as another service gets one from ``OrgDirectory``: masked for its reader before it
/// leaves Identity. No other way out of Identity carries a person's stored body, so a new read path
/// in another service cannot forget masking.
public struct MaskedPerson: Sendable {
  /// The record, its body as the reader may see it (a deletion has none).
  public let record: StoredRecord
  /// What masking decided: the age class, whether the reader owns the record, the fields read in
  /// clear that the audit log must record; nil for a deletion (or with masking switched off for a
  /// benchmark).
  public let masking: RecordMasker.Result?

  public var id: String { record.id }
  public var scope: String { record.scope }
  public var deleted: Bool { record.deleted }
  public var sequence: Int64 { record.sequence }
}

extension IdentityService {
  /// `records` masked for `reader`; a body that does not decode is DATA_LOSS (naming no person).
  func masked(_ records: [StoredRecord], for reader: Reader, on today: CivilDate) throws -> [MaskedPerson] {
    try records.map { record in
      guard !record.deleted, configuration.maskingEnabled else { return MaskedPerson(record: record, masking: nil) }
      let result: RecordMasker.Result
      do {
        result = try personMasker.mask(record.body, personID: record.id, scope: record.scope, for: reader, on: today)
      } catch {
        throw StorageError(.corrupted, "a person record cannot be read")
      }
      var masked = record
      masked.body = result.body
      return MaskedPerson(record: masked, masking: result)
    }
  }
}
