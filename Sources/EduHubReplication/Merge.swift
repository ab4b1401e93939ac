import EduHubStorage

/// Deterministic field-level merge of two versions of one record.
///
/// Each field (by protobuf field number, split from the wire bytes; a repeated field is one unit)
/// is won by the version whose stamp for it is higher in the `FieldStamp` order; a field absent on
/// the winning side stays absent (it was cleared). The merged vector is the pointwise maximum. The
/// result does not depend on argument order, grouping or repetition, so every node that sees the
/// same versions reaches the same record on its own.
///
/// A losing value is reported as a conflict when the winner did not already know the write that
/// made it (its stamp's counter is beyond the winner's vector entry for that node): two concurrent
/// edits of one field. Edits of different fields merge without conflict.
public enum Merge {
  public static func merge(_ a: RecordVersion, _ b: RecordVersion) throws(WireFieldsError) -> MergeResult {
    let fieldsA = try WireFields(parsing: a.body)
    let fieldsB = try WireFields(parsing: b.body)
    var numbers = Set(a.stamps.keys).union(b.stamps.keys)
    numbers.formUnion(fieldsA.fields.keys)
    numbers.formUnion(fieldsB.fields.keys)
    numbers.insert(RecordVersion.deletionField)

    var merged = WireFields()
    var stamps: [Int: FieldStamp] = [:]
    var deleted = false
    var conflicts: [FieldConflict] = []
    for number in numbers.sorted() {
      let valueA = number == RecordVersion.deletionField ? (a.deleted ? [1] : []) : fieldsA[number] ?? []
      let valueB = number == RecordVersion.deletionField ? (b.deleted ? [1] : []) : fieldsB[number] ?? []
      let stampA = a.stamps[number]
      let stampB = b.stamps[number]
      // The higher stamp wins; an unstamped field loses to a stamped one; equal stamps (the same
      // write seen twice) or none at all fall back to the bytes, so the choice is still symmetric.
      let aWins: Bool
      switch (stampA, stampB) {
      case let (x?, y?) where x != y: aWins = y < x
      case (_?, nil): aWins = true
      case (nil, _?): aWins = false
      default: aWins = !valueA.lexicographicallyPrecedes(valueB)
      }
      let (winValue, winStamp, winVector) = aWins ? (valueA, stampA, a.vector) : (valueB, stampB, b.vector)
      let (loseValue, loseStamp) = aWins ? (valueB, stampB) : (valueA, stampA)
      if number == RecordVersion.deletionField {
        deleted = !winValue.isEmpty
      } else if !winValue.isEmpty {
        merged[number] = winValue
      }
      if let winStamp { stamps[number] = winStamp }
      if let loseStamp, let winStamp, loseValue != winValue, winVector[loseStamp.node] < loseStamp.counter {
        conflicts.append(
          FieldConflict(field: number, losingValue: loseValue, losingStamp: loseStamp, winningStamp: winStamp))
      }
    }
    let version = RecordVersion(
      body: merged.joined(), vector: a.vector.merged(with: b.vector), stamps: stamps, deleted: deleted)
    return MergeResult(version: version, conflicts: conflicts)
  }
}
