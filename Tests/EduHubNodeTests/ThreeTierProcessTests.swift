import EduHubAPI
import EduHubRPC
import Foundation
import SwiftProtobuf
import Testing

/// Central, a county and a school as three `eduhub serve` processes on loopback.
@Suite("Three tiers as separate processes", .serialized)
struct ThreeTierProcessTests {
  final class Node {
    let process = Process()
    let port: Int

    /// - Parameter port: the port to listen on (a free one by default).
    init(data: String, extra: [String] = [], port: Int = freePort()) throws {
      self.port = port
      process.executableURL = binary
      process.arguments = ["serve", "--data", data, "--listen", "127.0.0.1:\(port)", "--log-level", "error"] + extra
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
    }

    func stop() -> Int32 {
      process.terminate()
      process.waitUntilExit()
      return process.terminationStatus
    }

    var client: Eduhub_Identity_V1_IdentityService.Client { .init(RPCClient(host: "127.0.0.1", port: port)) }

    /// Signs `user` in (the node may still be starting), with the tests' password.
    func login(_ user: String, password: String = "three tier passphrase") async throws -> CallOptions {
      var request = Eduhub_Identity_V1_LoginRequest()
      request.login = user
      request.password = password
      var lastError: (any Error)?
      for _ in 0..<100 {
        do {
          let pair = try await client.login(request, options: CallOptions(timeout: .seconds(30)))
          return CallOptions(timeout: .seconds(60), metadata: ["authorization": .string("Bearer " + pair.accessToken)])
        } catch {
          lastError = error
          try await Task.sleep(for: .milliseconds(100))
        }
      }
      throw lastError!
    }

    func setClass(_ options: CallOptions, _ id: String, _ value: String) async throws {
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = id
      update.person.className = value
      update.updateMask = ["class_name"]
      _ = try await client.updatePerson(update, options: options)
    }

    func className(_ options: CallOptions, _ id: String) async throws -> String {
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = id
      return try await client.getPerson(get, options: options).className
    }
  }

  /// A seeded central node with a city administrator (`admin`) and a school's principal
  /// (`principal`, school 5117030001), both with the tests' password (in EDUHUB_3TIER_PW).
  static func seedCentral(_ central: String) throws {
    setenv("EDUHUB_3TIER_PW", "three tier passphrase", 1)
    #expect(try run(["init", "--data", central]).status == 0)
    #expect(try run(["seed", "--data", central]).status == 0)
    for (user, role, org) in [("admin", "city-admin", "511700"), ("principal", "school-admin", "5117030001")] {
      #expect(try run(["user", "--data", central, "--username", user, "--password-env", "EDUHUB_3TIER_PW", "--role", role, "--org", org]).status == 0)
    }
  }

  @Test("a write at central reaches the school and a write at the school reaches central, through the county")
  func converge() async throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-3tier-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    let (central, county, school) = (root + "/central", root + "/county", root + "/school")
    try ThreeTierProcessTests.seedCentral(central)
    defer { unsetenv("EDUHUB_3TIER_PW") }
    let countyToken = try #require(
      try run(["node", "create", "--data", central, "--node-id", "county-511703", "--org", "511703"]).output.split(separator: "\n").last)
    let centralNode = try Node(data: central)
    defer { _ = centralNode.stop() }
    let countyEnrolled = try retrying(["init", "--data", county, "--role", "county", "--upstream", "127.0.0.1:\(centralNode.port)", "--enroll", String(countyToken)])
    try #require(countyEnrolled.status == 0, "\(countyEnrolled.errors)")
    #expect(try run(["sync", "--data", county]).status == 0)
    let schoolToken = try #require(
      try run(["node", "create", "--data", county, "--node-id", "school-5117030001", "--org", "5117030001"]).output.split(separator: "\n").last)
    let countyNode = try Node(data: county, extra: ["--sync-every", "1s"])
    defer { _ = countyNode.stop() }
    let schoolEnrolled = try retrying(["init", "--data", school, "--role", "school", "--upstream", "127.0.0.1:\(countyNode.port)", "--enroll", String(schoolToken)])
    try #require(schoolEnrolled.status == 0, "\(schoolEnrolled.errors)")
    #expect(try run(["sync", "--data", school]).status == 0)
    let schoolNode = try Node(data: school, extra: ["--sync-every", "1s"])
    defer { _ = schoolNode.stop() }

    let admin = try await centralNode.login("admin")
    // The principal's account replicated down: the school logs her in from its own replica.
    let principal = try await schoolNode.login("principal")
    try await centralNode.setClass(admin, "S5117030001-0002", "from central")
    try await schoolNode.setClass(principal, "S5117030001-0003", "from the school")
    var down = "", up = ""
    for _ in 0..<150 where down != "from central" || up != "from the school" {
      try await Task.sleep(for: .milliseconds(200))
      down = try await schoolNode.className(principal, "S5117030001-0002")
      up = try await centralNode.className(admin, "S5117030001-0003")
    }
    #expect(down == "from central")
    #expect(up == "from the school")
    // The county's metrics show its sync loop at work and nothing waiting to go up.
    let metrics = try await MetricsTests.get("http://127.0.0.1:\(countyNode.port)/metrics")
    #expect(metrics.status == 200)
    #expect(MetricsTests.value("eduhub_sync_last_success_timestamp_seconds", in: metrics.body).map { $0 > 1_700_000_000 } == true)
    #expect(MetricsTests.value(#"eduhub_sync_runs_total{outcome="ok"}"#, in: metrics.body).map { $0 >= 1 } == true)
    #expect(MetricsTests.value("eduhub_sync_pending_writes", in: metrics.body) != nil)
    // Central sees the county below it: when it last pulled, and how far behind it is.
    let centralMetrics = try await MetricsTests.get("http://127.0.0.1:\(centralNode.port)/metrics").body
    #expect(MetricsTests.value(#"eduhub_sync_downstream_last_pull_timestamp_seconds{node="county-511703"}"#, in: centralMetrics).map { $0 > 1_700_000_000 } == true)
    #expect(MetricsTests.value(#"eduhub_sync_downstream_behind_changes{node="county-511703"}"#, in: centralMetrics) != nil)
    #expect(schoolNode.stop() == 0)
    #expect(countyNode.stop() == 0)
    #expect(centralNode.stop() == 0)
  }
}
