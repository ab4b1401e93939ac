import EduHubAPI
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB

/// How the records of a replicated collection are classified: what every egress that sends whole
/// records (sync's pull, and its push sanitising) masks them by. Each service declares its
/// collections'; a collection with no declaration is not sent at all, so a new collection cannot
/// leave a node unmasked by being forgotten.
public enum RecordClassification: Sendable {
  /// Nothing in the body is personal (declared, not assumed).
  case unclassified
  /// The body is one message; its generated `classifiedFields`.
  case fields([ClassifiedField])
  /// The classification depends on the record (a table's rows: its schema). `group` names the
  /// records that share one (a table's code from a row id); `fields` reads it. `idCarries` are the
  /// fields whose values the record id repeats (a row's key): a record whose reader sees one of
  /// them masked is not sent at all, since its id would tell what the masking hides.
  case perGroup(
    group: @Sendable (String) -> String, fields: @Sendable (String, Database) throws -> [ClassifiedField], idCarries: Set<Int>)
}

/// Every replicated collection's classification, registered by its owning service.
public typealias RecordClassifications = CollectionRules<RecordClassification>

/// Maskers for one pass over records (a pull, a push): made once per collection or group.
public struct RecordMaskers {
  let identity: IdentityService
  /// Classifications read so far, by collection (the registry is behind a lock; a pull asks per record).
  private var classes: [String: RecordClassification] = [:]
  private var cache: [String: RecordMasker?] = [:]

  public init(identity: IdentityService) { self.identity = identity }

  /// Whether `record` must not reach `reader` at all: its id repeats a field the reader sees masked.
  public mutating func withholds(_ record: StoredRecord, for reader: Reader, on today: CivilDate, in db: Database? = nil) throws -> Bool {
    guard case .perGroup(_, _, let carried)? = identity.classifications.of(record.collection), !carried.isEmpty,
      let masker = try masker(for: record, in: db)
    else { return false }
    let hidden = try masker.hiddenFields(record.body, personID: record.id, scope: record.scope, for: reader, on: today)
    return !hidden.isDisjoint(with: carried)
  }

  /// `record`'s id as `reader` may see it: with its group only (`roster.by-id|（已隐藏）`) when the
  /// rest repeats a field the reader sees masked (a row keyed by ID number), else whole. For lists,
  /// titles and logs that name records.
  public mutating func shownID(_ record: StoredRecord, for reader: Reader, on today: CivilDate, in db: Database? = nil) throws -> String {
    guard try withholds(record, for: reader, on: today, in: db),
      case .perGroup(let group, _, _)? = identity.classifications.of(record.collection)
    else { return record.id }
    return group(record.id) + "|（已隐藏）"
  }

  /// The masker for `record`; nil when nothing in it is classified.
  /// - Throws: INTERNAL-worthy `StorageError` when the collection declared no classification.
  public mutating func masker(for record: StoredRecord, in db: Database? = nil) throws -> RecordMasker? {
    let classification: RecordClassification
    if let known = classes[record.collection] {
      classification = known
    } else {
      guard let declared = identity.classifications.of(record.collection) else {
        throw StorageError(.rejected, "collection \(record.collection) declares no classification; its records are not sent")
      }
      classes[record.collection] = declared
      classification = declared
    }
    switch classification {
    case .unclassified:
      return nil
    case .fields(let fields):
      if let known = cache[record.collection] { return known }
      let masker = fields.isEmpty ? nil : identity.masker(for: fields)
      cache[record.collection] = masker
      return masker
    case .perGroup(let group, let read, _):
      let key = record.collection + "\u{0}" + group(record.id)
      if let known = cache[key] { return known }
      let fields: [ClassifiedField]
      if let db {
        fields = try read(group(record.id), db)
      } else {
        fields = try identity.store.read { db in try read(group(record.id), db) }
      }
      let masker = fields.isEmpty ? nil : identity.masker(for: fields)
      cache[key] = masker
      return masker
    }
  }
}

extension IdentityService {
  /// `text` with the personal part of every id of `records` whose collection's ids may carry a
  /// classified field (rows keyed by ID number) replaced: a refusal or a log line names the record
  /// by its group only.
  package func scrubbingCarriedIDs(_ text: String, of records: some Sequence<(collection: String, id: String)>) -> String {
    var text = text
    for record in records {
      guard case .perGroup(let group, _, let carried)? = classifications.of(record.collection), !carried.isEmpty else { continue }
      let prefix = group(record.id)
      let rest = record.id.dropFirst(prefix.count)
      guard rest.count > 6 else { continue }  // short keys name nobody, and would scrub at random
      text = text.replacingOccurrences(of: String(rest.dropFirst()), with: "（已隐藏）")
    }
    return text
  }
}
