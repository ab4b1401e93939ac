import EduHubAPI
import EduHubCrypto
import EduHubStorage
import Synchronization

extension FieldPolicy {
  /// The policy of a field as its .proto classification declares it; nil for an unclassified one.
  public init?(_ field: ClassifiedField) {
    guard let sensitivity = Sensitivity(rawValue: field.sensitivity.rawValue) else { return nil }
    let masking: MaskingKind
    switch field.masking {
    case .none: masking = .none
    case .name: masking = .name
    case .phone: masking = .phone
    case .nationalID: masking = .nationalID
    case .address: masking = .address
    case .birthDate: masking = .birthDate
    case .email: masking = .email
    case .freeText: masking = .freeText
    // An unknown or missing masking kind on a classified field removes the value: the safe side.
    case .redact, .unspecified, .UNRECOGNIZED: masking = .redact
    }
    self.init(number: field.number, name: field.name, sensitivity: sensitivity, masking: masking)
  }
}

/// Applies the privacy policy to protobuf bodies of one message type, field by field, straight on
/// the wire format: the classification table generated from the .proto says which fields are
/// personal, so RPC responses, sync batches and subscriptions all mask through this one function.
///
/// The person's birth date and ID number (the fields classified with those masking kinds) decide
/// their age class at the moment of reading. A record is walked once to find them (and which
/// classified fields it has), and rewritten only if the reader may not see all of it.
public struct RecordMasker: Sendable {
  public let policy: PrivacyPolicy
  /// Classified fields by number (numbers are small: a flat table).
  private let table: [FieldPolicy?]
  private let classified: [FieldPolicy]
  private let birthDateField: Int
  private let nationalIDField: Int
  private let pseudonymKey: SecretBytes
  /// The root of consumers' pseudonym keys (each consumer's is keyed from it by its id).
  private let consumerRoot: SecretBytes
  /// Region pseudonyms already computed (a keyed hash each), by ID number.
  private let pseudonyms = PseudonymCache()

  /// - Parameters:
  ///   - classified: the message's generated `classifiedFields`.
  ///   - pseudonymKey: the node's pseudonym key (from its key store, never the database).
  ///   - consumerKey: the root of external consumers' pseudonym keys: a key of this node's own that
  ///     no other node receives (nil: the pseudonym key, for tools and tests).
  public init(
    classified: [ClassifiedField], policy: PrivacyPolicy = PrivacyPolicy(), pseudonymKey: SecretBytes,
    consumerKey: SecretBytes? = nil
  ) {
    let policies = classified.compactMap(FieldPolicy.init).filter { $0.number > 0 && $0.number < 4096 }
    var table = [FieldPolicy?](repeating: nil, count: (policies.map(\.number).max() ?? 0) + 1)
    for field in policies where table[field.number] == nil { table[field.number] = field }
    self.table = table
    self.classified = policies
    self.birthDateField = policies.first { $0.masking == .birthDate }?.number ?? -1
    self.nationalIDField = policies.first { $0.masking == .nationalID }?.number ?? -1
    self.policy = policy
    self.pseudonymKey = pseudonymKey
    self.consumerRoot = consumerKey ?? pseudonymKey
  }

  /// A row key as `subject` (a consumer) may see it when the key itself is personal or links rows
  /// to people: `K-` and a pseudonym keyed for that subject alone, stable across its reads (a
  /// deletion names the row it removes) and unlinkable between two subjects.
  public func rowKeyPseudonym(_ key: String, subject: String) throws -> String {
    let keyed = SecretBytes(try KeyedHash.hash(Array("row-key:\(subject)".utf8), key: consumerRoot))
    return "K-" + (try Masking.pseudonym(key, key: keyed, length: 20))
  }

  /// What masking did to one body.
  public struct Result: Sendable {
    /// The body as the reader may see it.
    public var body: [UInt8]
    /// Whether any field was masked, pseudonymised or removed.
    public var changed: Bool
    /// Fields read in clear that the audit log must record (a minor's sensitive fields).
    public var auditedFields: [FieldPolicy]
    /// The person's age class and whether the reader owns the record, as the masking decided
    /// them (for `hidesAny(of:age:owner:for:)`, without reading the body again).
    public var age: AgeClass = .unknown
    public var owner = false
  }

  /// What one walk of a body finds.
  private struct Scan {
    var birthDate: CivilDate?
    /// Where the ID number's bytes are in the body.
    var nationalID: Range<Int>?
    /// Classified field numbers present in the body, as bits (table numbers are below 64 in
    /// practice; larger ones are always treated as present).
    var present: UInt64 = 0

