import ArgumentParser
import EduHubAPI
import EduHubCatalog
import EduHubCore
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import Logging
import SwiftProtobuf

/// The node directory option of the commands that work on a node's data.
struct DataOptions: ParsableArguments {
  @Option(help: "The node's data directory (see eduhub init).")
  var data: String

  @Option(help: "Work orders' calendar and SLA targets (YAML, as for serve).")
  var workCalendar: String?

  /// Opens the node's storage and services with quiet logging.
  func open(logger: Logger = Logger(label: "eduhub.cli")) throws -> OpenNode {
    do {
      return try NodeData.load(data).open(sla: try WorkCalendarFile.policy(workCalendar), logger: logger)
    } catch let error as NodeDataError {
      throw FailureMessage(error.message)
    }
  }

  /// Opens the node, runs `body` and closes the node whatever happens; a failure becomes one line,
  /// "cannot `doing`: why".
  func with<T>(_ doing: String, _ body: (OpenNode) throws -> T) async throws -> T {
    let open = try open()
    let result = Result { try body(open) }
    await open.close()
    do { return try result.get() } catch { throw FailureMessage("cannot \(doing): \(error)") }
  }
}

/// Runs `body` as the node's operator; RPC errors become one-line failures.
func asOperator<T>(_ node: OpenNode, _ body: (Caller) async throws -> T) async throws -> T {
  let name = ProcessInfo.processInfo.environment["USER"] ?? "console"
  do {
    let result = try await body(.operator(name: name))
    await node.close()
    return result
  } catch let error as RPCError {
    await node.close()
    throw FailureMessage(error.message)
  }
}

extension EduHubCommand {
  struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create a node's data directory: its keys and its encrypted database.")

    @Option(help: "The directory to create.")
    var data: String

    @Option(help: "This node's id.")
    var nodeID: String = "central"

    @Option(help: "The org subtree this node holds, e.g. 511700/511702 (empty for the whole region).")
    var scope: String = ""

    @Option(help: "The node's role.")
    var role: NodeIdentity.Role = .central

    @Option(help: "The upstream node to enroll with and sync with, HOST:PORT (needs --enroll).")
    var upstream: String?

    @Option(help: "The one-time enrollment token from the upstream's `eduhub node create`.")
    var enroll: String?

    func validate() throws {
      if (upstream == nil) != (enroll == nil) { throw ValidationError("--upstream and --enroll go together") }
    }

