/// A calendar date without time or zone (a birth date).
public struct CivilDate: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let year: Int
  public let month: Int
  public let day: Int

  /// Nil unless `year`-`month`-`day` is a date of the Gregorian calendar (year 1900 to 2999).
  public init?(year: Int, month: Int, day: Int) {
    guard (1900...2999).contains(year), (1...12).contains(month), day >= 1, day <= Self.days(in: month, of: year) else {
      return nil
    }
    self.year = year
    self.month = month
    self.day = day
  }

  static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

  /// Days in `month` of `year`.
  public static func daysIn(month: Int, year: Int) -> Int { days(in: month, of: year) }

  static func days(in month: Int, of year: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }

  /// The date in China (UTC+8, no daylight saving) at `secondsSince1970`.
  public init(chinaTimeAt secondsSince1970: Int64) {
    // Days since 1970-01-01 in UTC+8, then Howard Hinnant's civil-from-days.
    let days = Int((secondsSince1970 + 8 * 3600).dividedFloor(by: 86_400))
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    self.year = year
    self.month = month
    self.day = day
  }

  /// Whole years from `self` to `date`: a birthday on 29 February is reached on 1 March in common
  /// years (the legal reading in China: the day after 28 February).
  public func years(until date: CivilDate) -> Int {
    var years = date.year - year
    let birthdayReached = (date.month, date.day) >= (month, day)
    if !birthdayReached { years -= 1 }
    return years
  }

  public static func < (lhs: CivilDate, rhs: CivilDate) -> Bool {
    (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
  }

  public var description: String {
    "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)"
  }
}

extension Int64 {
  fileprivate func dividedFloor(by divisor: Int64) -> Int64 {
    let quotient = self / divisor
    return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
  }
}

extension CivilDate {
  /// Parses `YYYY-MM-DD`; nil for anything else or a day that does not exist.
  public init?(iso text: some StringProtocol) {
    self.init(isoBytes: Array(text.utf8))
  }

  /// Parses `YYYY-MM-DD` from UTF-8 bytes.
  public init?<Bytes: RandomAccessCollection<UInt8>>(isoBytes bytes: Bytes) {
    guard bytes.count == 10 else { return nil }
    var year = 0
    var month = 0
    var day = 0
    for (offset, byte) in bytes.enumerated() {
      switch offset {
      case 4, 7:
        guard byte == UInt8(ascii: "-") else { return nil }
      default:
        guard byte >= 0x30, byte <= 0x39 else { return nil }
        let digit = Int(byte - 0x30)
        if offset < 4 { year = year * 10 + digit } else if offset < 7 { month = month * 10 + digit } else { day = day * 10 + digit }
      }
    }
    self.init(year: year, month: month, day: day)
  }
}
