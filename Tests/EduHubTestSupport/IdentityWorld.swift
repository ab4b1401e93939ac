import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubStorage
import EduHubSync
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Every log line a node writes, at trace level: what an operator reading its logs would see.
package final class CapturedLog: Sendable {
  package init() {}

  package let lines = Mutex<[String]>([])

  package var text: String { lines.withLock { $0.joined(separator: "\n") } }

  /// A logger writing here, at `.trace`.
  package func logger(label: String) -> Logger {
    var logger = Logger(label: label) { _ in Handler(log: self) }
    logger.logLevel = .trace
    return logger
  }

  package struct Handler: LogHandler {
    let log: CapturedLog
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .trace

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
      get { metadata[key] }
      set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
      let all = metadata.merging(event.metadata ?? [:]) { $1 }
      let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
      log.lines.withLock { $0.append("\(event.level) \(event.message) \(rendered)") }
    }
  }
}

/// Captures one-time codes as a person's phone would receive them.
package final class CapturingDelivery: CodeDelivery {
  package let sent = Mutex<[String: String]>([:])

  package func deliver(code: String, to phone: String, purpose: String) throws {
    sent.withLock { $0[phone] = code }
  }

  package func code(for phone: String) -> String? { sent.withLock { $0[phone] } }
}

/// The node's wall clock, which a test moves forward instead of sleeping: what a test judges
/// (a lock lifting, a grant expiring) then never depends on how busy the machine is.
package final class TestClock: Sendable {
  private let offsetMs = Atomic<Int64>(0)

  package var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) + offsetMs.load(ordering: .relaxed) }

  package func advance(by duration: Duration) {
    offsetMs.add(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000, ordering: .relaxed)
  }
}

