import EduHubStorage
import Foundation
import GRDB
import Testing

/// A port nothing listens on now (the kernel's pick), for a node about to be started.
func freePort() -> Int {
  let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  defer { close(descriptor) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  address.sin_port = 0
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
  _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// Runs `eduhub` with `arguments` until it succeeds, for up to a minute: a node still starting
/// (slowly, on a machine busy with the other suites) answers UNAVAILABLE.
func retrying(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
  var last = (status: Int32(1), output: "", errors: "")
  let deadline = Date().addingTimeInterval(60)
  while Date() < deadline {
    last = try run(arguments)
    if last.status == 0 || !(last.errors.contains("UNAVAILABLE") || last.errors.contains("DEADLINE_EXCEEDED")) { return last }
    usleep(200_000)
  }
  return last
}

/// `eduhub init | seed | user | grant | audit verify` on a real data directory, as an operator runs them.
@Suite("Node data commands", .serialized)
struct NodeDataCommandTests {
  func withEnvironment(_ name: String, _ value: String, _ body: () throws -> Void) throws {
    setenv(name, value, 1)
    defer { unsetenv(name) }
    try body()
  }

  @Test("init, seed, user and grant build a node; init refuses to overwrite; keys are private")
  func buildANode() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-node-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data, "--node-id", "county-511702", "--scope", "511700/511702", "--role", "county"]).status == 0)
    let again = try run(["init", "--data", data])
    #expect(again.status != 0 && again.errors.contains("already holds a node"))
    let attributes = try FileManager.default.attributesOfItem(atPath: data + "/keys/node.key")
    #expect((attributes[.posixPermissions] as? Int) == 0o600)

    let seeded = try run(["seed", "--data", data, "--scale", "small"])
    #expect(seeded.status == 0, "\(seeded.errors)")
    #expect(seeded.output.contains("14 schools"))
    try withEnvironment("EDUHUB_TEST_PW", "a long enough passphrase") { () throws in
      let user = try run(["user", "--data", data, "--username", "admin", "--password-env", "EDUHUB_TEST_PW", "--role", "city-admin"])
      #expect(user.status == 0, "\(user.errors)")
      let duplicate = try run(["user", "--data", data, "--username", "admin", "--password-env", "EDUHUB_TEST_PW"])
      #expect(duplicate.status != 0 && duplicate.errors.contains("taken"))
      let weak = try run(["user", "--data", data, "--username", "weak", "--password-env", "EDUHUB_TEST_PW_MISSING"])
      #expect(weak.status != 0 && weak.errors.contains("holds no password"))
    }
    let granted = try run(["grant", "--data", data, "--username", "admin", "--role", "auditor", "--org", "511700"])
    #expect(granted.status == 0, "\(granted.errors)")
    let unknownRole = try run(["grant", "--data", data, "--username", "admin", "--role", "king", "--org", "511700"])
    #expect(unknownRole.status != 0)
    let verified = try run(["audit", "verify", "--data", data])
    #expect(verified.status == 0 && verified.output.contains("intact"))
    // No personal data in the database file in the clear.
    let raw = try Data(contentsOf: URL(fileURLWithPath: data + "/eduhub.db"))
    #expect(raw.range(of: Data("四川省达州市".utf8)) == nil)
  }

  @Test("audit verify exits 1 when an entry was changed behind the node's back")
  func auditTampering() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-node-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data]).status == 0)
    #expect(try run(["seed", "--data", data]).status == 0)
    try withEnvironment("EDUHUB_TEST_PW", "a long enough passphrase") { () throws in
      #expect(try run(["user", "--data", data, "--username", "admin", "--password-env", "EDUHUB_TEST_PW", "--role", "city-admin"]).status == 0)
    }
    // Someone with the database key (but not the audit key) edits the log.
    let database = try EncryptedDatabase.open(path: data + "/eduhub.db", key: .keyFile(data + "/keys/db.key"))
    try database.write { db in try db.execute(sql: "UPDATE audit_event SET actor = 'someone-else' WHERE sequence = 1") }
    try database.close()
    let verified = try run(["audit", "verify", "--data", data])
    #expect(verified.status == 1)
    #expect(verified.output.contains("BROKEN at entry 1"))
  }

  @Test("a node with data refuses Ping without a token; eduhub ping --token-env passes one")
  func pingNeedsAToken() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-node-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data]).status == 0)
    try withEnvironment("EDUHUB_TEST_PW", "a long enough passphrase") { () throws in
      #expect(try run(["user", "--data", data, "--username", "admin", "--password-env", "EDUHUB_TEST_PW", "--org", "EDU"]).status != 0)
      #expect(try run(["seed", "--data", data]).status == 0)
      #expect(try run(["user", "--data", data, "--username", "admin", "--password-env", "EDUHUB_TEST_PW"]).status == 0)
    }
    let port = freePort()
    let server = Process()
    server.executableURL = binary
    server.arguments = ["serve", "--data", data, "--listen", "127.0.0.1:\(port)", "--log-level", "warning"]
    try server.run()
    defer { if server.isRunning { server.terminate() } }
    var token = ""
    try withEnvironment("EDUHUB_TEST_PW", "a long enough passphrase") { () throws in
      for _ in 0..<100 {
        let login = try run(["login", "127.0.0.1:\(port)", "--login", "admin", "--password-env", "EDUHUB_TEST_PW"])
        if login.status == 0 {
          token = login.output.trimmingCharacters(in: .whitespacesAndNewlines)
          break
        }
        usleep(100_000)
      }
    }
    #expect(token.hasPrefix("v4.public."))
    let refused = try run(["ping", "127.0.0.1:\(port)", "--count", "1"])
    #expect(refused.status != 0 && refused.errors.contains("UNAUTHENTICATED"))
    try withEnvironment("EDUHUB_TEST_TOKEN", token) { () throws in
      let pinged = try run(["ping", "127.0.0.1:\(port)", "--count", "1", "--token-env", "EDUHUB_TEST_TOKEN"])
      #expect(pinged.status == 0, "\(pinged.errors)")
    }
    server.terminate()
    server.waitUntilExit()
    #expect(server.terminationStatus == 0)
  }

  @Test("a county node enrolls with central, syncs its county, reports its status, and fails clearly when central is down")
  func enrollAndSync() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-tiers-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    let central = root + "/central"
    let county = root + "/county"
    #expect(try run(["init", "--data", central]).status == 0)
    #expect(try run(["seed", "--data", central]).status == 0)
    let created = try run(["node", "create", "--data", central, "--node-id", "county-511702", "--org", "511702"])
    #expect(created.status == 0, "\(created.errors)")
    let token = try #require(created.output.split(separator: "\n").last.map(String.init))
    #expect(token.hasPrefix("county-511702."))

    let port = freePort()
    let server = Process()
    server.executableURL = binary
    server.arguments = ["serve", "--data", central, "--listen", "127.0.0.1:\(port)", "--log-level", "warning"]
    try server.run()
    defer { if server.isRunning { server.terminate() } }
    let enrolled = try retrying(["init", "--data", county, "--role", "county", "--upstream", "127.0.0.1:\(port)", "--enroll", token])
    #expect(enrolled.status == 0, "\(enrolled.errors)")
    #expect(enrolled.output.contains("for 511700/511702"))
    // The region's pseudonym key came with the enrollment (and is private on disk).
    #expect(
      FileManager.default.contents(atPath: county + "/keys/pseudonym.key")
        == FileManager.default.contents(atPath: central + "/keys/pseudonym.key"))
    #expect((try FileManager.default.attributesOfItem(atPath: county + "/keys/pseudonym.key")[.posixPermissions] as? Int) == 0o600)
    // The token was used: a second enrollment is refused and leaves nothing behind.
    let again = try run(["init", "--data", root + "/again", "--upstream", "127.0.0.1:\(port)", "--enroll", token])
    #expect(again.status != 0 && again.errors.contains("UNAUTHENTICATED"))
    #expect(!FileManager.default.fileExists(atPath: root + "/again"))

    let synced = try run(["sync", "--data", county])
    #expect(synced.status == 0, "\(synced.errors)")
    #expect(synced.output.hasPrefix("pulled ") && synced.output.hasSuffix(" s\n"))
    let status = try run(["status", "--data", county])
    #expect(status.output.contains("first sync done"))
    #expect(status.output.contains("0 writes wait"))

    server.terminate()
    server.waitUntilExit()
    let offline = try run(["sync", "--data", county])
    #expect(offline.status != 0 && offline.errors.contains("UNAVAILABLE"))
  }

  @Test("a sync killed with SIGKILL mid-batch resumes where it stopped and ends identical to central")
  func killedMidSync() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-kill-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    let central = root + "/central"
    let county = root + "/county"
    #expect(try run(["init", "--data", central]).status == 0)
    #expect(try run(["seed", "--data", central]).status == 0)
    let created = try run(["node", "create", "--data", central, "--node-id", "county-511781", "--org", "511781"])
    let token = try #require(created.output.split(separator: "\n").last.map(String.init))
    let port = freePort()
    let server = Process()
    server.executableURL = binary
    server.arguments = ["serve", "--data", central, "--listen", "127.0.0.1:\(port)", "--log-level", "warning"]
    try server.run()
    defer { if server.isRunning { server.terminate() } }
    let enrolled = try retrying(["init", "--data", county, "--role", "county", "--upstream", "127.0.0.1:\(port)", "--enroll", token])
    try #require(enrolled.status == 0, "\(enrolled.errors)")
    // One record a batch (Wanyuan has the most schools of the small city), so the first sync takes
    // long enough to be killed in the middle of it.
    let syncing = Process()
    syncing.executableURL = binary
    syncing.arguments = ["sync", "--data", county, "--batch-records", "1"]
    syncing.standardOutput = FileHandle.nullDevice
    syncing.standardError = FileHandle.nullDevice
    try syncing.run()
    usleep(UInt32.random(in: 200_000...500_000))
    kill(syncing.processIdentifier, SIGKILL)
    syncing.waitUntilExit()
    #expect(syncing.terminationReason == .uncaughtSignal)
    let resumed = try run(["sync", "--data", county])
    #expect(resumed.status == 0, "\(resumed.errors)")
    let again = try run(["sync", "--data", county])
    #expect(again.output.contains("(0 new or newer, 0 merged"), "\(again.output)")
    server.terminate()
    server.waitUntilExit()

    func records(_ directory: String) throws -> Set<String> {
      let database = try EncryptedDatabase.open(path: directory + "/eduhub.db", key: .keyFile(directory + "/keys/db.key"))
      defer { try? database.close() }
      return try database.read { db in
        Set(
          try Row.fetchAll(
            db,
            sql: """
              SELECT collection, id, hex(body), hex(version) FROM record
              WHERE (scope = '511700/511781' OR scope LIKE '511700/511781/%') AND NOT deleted
                AND collection IN ('person', 'guardianship', 'org')
              """
          ).map { row in "\(row[0] as String)/\(row[1] as String)/\(row[2] as String)/\(row[3] as String)" })
      }
    }
    let atCentral = try records(central)
    #expect(atCentral.count > 500)
    #expect(try records(county) == atCentral)
  }

  @Test("eduhub catalog publish reads YAML and JSON; catalog import streams a CSV file; catalog search finds it")
  func catalogCommands() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-catalog-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data]).status == 0)
    #expect(try run(["seed", "--data", data]).status == 0)
    let definition = data + "/resource.json"
    try Data(
      """
      {"code": "teacher-data", "name": "教师基础数据", "theme": "teacher", "type": "RESOURCE_TYPE_FILE",
       "publishingSystem": "人事系统", "responsibleOrgCode": "511702", "exchangeForms": ["接口"],
       "sharingClass": "SHARING_CLASS_UNCONDITIONAL", "openingClass": "OPENING_CLASS_NOT_OPEN",
       "fields": [{"name": "phone", "type": "FIELD_TYPE_STRING", "description": "手机号",
                   "sensitivity": "SENSITIVITY_SENSITIVE", "masking": "MASKING_KIND_PHONE"}]}
      """.utf8
    ).write(to: URL(fileURLWithPath: definition))
    let published = try run(["catalog", "publish", "--data", data, definition])
    #expect(published.status == 0, "\(published.errors)")
    #expect(published.output.contains("published teacher-data"))
    let again = try run(["catalog", "publish", "--data", data, definition])
    #expect(again.status != 0 && again.errors.contains("already exists"))
    let found = try run(["catalog", "search", "--data", data, "教师"])
    #expect(found.output.contains("teacher-data"))
    // The seed published the bureau's resources too, with their datasets.
    #expect(try run(["catalog", "search", "--data", data, "学籍"]).output.contains("dz.student.basic"))
    let byField = try run(["catalog", "search", "--data", data, "手机"])
    #expect(byField.output.contains("teacher-data"))
    try Data("{\"code\": 5}".utf8).write(to: URL(fileURLWithPath: definition))
    let bad = try run(["catalog", "publish", "--data", data, definition])
    #expect(bad.status != 0 && bad.errors.contains("is not a resource definition"))

    // YAML, an ingested table, and a CSV file with a bad row in the middle.
    let yaml = data + "/canteen.yaml"
    try Data(
      """
      code: tc.canteen.inspection
      name: 食堂卫生检查
      summary: 学校食堂卫生检查结果
      theme: safety
      type: RESOURCE_TYPE_TABLE
      publishing_system: 食品安全平台
      responsible_org_code: "511702"
      exchange_forms: [数据库]
      sharing_class: SHARING_CLASS_UNCONDITIONAL
      opening_class: OPENING_CLASS_NOT_OPEN
      update_cycle: 每月
      fields:
        - {name: school_code, type: FIELD_TYPE_STRING, description: 学校标识码}
        - {name: inspected_on, type: FIELD_TYPE_DATE, description: 检查日期}
        - {name: score, type: FIELD_TYPE_INTEGER, description: 得分}
      dataset:
        ingested: {key_fields: [school_code, inspected_on]}
      """.utf8
    ).write(to: URL(fileURLWithPath: yaml))
    let fromYAML = try run(["catalog", "publish", "--data", data, yaml])
    #expect(fromYAML.status == 0, "\(fromYAML.errors)")
    let csv = data + "/canteen.csv"
    try Data(
      """
      school_code,inspected_on,score
      5117020001,2026-03-01,95
      5117020002,2026-03-01,ninety
      "5117020003",2026-03-02,88

      """.utf8
    ).write(to: URL(fileURLWithPath: csv))
    let imported = try run(["catalog", "import", "--data", data, "tc.canteen.inspection", csv])
    #expect(imported.status == 2, "\(imported.errors)")
    #expect(imported.output.contains("3 rows read: 2 upserted, 0 deleted, 1 rejected; tc.canteen.inspection holds 2 rows"))
    #expect(imported.output.contains("line 3") && imported.output.contains("score is not an integer"))
    // A file that stops being readable halfway (bytes that are not UTF-8 on line 4) fails the import
    // and names the line; it does not end quietly as if the file had ended there.
    var broken = Data("school_code,inspected_on,score\n5117020004,2026-04-01,90\n5117020005,2026-04-01,91\n".utf8)
    broken.append(contentsOf: [0xFF, 0xFE, 0x2C, 0x0A])
    broken.append(Data("5117020006,2026-04-01,92\n".utf8))
    try broken.write(to: URL(fileURLWithPath: data + "/broken.csv"))
    let unreadable = try run(["catalog", "import", "--data", data, "tc.canteen.inspection", data + "/broken.csv"])
    #expect(unreadable.status != 0 && unreadable.errors.contains("line 4") && unreadable.errors.contains("not UTF-8"), "\(unreadable.errors)")
    let missing = try run(["catalog", "import", "--data", data, "tc.canteen.inspection", data + "/nope.csv"])
    #expect(missing.status != 0 && missing.errors.contains("cannot read"))
  }

  @Test("eduhub orders: list, stats and sweep on a node, with a work calendar file; a bad one is refused clearly")
  func ordersCommands() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-orders-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data]).status == 0)
    #expect(try run(["seed", "--data", data]).status == 0)
    let list = try run(["orders", "list", "--data", data])
    #expect(list.status == 0 && list.output.contains("0 orders"))
    let calendar = data + "/calendar.yaml"
    try Data("years:\n  2027:\n    holidays: [2027-01-01]\ntargets:\n  P1: [30, 300]\n".utf8).write(to: URL(fileURLWithPath: calendar))
    let sweep = try run(["orders", "sweep", "--data", data, "--work-calendar", calendar])
    #expect(sweep.status == 0 && sweep.output.contains("closed 0"), "\(sweep.errors)")
    #expect(try run(["orders", "stats", "--data", data, "--org", "511702"]).output.contains("0 orders"))
    try Data("years:\n  2027:\n    holidays: [2026-05-01]\n".utf8).write(to: URL(fileURLWithPath: calendar))
    let bad = try run(["orders", "sweep", "--data", data, "--work-calendar", calendar])
    #expect(bad.status != 0 && bad.errors.contains("is not a date (YYYY-MM-DD) of 2027"), "\(bad.errors)")
    let missing = try run(["orders", "show", "--data", data, "WO-nope"])
    #expect(missing.status != 0 && missing.errors.contains("no work order"))
  }
}