    func has(_ number: Int) -> Bool { number >= 64 || present & (1 << UInt64(number)) != 0 }
  }

  /// One walk of `body`: which classified fields it has, and the birth date and ID number.
  private func scan(_ body: [UInt8]) throws(WireFieldsError) -> Scan {
    var found = Scan()
    var index = 0
    while index < body.count {
      let field = try WireFields.nextField(body, &index)
      let number = field.number
      guard number < table.count, table[number] != nil else { continue }
      if number < 64 { found.present |= 1 << UInt64(number) }
      guard field.wireType == 2 else { continue }
      if number == birthDateField { found.birthDate = CivilDate(isoBytes: body[field.value]) }
      if number == nationalIDField { found.nationalID = field.value }
    }
    return found
  }

  /// The person a body is about: its id, the org path it belongs to, and the birth date and ID number
  /// found in the body.
  public func subject(of body: [UInt8], personID: String, scope: String) throws(WireFieldsError) -> DataSubject {
    let found = try scan(body)
    return DataSubject(
      personID: personID, scope: scope, birthDate: found.birthDate,
      nationalID: found.nationalID.map { String(decoding: body[$0], as: UTF8.self) })
  }

  /// Masks `body` (a record of person `personID` in org `scope`) for `reader` on `today`.
  /// - Throws: ``WireFieldsError`` for a body that is not protobuf.
  public func mask(_ body: [UInt8], personID: String, scope: String, for reader: Reader, on today: CivilDate) throws
    -> Result
  {
    let found = try scan(body)
    // The ID number is read only when there is no birth date to tell the age.
    let nationalID = found.birthDate == nil ? found.nationalID.map { String(decoding: body[$0], as: UTF8.self) } : nil
    let subject = DataSubject(personID: personID, scope: scope, birthDate: found.birthDate, nationalID: nationalID)
    let age = AgeClass.of(birthDate: found.birthDate, nationalID: nationalID, on: today)
    let owner = policy.isOwner(reader, of: subject)
    var anyHidden = false
    var audited: [FieldPolicy] = []
    for field in classified where found.has(field.number) {
      if policy.decide(reader, field, owner: owner, age: age) != .clear {
        anyHidden = true
      } else if age.isMinor && field.sensitivity >= .sensitive {
        audited.append(field)
      }
    }
    guard anyHidden else { return Result(body: body, changed: false, auditedFields: audited, age: age, owner: owner) }

    var out: [UInt8] = []
    // Room for what callers append (an org path, a flag) without a second allocation.
    out.reserveCapacity(body.count + 96)
    var consumerKey: SecretBytes?
    var index = 0
    while index < body.count {
      let wire = try WireFields.nextField(body, &index)
      let number = wire.number
      guard number < table.count, let field = table[number] else {
        out.append(contentsOf: body[wire.raw])
        continue
      }
      let decision = policy.decide(reader, field, owner: owner, age: age)
      if decision == .clear {
        out.append(contentsOf: body[wire.raw])
        continue
      }
      // Only strings are masked; anything else hidden is left out.
      guard wire.wireType == 2 else { continue }
      let value = body[wire.value]
      let shown: [UInt8]
      switch decision {
      case .clear, .removed:
        continue
      case .masked:
        shown = Self.maskedBytes(value, field.masking)
      case .pseudonymized:
        if case .consumer(let id) = reader {
          if consumerKey == nil { consumerKey = SecretBytes(try KeyedHash.hash(Array("consumer:\(id)".utf8), key: consumerRoot)) }
          shown = Array(try Masking.nationalID(String(decoding: value, as: UTF8.self), key: consumerKey!).utf8)
        } else if let cached = pseudonyms.get(value) {
          shown = cached
        } else {
          let pseudonym = Array(try Masking.nationalID(String(decoding: value, as: UTF8.self), key: pseudonymKey).utf8)
          pseudonyms.set(value, pseudonym)
          shown = pseudonym
        }
      }
      guard !shown.isEmpty else { continue }
      WireFields.appendVarint(UInt64(number) << 3 | 2, to: &out)
      WireFields.appendVarint(UInt64(shown.count), to: &out)
      out.append(contentsOf: shown)
    }
    return Result(body: out, changed: true, auditedFields: audited, age: age, owner: owner)
  }

