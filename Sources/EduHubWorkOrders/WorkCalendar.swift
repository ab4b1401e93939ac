import EduHubPrivacy

/// Working time in the region's calendar (Asia/Shanghai, UTC+8 all year): working days and hours,
/// public holidays, and the weekend days worked in exchange for them, configurable per year.
///
/// SLA clocks count working minutes between instants with it; instants are stored as milliseconds
/// since 1970 and only turned into China dates here.
public struct WorkCalendar: Sendable, Hashable {
  /// Working periods of a working day, in minutes after midnight China time.
  public var periods: [ClosedRange<Int>]
  /// Days off that would otherwise be working days (public holidays), as yyyymmdd.
  public var holidays: Set<Int>
  /// Weekend days that are working days (worked in exchange for a holiday), as yyyymmdd.
  public var workdays: Set<Int>

  public init(periods: [ClosedRange<Int>] = Self.defaultPeriods, holidays: Set<Int> = [], workdays: Set<Int> = []) {
    self.periods = periods
    self.holidays = holidays
    self.workdays = workdays
  }

  /// 08:30-12:00 and 14:00-17:30, as schools and bureaus in Sichuan keep them: 7 hours.
  public static let defaultPeriods = [510...720, 840...1050]

  /// The State Council's 2026 holiday arrangement (国办发明电〔2025〕号): holidays and exchanged
  /// working days. Other years are added with `adding(year:holidays:workdays:)`.
  public static let china2026 = WorkCalendar(
    holidays: Set(
      [20260101, 20260102, 20260103]  // 元旦
        + (20260215...20260223).map { $0 }  // 春节
        + [20260404, 20260405, 20260406]  // 清明节
        + (20260501...20260505).map { $0 }  // 劳动节
        + [20260619, 20260620, 20260621]  // 端午节
        + [20260925, 20260926, 20260927]  // 中秋节
        + (20261001...20261007).map { $0 }),  // 国庆节
    workdays: [20260104, 20260214, 20260228, 20260509, 20260920, 20261010])

  /// This calendar with one more year's holidays and exchanged working days.
  public func adding(holidays: [Int], workdays: [Int]) -> WorkCalendar {
    var copy = self
    copy.holidays.formUnion(holidays)
    copy.workdays.formUnion(workdays)
    return copy
  }

  static let dayMs: Int64 = 86_400_000
  static let offsetMs: Int64 = 8 * 3_600_000

  /// Whether the China date with `day` days since 1970-01-01 is a working day.
  func isWorkingDay(_ day: Int64) -> Bool {
    let date = CivilDate(chinaTimeAt: day * 86_400)
    let key = date.year * 10_000 + date.month * 100 + date.day
    if workdays.contains(key) { return true }
    if holidays.contains(key) { return false }
    // 1970-01-01 was a Thursday: day % 7 == 2 is Saturday, 3 is Sunday.
    let weekday = ((day % 7) + 7) % 7
    return weekday != 2 && weekday != 3
  }

  /// Working minutes between two instants (0 if `to` is not after `from`).
  public func workingMinutes(from: Int64, to: Int64) -> Int64 {
    guard to > from else { return 0 }
    var total: Int64 = 0
    let first = (from + Self.offsetMs).dividedFloor(Self.dayMs)
    let last = (to + Self.offsetMs).dividedFloor(Self.dayMs)
    var day = first
    while day <= last {
      if isWorkingDay(day) {
        let midnight = day * Self.dayMs - Self.offsetMs
        for period in periods {
          let start = max(from, midnight + Int64(period.lowerBound) * 60_000)
          let end = min(to, midnight + Int64(period.upperBound) * 60_000)
          if end > start { total += end - start }
        }
      }
      day += 1
    }
    return total / 60_000
  }

  /// The instant at which `minutes` working minutes after `from` have passed (searching at most two
  /// years ahead).
  public func adding(minutes: Int64, to from: Int64) -> Int64 {
    var remaining = minutes * 60_000
    var day = (from + Self.offsetMs).dividedFloor(Self.dayMs)
    for _ in 0..<730 {
      if isWorkingDay(day) {
        let midnight = day * Self.dayMs - Self.offsetMs
        for period in periods {
          let start = max(from, midnight + Int64(period.lowerBound) * 60_000)
          let end = midnight + Int64(period.upperBound) * 60_000
          guard end > start else { continue }
          if end - start >= remaining { return start + remaining }
          remaining -= end - start
        }
      }
      day += 1
    }
    return Int64.max
  }
}

extension Int64 {
  /// Division rounding towards minus infinity (instants before 1970 stay on the right day).
  func dividedFloor(_ divisor: Int64) -> Int64 {
    let quotient = self / divisor
    return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
  }
}