extension NodeDataCommandTests {
  @Test("eduhub share: request, the two-step approval, grants, revoke; eduhub app: register, list, rotate, disable")
  func shareAndAppCommands() throws {
    let data = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-share-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: data) }
    #expect(try run(["init", "--data", data]).status == 0)
    // The seed fills the bureau's ingested tables from the seeded people (schools, scores, inspections).
    let seeded = try run(["seed", "--data", data]).output
    let rows = seeded.split(separator: "(").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
    #expect(seeded.contains("rows in their ingested tables") && rows > 14, "\(seeded)")
    // Students' names: the steward, then the city's data security officer.
    let asked = try run([
      "share", "request", "--data", data, "dz.student.basic", "--consumer", "511703", "--purpose", "学位预警", "--fields", "name,grade",
    ])
    #expect(asked.status == 0, "\(asked.errors)")
    #expect(asked.output.contains("pending-steward") && asked.output.contains("steward + security officer"))
    let id = try #require(asked.output.split(separator: " ").first.map(String.init))
    #expect(try run(["share", "requests", "--data", data]).output.contains(id))
    let first = try run(["share", "approve", "--data", data, id])
    #expect(first.status == 0 && first.output.contains("pending-security"), "\(first.errors)")
    let second = try run(["share", "approve", "--data", data, id, "--reason", "符合最小必要"])
    #expect(second.output.contains("approved") && second.output.contains("grant \(id) is active"))
    #expect(try run(["share", "grants", "--data", data]).output.contains("\(id)  active  dz.student.basic for 511703"))
    let revoked = try run(["share", "revoke", "--data", data, id, "--reason", "项目结束"])
    #expect(revoked.status == 0 && revoked.output.contains("revoked"))
    let again = try run(["share", "revoke", "--data", data, id, "--reason", "项目结束"])
    #expect(again.status != 0 && again.errors.contains("already revoked"))
    let notShared = try run(["share", "request", "--data", data, "dz.student.basic", "--consumer", "511703", "--purpose", "x", "--masking", "open"])
    #expect(notShared.status != 0 && notShared.errors.contains("--masking"))
    // An unconditional table: granted at once.
    let open = try run(["share", "request", "--data", data, "dz.school.annual", "--consumer", "511722", "--purpose", "规划"])
    #expect(open.output.contains("approved") && open.output.contains("shared unconditionally"))

    let registered = try run(["app", "register", "--data", data, "--name", "市大数据中心", "--org", "511700"])
    #expect(registered.status == 0, "\(registered.errors)")
    let clientID = try #require(registered.output.split(separator: "\n").first?.split(separator: " ").last.map(String.init))
    let secret = try #require(registered.output.split(separator: "\n").dropFirst().first?.split(separator: " ").last.map(String.init))
    #expect(clientID.hasPrefix("app-") && secret.count > 40)
    #expect(try run(["app", "list", "--data", data]).output.contains(clientID))
    let rotated = try run(["app", "rotate", "--data", data, clientID])
    #expect(rotated.status == 0 && !rotated.output.contains(secret))
    #expect(try run(["app", "disable", "--data", data, clientID]).output.contains("disabled"))
    #expect(try run(["app", "disable", "--data", data, "app-nothing"]).errors.contains("no application"))
  }
}
