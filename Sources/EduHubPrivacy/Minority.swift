/// How the law treats a person's data by age at the moment of reading (PIPL art. 28 and 31:
/// a minor is under 18; a child under 14, whose data is sensitive personal information).
public enum AgeClass: Sendable, Hashable {
  /// Under 14.
  case child
  /// 14 to 17.
  case minor
  /// 18 or over.
  case adult
  /// No birth date and no valid ID number: treated as a child, the safest reading.
  case unknown

  /// Whether masking rules for minors apply.
  public var isMinor: Bool { self != .adult }

  /// The age class of a person born on `birthDate` (else on the date in `nationalID`), on `today`
  /// in China.
  public static func of(birthDate: CivilDate?, nationalID: String?, on today: CivilDate) -> AgeClass {
    let born = birthDate ?? nationalID.flatMap { try? NationalID($0) }?.birthDate
    guard let born, born <= today else { return .unknown }
    let age = born.years(until: today)
    if age < 14 { return .child }
    if age < 18 { return .minor }
    return .adult
  }
}
