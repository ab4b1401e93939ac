import EduHubAPI
import EduHubPrivacy

/// A work calendar and SLA targets from a configuration tree (decoded from YAML or JSON by the
/// caller), so a region sets each year's holidays and exchanged working days, its working hours
/// and its targets without a new release:
///
///     periods: ["08:30-12:00", "14:00-17:30"]
///     years:
///       2027:
///         holidays: [2027-01-01, 2027-02-06, ...]
///         workdays: [2027-02-14]
///     targets:            # working minutes: first response, resolution
///       P1: [60, 420]
///
/// Years and targets not given keep the defaults (2026's arrangement, `SlaPolicy`'s targets).
public enum SlaConfiguration {
  public struct Problem: Error, CustomStringConvertible {
    public let description: String
  }

  public static func policy(from tree: Any) throws(Problem) -> SlaPolicy {
    guard let root = tree as? [String: Any] else { throw Problem(description: "expected a mapping at the top") }
    let known: Set<String> = ["periods", "years", "targets"]
    if let unknown = root.keys.first(where: { !known.contains($0) }) { throw Problem(description: "unknown key \(unknown)") }
    var policy = SlaPolicy()
    if let periods = root["periods"] {
      guard let list = periods as? [Any], !list.isEmpty else { throw Problem(description: "periods: a list of \"HH:MM-HH:MM\"") }
      policy.calendar.periods = try list.map { item throws(Problem) in try period(item) }
        .sorted { $0.lowerBound < $1.lowerBound }
      for (a, b) in zip(policy.calendar.periods, policy.calendar.periods.dropFirst()) where a.upperBound > b.lowerBound {
        throw Problem(description: "periods overlap")
      }
    }
    if let years = root["years"] {
      guard let map = years as? [AnyHashable: Any] else { throw Problem(description: "years: a mapping of year to holidays and workdays") }
      for (key, value) in map {
        guard let year = Int("\(key)"), (1900...2999).contains(year), let entry = value as? [String: Any] else {
          throw Problem(description: "years: \(key) is not a year with holidays and workdays")
        }
        let holidays = try dates(entry["holidays"], year: year, "holidays")
        let workdays = try dates(entry["workdays"], year: year, "workdays")
        policy.calendar = policy.calendar.adding(holidays: holidays, workdays: workdays)
      }
    }
    if let targets = root["targets"] {
      guard let map = targets as? [String: Any] else { throw Problem(description: "targets: a mapping of P1..P4 to [first response, resolution]") }
      for (key, value) in map {
        let priorities: [String: Eduhub_Workorder_V1_Priority] = ["P1": .p1, "P2": .p2, "P3": .p3, "P4": .p4]
        guard let priority = priorities[key.uppercased()], let pair = value as? [Any], pair.count == 2,
          let first = (pair[0] as? Int), let resolution = (pair[1] as? Int), first > 0, resolution >= first
        else { throw Problem(description: "targets: \(key) must be P1..P4 with [first response, resolution] minutes") }
        policy.targets[priority] = (Int64(first), Int64(resolution))
      }
    }
    return policy
  }

  static func period(_ item: Any) throws(Problem) -> ClosedRange<Int> {
    let text = "\(item)"
    let parts = text.split(separator: "-")
    func minutes(_ part: Substring) -> Int? {
      let hm = part.split(separator: ":")
      guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0...59).contains(m) else { return nil }
      return h * 60 + m
    }
    guard parts.count == 2, let start = minutes(parts[0]), let end = minutes(parts[1]), start < end, end <= 1440 else {
      throw Problem(description: "period \(text) is not HH:MM-HH:MM")
    }
    return start...end
  }

  static func dates(_ value: Any?, year: Int, _ name: String) throws(Problem) -> [Int] {
    guard let value else { return [] }
    guard let list = value as? [Any] else { throw Problem(description: "\(year) \(name): a list of dates") }
    return try list.map { item throws(Problem) in
      guard let date = CivilDate(iso: "\(item)"), date.year == year else {
        throw Problem(description: "\(year) \(name): \(item) is not a date (YYYY-MM-DD) of \(year)")
      }
      return date.year * 10_000 + date.month * 100 + date.day
    }
  }
}