  /// The masked bytes of a value for `kind`; empty removes it. Names, phones and dates are masked
  /// on the bytes; the rest through their String functions.
  static func maskedBytes(_ value: ArraySlice<UInt8>, _ kind: MaskingKind) -> [UInt8] {
    var out: [UInt8] = []
    switch kind {
    case .name:
      out.reserveCapacity(value.count)
      Masking.appendName(value, to: &out)
      return out
    case .phone:
      if Masking.appendPhone(value, to: &out) { return out }
    case .birthDate:
      // Validated as a date, then down to its year.
      guard CivilDate(isoBytes: value) != nil else { return [] }
      return Array(value.prefix(4))
    default:
      break
    }
    return Array((masked(String(decoding: value, as: UTF8.self), kind) ?? "").utf8)
  }

  /// The numbers of the fields of `body` that `reader` does not see in clear.
  public func hiddenFields(_ body: [UInt8], personID: String, scope: String, for reader: Reader, on today: CivilDate)
    throws -> Set<Int>
  {
    let found = try scan(body)
    let nationalID = found.birthDate == nil ? found.nationalID.map { String(decoding: body[$0], as: UTF8.self) } : nil
    let subject = DataSubject(personID: personID, scope: scope, birthDate: found.birthDate, nationalID: nationalID)
    let age = AgeClass.of(birthDate: found.birthDate, nationalID: nationalID, on: today)
    let owner = policy.isOwner(reader, of: subject)
    var hidden = Set<Int>()
    for field in classified where found.has(field.number) && policy.decide(reader, field, owner: owner, age: age) != .clear {
      hidden.insert(field.number)
    }
    return hidden
  }

  /// Whether `reader` sees any of the classified fields `numbers` other than in clear, for a
  /// person whose age class and ownership a masking already decided (`Result.age`,
  /// `Result.owner`): the policy's decision, whether or not the body holds a value there (a flag
  /// set only for values present would tell who has, say, special needs recorded).
  public func hidesAny(of numbers: Set<Int>, age: AgeClass, owner: Bool, for reader: Reader) -> Bool {
    classified.contains { numbers.contains($0.number) && policy.decide(reader, $0, owner: owner, age: age) != .clear }
  }

  /// Masks a batch of stored records of this message type (whose ids are the people's ids) for
  /// `reader`: what a sync batch to a node, or a subscription, sends. Tombstones pass unchanged.
  /// - Returns: the records as the reader may see them, and per record the fields read in clear
  ///   that the audit log must record.
  public func mask(_ records: [StoredRecord], for reader: Reader, on today: CivilDate) throws
    -> (records: [StoredRecord], audited: [(recordID: String, fields: [FieldPolicy])])
  {
    var out: [StoredRecord] = []
    out.reserveCapacity(records.count)
    var audited: [(recordID: String, fields: [FieldPolicy])] = []
    for var record in records {
      if !record.deleted {
        let result = try mask(record.body, personID: record.id, scope: record.scope, for: reader, on: today)
        record.body = result.body
        if !result.auditedFields.isEmpty { audited.append((record.id, result.auditedFields)) }
      }
      out.append(record)
    }
    return (out, audited)
  }

  /// The masked form of `text` for `kind`; nil removes it.
  static func masked(_ text: String, _ kind: MaskingKind) -> String? {
    switch kind {
    case .name: return Masking.name(text)
    case .phone: return Masking.phone(text)
    case .address: return Masking.address(text)
    case .birthDate: return CivilDate(iso: text).map(Masking.birthDate)
    case .email: return Masking.email(text)
    case .none: return text
    case .nationalID, .freeText, .redact: return nil
    }
  }
}

/// A bounded map from ID numbers to their region pseudonyms: lists and repeated reads of the same
/// people skip the keyed hash. Looked up by the number's bytes (an FNV-1a hash, then the bytes
/// compared), so a hit allocates nothing. Emptied when full (simple, and bounded).
final class PseudonymCache: Sendable {
  private let entries = Mutex<[UInt64: (id: [UInt8], pseudonym: [UInt8])]>([:])
  static let limit = 100_000

  private static func hash(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
    return hash
  }

  func get(_ id: ArraySlice<UInt8>) -> [UInt8]? {
    let key = Self.hash(id)
    return entries.withLock { entries in
      guard let entry = entries[key], entry.id.elementsEqual(id) else { return nil }
      return entry.pseudonym
    }
  }

  func set(_ id: ArraySlice<UInt8>, _ pseudonym: [UInt8]) {
    let key = Self.hash(id)
    entries.withLock { entries in
      if entries.count >= Self.limit { entries.removeAll(keepingCapacity: true) }
      entries[key] = (Array(id), pseudonym)
    }
  }
}