    func run() async throws {
      // An enrolled node's id is the one its token was made for.
      let id = enroll.map { String($0.prefix { $0 != "." }) } ?? nodeID
      let created: NodeData
      do {
        created = try NodeData.initialize(at: data, identity: NodeIdentity(nodeID: id, scope: scope, role: role), upstream: upstream)
      } catch let error as NodeDataError {
        throw FailureMessage(error.message)
      }
      guard let upstream, let enroll else {
        print("initialized node \(id) in \(data)")
        return
      }
      do {
        let enrolled = try await EduHubCommand.enrollNode(created, upstream: upstream, token: enroll)
        print("initialized node \(id) in \(data), enrolled with \(upstream) for \(enrolled.identity.scope)")
      } catch {
        // Nothing half-made stays behind: the command can simply be run again.
        try? FileManager.default.removeItem(atPath: data)
        throw error
      }
    }
  }

  struct Seed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Write a synthetic Dazhou into a node: orgs, schools, students, guardians, teachers.",
      discussion: "small: 14 schools, about 3,100 people. city: 1,353 schools, about 2.7 million people. Both publish the bureau's data resources to the catalog.")

    @OptionGroup var node: DataOptions

    @Option(help: "How much to generate.")
    var scale: CitySeeder.Scale = .small

    @Option(help: "Seed of the generator (the same seed writes the same people).")
    var seed: UInt64 = 2026

    func run() async throws {
      let open = try node.open()
      let seeder = CitySeeder(scale: scale, seed: seed)
      let start = Date()
      let expected = seeder.expectedPeople
      let bar = ProgressBar(label: "seed", total: expected)
      let (summary, resources) = try await asOperator(open) { _ in
        let summary = try seeder.run(into: open.identity) { summary in
          bar.show(summary.people, detail: "\(summary.schools) schools, \(summary.people) people")
        }
        // The bureau's data resources, for the catalog.
        let published = try CatalogSeeder.run(into: open.catalog)
        let rows = try open.identity.store.read { db in
          try open.identity.store.records.records(CatalogCollections.resource, limit: 10_000, in: db).reduce(Int64(0)) { total, record in
            let resource = try CatalogCollections.resource.decode(record)
            guard case .ingested = resource.dataset.source else { return total }
            return total + resource.rowCount
          }
        }
        return (summary, (published, rows))
      }
      bar.finish()
      let seconds = Date().timeIntervalSince(start)
      print(
        String(
          format: "seeded %d orgs (%d schools), %d students, %d teachers, %d guardians, %d bindings in %.1f s (%.0f people/s)",
          summary.orgs, summary.schools, summary.students, summary.teachers, summary.guardians, summary.bindings, seconds,
          Double(summary.people) / max(seconds, 0.001)))
      print("published \(resources.0) catalog resources (\(resources.1) rows in their ingested tables)")
    }
  }

  struct User: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Add an account with a password and a role (the first city admin, operators).",
      discussion: """
        Runs as the node's operator at its console. The password comes from an environment variable, \
        never the command line. Other people's accounts are created through CreateAccount and \
        activated by their owners with a one-time code.
        """)

    @OptionGroup var node: DataOptions

    @Option(help: "The new account's username.")
    var username: String

    @Option(help: "The name of an environment variable holding the password.")
    var passwordEnv: String

    @Option(help: "The role to grant.")
    var role: RoleArgument?

    @Option(help: "The org code the account belongs to and the role is granted on.")
    var org: String = CitySeeder.cityCode

    @Option(help: "The person the account belongs to (optional).")
    var person: String = ""

    func run() async throws {
      let password = try environmentSecret(passwordEnv, "password")
      let grantedRole = role?.role
      let open = try node.open()
      let account = try await asOperator(open) { caller in
        let account = try await open.identity.createActiveAccount(
          username: username, password: password, personID: person, orgCode: org, caller: caller)
        if let grantedRole {
          var request = Eduhub_Identity_V1_GrantRoleRequest()
          request.accountID = account.id
          request.role = grantedRole
          request.orgCode = org
          _ = try open.identity.grantRole(request, caller: caller, peer: "console")
        }
        return account
      }
      print("created account \(account.username) (\(account.id))" + (role.map { " with role \(Roles.name(of: $0.role)) on \(org)" } ?? ""))
    }
  }

  struct Grant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Grant a role on an org subtree to an account.")

    @OptionGroup var node: DataOptions

    @Option(help: "The account's username.")
    var username: String

    @Option(help: "The role.")
    var role: RoleArgument

    @Option(help: "The org code the role is held on.")
    var org: String

    func run() async throws {
      let role = role.role
      let open = try node.open()
      let grant = try await asOperator(open) { caller in
        guard let accountID = try open.identity.accountID(username: username) else {
          throw RPCError(.notFound, "no account \(username)")
        }
        var request = Eduhub_Identity_V1_GrantRoleRequest()
        request.accountID = accountID
        request.role = role
        request.orgCode = org
        return try open.identity.grantRole(request, caller: caller, peer: "console")
      }
      print("granted \(self.role) on \(grant.orgPath) to \(username) (grant \(grant.id))")
    }
  }

  struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Check, export and prune the audit log.", subcommands: [Verify.self, Export.self, Prune.self])

    struct Verify: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Recompute the audit log's hash chain (or an exported archive's); exit 1 if an entry was changed, inserted or removed.")

      @OptionGroup var node: DataOptions

      @Option(help: "Check this archive (from `eduhub audit export`) with the node's audit key instead of the log.")
      var archive: String?

      func run() async throws {
        let result = try await node.with("read the audit \(archive == nil ? "log" : "archive")") { open in
          try archive.map(open.audit.verifyArchive) ?? open.audit.verify()
        }
        let what = archive == nil ? "audit log" : "audit archive"
        if let broken = result.brokenAt {
          print("\(what) BROKEN at entry \(broken): \(result.reason ?? "")")
          throw ExitCode(1)
        }
        print("\(what) intact: \(result.entries) entries")
      }
    }

    struct Export: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Write the entries of a period as a hash-chained archive (JSON lines, mode 0600) that `audit verify --archive` checks.")

      @OptionGroup var node: DataOptions

      @Option(help: "The first day, YYYY-MM-DD (China time).")
      var since: String

      @Option(help: "The day after the last, YYYY-MM-DD (China time).")
      var until: String

      @Option(help: "The archive file to write.")
      var to: String

      func validate() throws {
        guard let since = AuditDay.startMs(since), let until = AuditDay.startMs(until) else {
          throw ValidationError("--since and --until take dates such as 2026-06-01")
        }
        guard since < until else { throw ValidationError("--since must come before --until") }
      }

      func run() async throws {
        let count = try await node.with("export the audit log") { open in
          try open.audit.export(sinceMs: AuditDay.startMs(since) ?? 0, untilMs: AuditDay.startMs(until) ?? 0, to: to)
        }
        print("exported \(count) audit entries to \(to)")
      }
    }

    struct Prune: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Remove audit entries older than the retention (never below 184 days); the chain stays verifiable from an anchor.")

      @OptionGroup var node: DataOptions

      @Option(help: "Keep this many days (at least 184).")
      var retentionDays = AuditLog.minimumRetentionDays

      func validate() throws {
        guard retentionDays >= AuditLog.minimumRetentionDays else {
          throw ValidationError("--retention-days must be at least \(AuditLog.minimumRetentionDays)")
        }
      }

      func run() async throws {
        let pruned = try await node.with("prune the audit log") { open in
          try open.audit.prune(retentionDays: retentionDays, nowMs: Int64(Date().timeIntervalSince1970 * 1000), actor: "operator:cli")
        }
        print(pruned.entries == 0 ? "nothing older than \(retentionDays) days" : "pruned \(pruned.entries) audit entries (through \(pruned.through ?? 0))")
      }
    }
  }
}

/// Days as the audit commands take them: midnight in China (UTC+8).
enum AuditDay {
  static func startMs(_ text: String) -> Int64? {
    let parts = text.split(separator: "-").compactMap { Int($0) }
    guard parts.count == 3, text.count == 10, (1...12).contains(parts[1]), (1...31).contains(parts[2]) else { return nil }
    var components = DateComponents()
    (components.year, components.month, components.day) = (parts[0], parts[1], parts[2])
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(secondsFromGMT: 8 * 3600) ?? .gmt
    guard let date = calendar.date(from: components), calendar.component(.day, from: date) == parts[2] else { return nil }
    return Int64(date.timeIntervalSince1970 * 1000)
  }
}
