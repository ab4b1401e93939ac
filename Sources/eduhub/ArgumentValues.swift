import ArgumentParser
import EduHubAPI
import EduHubIdentity
import EduHubNode

// Options that take one of a fixed set of values parse into these: a value outside the set is an
// error naming the set, before the command runs, and `--help` lists it.

extension NodeIdentity.Role: ExpressibleByArgument {}

extension CitySeeder.Scale: ExpressibleByArgument {}

/// A role by its name on the command line (`city-admin`, `teacher`, …).
struct RoleArgument: ExpressibleByArgument, Sendable {
  let role: Eduhub_Identity_V1_Role

  init?(argument: String) {
    guard let role = Roles.role(named: argument) else { return nil }
    self.role = role
  }

  static var allValueStrings: [String] { Roles.all.map { Roles.name(of: $0) } }

  var defaultValueDescription: String { Roles.name(of: role) }
}

/// How a data request asks to see personal fields.
enum MaskingArgument: String, CaseIterable, ExpressibleByArgument {
  case clear, masked
  case deidentified = "de-identified"

  var level: Eduhub_Sharing_V1_MaskingLevel {
    switch self {
    case .clear: .clear
    case .masked: .masked
    case .deidentified: .deidentified
    }
  }
}

/// Whether a node below reads personal fields in clear.
enum ClearanceArgument: String, CaseIterable, ExpressibleByArgument {
  case clear, masked

  var level: Eduhub_Sync_V1_Clearance {
    switch self {
    case .clear: .clear
    case .masked: .masked
    }
  }
}
