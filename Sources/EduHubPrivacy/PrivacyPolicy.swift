/// How sensitive a field is (eduhub.common.v1.Sensitivity).
public enum Sensitivity: Int, Sendable, Hashable, Comparable, CaseIterable {
  case `public` = 1, `internal`, sensitive, highlySensitive

  public static func < (lhs: Sensitivity, rhs: Sensitivity) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A field's classification, as the .proto options declare it.
public struct FieldPolicy: Sendable, Hashable {
  public var number: Int
  public var name: String
  public var sensitivity: Sensitivity
  public var masking: MaskingKind

  public init(number: Int, name: String, sensitivity: Sensitivity, masking: MaskingKind) {
    self.number = number
    self.name = name
    self.sensitivity = sensitivity
    self.masking = masking
  }
}

/// What a reader may do, on which org subtree.
public struct Grant: Sendable, Hashable {
  public var permission: String
  /// An org path; the grant covers it and everything under it.
  public var scope: String

  public init(permission: String, scope: String) {
    self.permission = permission
    self.scope = scope
  }

  /// Whether the grant covers the org at `path`.
  public func covers(_ path: String) -> Bool {
    path == scope || path.hasPrefix(scope + "/") || scope.isEmpty
  }
}

/// Who is reading.
public enum Reader: Sendable, Hashable {
  /// Region staff (school, county, city) with their grants.
  case staff(subject: String, grants: [Grant])
  /// A guardian bound to these children (person ids).
  case guardian(subject: String, children: Set<String>)
  /// A person reading their own record through their own account.
  case person(subject: String, personID: String)
  /// A node receiving a sync batch: clear inside its clearance scope, masked outside it.
  case node(id: String, clearScope: String?)
  /// An external data consumer: de-identified data with pseudonyms keyed for it alone.
  case consumer(id: String)
}

/// The person a record is about.
public struct DataSubject: Sendable, Hashable {
  public var personID: String
  /// The org path of the person's school (or unit).
  public var scope: String
  public var birthDate: CivilDate?
  public var nationalID: String?

  public init(personID: String, scope: String, birthDate: CivilDate? = nil, nationalID: String? = nil) {
    self.personID = personID
    self.scope = scope
    self.birthDate = birthDate
    self.nationalID = nationalID
  }
}

/// What a reader gets of one field.
public enum FieldDecision: Sendable, Hashable {
  /// The value as stored.
  case clear
  /// A masked form (surname only, 138****5663, county, year…).
  case masked
  /// A keyed pseudonym (ID numbers; for consumers, keyed per consumer).
  case pseudonymized
  /// Nothing.
  case removed
}

/// The field-level policy for minors' (and everyone's) personal data.
///
/// Owners see clear values: staff whose grant with `readPermission` covers the person's school,
/// guardians bound to the child, the person themselves, and nodes whose clearance covers the
/// person. Everyone else in the region sees sensitive fields masked, ID numbers as keyed pseudonyms
/// (never partial: with a birth date in view the rest would be guessable). A child under 14 is
/// masked harder: what would be masked is removed, except the surname-only name and the birth year.
/// External consumers get de-identified data: names and contact details removed, IDs pseudonymized.
public struct PrivacyPolicy: Sendable {
  /// The permission that makes staff owners of the people in their grant's subtree.
  public var readPermission: String

  public init(readPermission: String = "people.read.clear") {
    self.readPermission = readPermission
  }

  /// Whether `reader` is entitled to `subject`'s data in clear.
  public func isOwner(_ reader: Reader, of subject: DataSubject) -> Bool {
    switch reader {
    case .staff(_, let grants):
      return grants.contains { $0.permission == readPermission && $0.covers(subject.scope) }
    case .guardian(_, let children):
      return children.contains(subject.personID)
    case .person(_, let personID):
      return personID == subject.personID
    case .node(_, let clearScope):
      return clearScope.map { Grant(permission: readPermission, scope: $0).covers(subject.scope) } ?? false
    case .consumer:
      return false
    }
  }

  /// What `reader` gets of `field` of `subject`'s record, on `today` (China time).
  public func decide(_ reader: Reader, _ subject: DataSubject, _ field: FieldPolicy, on today: CivilDate)
    -> FieldDecision
  {
    decide(
      reader, field, owner: isOwner(reader, of: subject),
      age: AgeClass.of(birthDate: subject.birthDate, nationalID: subject.nationalID, on: today))
  }

  /// `decide` with the reader's ownership and the subject's age class worked out once per record.
  public func decide(_ reader: Reader, _ field: FieldPolicy, owner: Bool, age: AgeClass) -> FieldDecision {
    if field.sensitivity <= .internal || field.masking == .none { return .clear }
    if case .consumer = reader {
      switch field.masking {
      case .nationalID: return .pseudonymized
      case .address, .birthDate: return .masked
      default: return .removed
      }
    }
    if owner { return .clear }
    let harder = age == .child || age == .unknown || field.sensitivity == .highlySensitive
    switch field.masking {
    case .nationalID: return .pseudonymized
    case .redact, .freeText: return .removed
    case .name, .birthDate: return .masked
    case .phone, .address, .email: return harder ? .removed : .masked
    case .none: return .clear
    }
  }

  /// Whether `reader` may filter, sort or search by `field` over the org subtree `scope`: only if
  /// it would see the field in clear for everyone there (otherwise the query itself would reveal
  /// masked values).
  public func allowsQuery(by field: FieldPolicy, for reader: Reader, over scope: String) -> Bool {
    if field.sensitivity <= .internal || field.masking == .none { return true }
    switch reader {
    case .staff(_, let grants):
      return grants.contains { $0.permission == readPermission && $0.covers(scope) }
    case .node(_, let clearScope):
      return clearScope.map { Grant(permission: readPermission, scope: $0).covers(scope) } ?? false
    case .guardian, .person, .consumer:
      return false
    }
  }

  /// Whether a decision must be written to the audit log: every clear read of a minor's sensitive
  /// field.
  public func requiresAudit(_ decision: FieldDecision, _ subject: DataSubject, _ field: FieldPolicy, on today: CivilDate)
    -> Bool
  {
    decision == .clear && field.sensitivity >= .sensitive
      && AgeClass.of(birthDate: subject.birthDate, nationalID: subject.nationalID, on: today).isMinor
  }
}
