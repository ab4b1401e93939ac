import EduHubCore
import EduHubWorkOrders
import Foundation
import Yams

/// Reads `--work-calendar FILE`: working hours, each year's holidays and exchanged working days,
/// and SLA targets, in YAML (or JSON). See `SlaConfiguration` for the format.
enum WorkCalendarFile {
  static func policy(_ path: String?) throws -> SlaPolicy {
    guard let path else { return SlaPolicy() }
    guard let data = FileManager.default.contents(atPath: path) else { throw FailureMessage("cannot read \(path)") }
    do {
      // No timestamp rule: dates stay text, checked as calendar dates by the configuration.
      guard let tree = try Yams.load(yaml: String(decoding: data, as: UTF8.self), Resolver.default.removing(.timestamp)) else {
        throw FailureMessage("\(path) is empty")
      }
      return try SlaConfiguration.policy(from: tree)
    } catch let error as SlaConfiguration.Problem {
      throw FailureMessage("\(path): \(error.description)")
    } catch let error as YamlError {
      throw FailureMessage("\(path) is not valid YAML: \(error)")
    }
  }
}