/// A seeded node serving Identity on 127.0.0.1 with a real encrypted database in a temporary
/// directory, and clients for it.
package final class IdentityWorld: Sendable {
  package static let password = "correct horse battery staple"
  /// A primary school of Tongchuan with its first student and first teacher (seeded).
  package static let school = "5117020001"
  package static let student = "S5117020001-0001"
  package static let teacher = "T5117020001-001"
  /// A school of Dachuan.
  package static let otherSchool = "5117030001"
  package static let otherStudent = "S5117030001-0001"

  package let directory: String
  package let node: OpenNode
  package let server: RPCServer
  package let port: Int
  package let delivery: CapturingDelivery
  package let clock: TestClock
  package let rpc: RPCClient

  private init(directory: String, node: OpenNode, server: RPCServer, port: Int, delivery: CapturingDelivery, clock: TestClock) {
    self.directory = directory
    self.clock = clock
    self.node = node
    self.server = server
    self.port = port
    self.delivery = delivery
    self.rpc = RPCClient(host: "127.0.0.1", port: port)
  }

  /// Production rules with a short lockout and a cheap Argon2id: the tests check behaviour, and
  /// two dozen worlds hashing at OWASP's cost in parallel would starve the other suites' timers.
  package static func testConfiguration() -> IdentityConfiguration {
    var configuration = IdentityConfiguration()
    configuration.lockoutBase = 2
    configuration.passwordLimits = PasswordHash.Limits(opsLimit: 1, memLimit: 256 * 1024)
    return configuration
  }

  /// A node directory made once per test run (seeded or not); each world starts from a copy.
  package static let emptyTemplate = Result { try makeTemplate(seed: false) }
  package static let seededTemplate = Result { try makeTemplate(seed: true) }

  package static func makeTemplate(seed: Bool) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-template-\(UUID().uuidString)").path
    let data = try NodeData.initialize(at: directory, identity: NodeIdentity(nodeID: "test-central", scope: "", role: .central))
    let (database, replica) = try data.openReplica()
    if seed { try CitySeeder(scale: .small).run(into: replica) }
    try database.close()
    return directory
  }

  /// - Parameter log: where the node's log goes, at trace level (nil: warnings to stderr).
  package static func start(
    seed: Bool = true, configuration: IdentityConfiguration = testConfiguration(), log: CapturedLog? = nil
  ) async throws -> IdentityWorld {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-identity-\(UUID().uuidString)").path
    try FileManager.default.copyItem(atPath: try seed ? seededTemplate.get() : emptyTemplate.get(), toPath: directory)
    var logger = Logger(label: "test.identity")
    logger.logLevel = .warning
    if let log { logger = log.logger(label: "test.identity") }
    let delivery = CapturingDelivery()
    let clock = TestClock()
    let node = try NodeData.load(directory).open(
      delivery: delivery, identityConfiguration: configuration, logger: logger, nowMs: { clock.nowMs })
    var rpc = ServerConfiguration()
    rpc.busyPollBudget = nil
    rpc.shutdownGracePeriod = .seconds(5)
    let services = node.services(configuration: &rpc)
    let server = RPCServer(services: services, configuration: rpc, logger: logger)
    let address = try await server.start(host: "127.0.0.1", port: 0)
    return IdentityWorld(directory: directory, node: node, server: server, port: address.port ?? 0, delivery: delivery, clock: clock)
  }

  package var identity: IdentityService { node.identity }
  package var openSync: SyncService { node.sync }
  package var client: Eduhub_Identity_V1_IdentityService.Client { .init(rpc) }

  package func stop() async {
    await rpc.close()
    await server.shutdownGracefully()
    await node.close()
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// An active account with `role` on `org` (created by the operator), returning its id.
  @discardableResult
  package func account(
    _ username: String, role: Eduhub_Identity_V1_Role? = nil, org: String = CitySeeder.cityCode, person: String = ""
  ) async throws -> String {
    let account = try await identity.createActiveAccount(
      username: username, password: Self.password, personID: person, orgCode: org, caller: .operator(name: "test"))
    if let role {
      var request = Eduhub_Identity_V1_GrantRoleRequest()
      request.accountID = account.id
      request.role = role
      request.orgCode = org
      _ = try identity.grantRole(request, caller: .operator(name: "test"), peer: "test")
    }
    return account.id
  }

  package func login(_ username: String, password: String = IdentityWorld.password) async throws -> Eduhub_Identity_V1_TokenPair {
    var request = Eduhub_Identity_V1_LoginRequest()
    request.login = username
    request.password = password
    return try await client.login(request)
  }

  /// Call options carrying `username`'s access token.
  package func options(_ username: String) async throws -> CallOptions {
    bearer(try await login(username).accessToken)
  }

  package func bearer(_ token: String) -> CallOptions {
    CallOptions(metadata: ["authorization": .string("Bearer " + token)])
  }

  /// How many times `action` happened with `outcome`: repeated identical events are written once
  /// with `×N` in their detail.
  package func auditCount(action: String, outcome: String) throws -> Int {
    try auditEvents(action: action).filter { $0.outcome == outcome }.reduce(0) { total, event in
      guard let mark = event.detail.range(of: "×", options: .backwards), let count = Int(event.detail[mark.upperBound...])
      else { return total + 1 }
      return total + count
    }
  }

  /// The audit events of `action`, oldest first.
  package func auditEvents(action: String) throws -> [Eduhub_Identity_V1_AuditEvent] {
    try node.audit.events(after: 0, action: action, limit: 10_000)
  }
}

/// Runs `body` with a started world and always stops it.
package func withWorld<R>(
  seed: Bool = true, configuration: IdentityConfiguration = IdentityWorld.testConfiguration(), log: CapturedLog? = nil,
  _ body: (IdentityWorld) async throws -> R
) async throws -> R {
  let world = try await IdentityWorld.start(seed: seed, configuration: configuration, log: log)
  do {
    let result = try await body(world)
    await world.stop()
    return result
  } catch {
    await world.stop()
    throw error
  }
}

/// Expects `body` to fail with `code`; returns the error's message.
@discardableResult
package func expectStatus(
  _ code: RPCError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> some Any
) async -> String {
  do {
    _ = try await body()
    Issue.record("expected \(code), but the call succeeded", sourceLocation: sourceLocation)
    return ""
  } catch let error as RPCError {
    #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
    return error.message
  } catch {
    Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    return ""
  }
}
