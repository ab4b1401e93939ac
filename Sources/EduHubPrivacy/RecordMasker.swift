import EduHubAPI
import EduHubCrypto
import EduHubStorage

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
/// their age class at the moment of reading.
public struct RecordMasker: Sendable {
  public let policy: PrivacyPolicy
  private let fields: [Int: FieldPolicy]
  private let birthDateField: Int?
  private let nationalIDField: Int?
  private let pseudonymKey: SecretBytes

  /// - Parameters:
  ///   - classified: the message's generated `classifiedFields`.
  ///   - pseudonymKey: the node's pseudonym key (from its key store, never the database).
  public init(classified: [ClassifiedField], policy: PrivacyPolicy = PrivacyPolicy(), pseudonymKey: SecretBytes) {
    let policies = classified.compactMap(FieldPolicy.init)
    self.fields = Dictionary(policies.map { ($0.number, $0) }, uniquingKeysWith: { first, _ in first })
    self.birthDateField = policies.first { $0.masking == .birthDate }?.number
    self.nationalIDField = policies.first { $0.masking == .nationalID }?.number
    self.policy = policy
    self.pseudonymKey = pseudonymKey
  }

  /// What masking did to one body.
  public struct Result: Sendable {
    /// The body as the reader may see it.
    public var body: [UInt8]
    /// Whether any field was masked, pseudonymised or removed.
    public var changed: Bool
    /// Fields read in clear that the audit log must record (a minor's sensitive fields).
    public var auditedFields: [FieldPolicy]
  }

  /// The person a body is about: its id, the org path it belongs to, and the birth date and ID number
  /// found in the body.
  public func subject(of body: [UInt8], personID: String, scope: String) throws(WireFieldsError) -> DataSubject {
    var birthDate: CivilDate?
    var nationalID: String?
    if birthDateField != nil || nationalIDField != nil {
      try Self.forEachField(body) { number, wireType, value in
        guard wireType == 2 else { return }
        if number == birthDateField { birthDate = CivilDate(iso: String(decoding: value, as: UTF8.self)) }
        if number == nationalIDField { nationalID = String(decoding: value, as: UTF8.self) }
      }
    }
    return DataSubject(personID: personID, scope: scope, birthDate: birthDate, nationalID: nationalID)
  }

  /// Masks `body` (a record of person `personID` in org `scope`) for `reader` on `today`.
  /// - Throws: ``WireFieldsError`` for a body that is not protobuf.
  public func mask(_ body: [UInt8], personID: String, scope: String, for reader: Reader, on today: CivilDate) throws
    -> Result
  {
    let subject = try subject(of: body, personID: personID, scope: scope)
    var decisions: [Int: FieldDecision] = [:]
    var audited: [FieldPolicy] = []
    var anyHidden = false
    for (number, field) in fields {
      let decision = policy.decide(reader, subject, field, on: today)
      decisions[number] = decision
      if decision != .clear { anyHidden = true }
    }
    // Audit only fields actually present in the body.
    var present = Set<Int>()
    var changed = false
    var out: [UInt8] = []
    if anyHidden { out.reserveCapacity(body.count) }
    var consumerKey: SecretBytes?
    try Self.forEachField(body) { number, wireType, value, raw in
      let decision = decisions[number] ?? .clear
      if decision == .clear {
        present.insert(number)
        if anyHidden { out += raw }
        return
      }
      changed = true
      guard wireType == 2, let field = fields[number] else { return }
      let text = String(decoding: value, as: UTF8.self)
      let shown: String?
      switch decision {
      case .clear: shown = text
      case .removed: shown = nil
      case .masked: shown = Self.masked(text, field.masking)
      case .pseudonymized:
        if case .consumer(let id) = reader {
          if consumerKey == nil { consumerKey = SecretBytes(try KeyedHash.hash(Array("consumer:\(id)".utf8), key: pseudonymKey)) }
          shown = try Masking.nationalID(text, key: consumerKey!)
        } else {
          shown = try Masking.nationalID(text, key: pseudonymKey)
        }
      }
      guard let shown, !shown.isEmpty else { return }
      WireFields.appendVarint(UInt64(number) << 3 | 2, to: &out)
      let utf8 = Array(shown.utf8)
      WireFields.appendVarint(UInt64(utf8.count), to: &out)
      out += utf8
    }
    for number in present {
      if let field = fields[number], policy.requiresAudit(.clear, subject, field, on: today) { audited.append(field) }
    }
    return Result(body: anyHidden ? out : body, changed: changed, auditedFields: audited.sorted { $0.number < $1.number })
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

  private static func forEachField(
    _ body: [UInt8], _ visit: (Int, UInt64, ArraySlice<UInt8>) throws -> Void
  ) throws(WireFieldsError) {
    do {
      try forEachField(body) { number, wireType, value, _ in try visit(number, wireType, value) }
    } catch let error as WireFieldsError {
      throw error
    } catch {
      throw WireFieldsError(offset: 0, reason: "\(error)")
    }
  }

  /// Calls `visit` with each field's number, wire type, value bytes (length-delimited fields) and
  /// raw bytes (tag included).
  private static func forEachField(
    _ body: [UInt8], _ visit: (Int, UInt64, ArraySlice<UInt8>, ArraySlice<UInt8>) throws -> Void
  ) throws {
    var index = 0
    while index < body.count {
      let start = index
      let key = try WireFields.varint(body, &index)
      let number = Int(key >> 3)
      var valueStart = index
      switch key & 7 {
      case 0: _ = try WireFields.varint(body, &index)
      case 1: index += 8
      case 2:
        let length = try WireFields.varint(body, &index)
        guard length <= UInt64(body.count - index) else { throw WireFieldsError(offset: start, reason: "length past the end") }
        valueStart = index
        index += Int(length)
      case 5: index += 4
      default: throw WireFieldsError(offset: start, reason: "wire type \(key & 7)")
      }
      guard index <= body.count else { throw WireFieldsError(offset: start, reason: "field past the end") }
      try visit(number, key & 7, body[valueStart..<index], body[start..<index])
    }
  }
}
