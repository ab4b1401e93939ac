import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import Foundation
import Logging
import SwiftProtobuf
import Testing

/// An attacker owns a county node completely: its files, its keys, its database, its accounts.
/// Central is a real `eduhub serve` process; the county was enrolled with `eduhub init --enroll`
/// (masked); the attacker writes what it likes into the county's own database with the county's
/// own keys and runs `eduhub sync`, or pushes bytes of its choosing authenticated with the county's
/// key. Each attack must be refused, audited at central, and change nothing there.
@Suite("An owned county node gains nothing at central (real processes)", .serialized)
struct UntrustedEdgeProcessTests {
  static let password = "edge attack passphrase"
  static let countyScope = "511700/511702"

  /// Central serving a seeded city (with a city administrator who also audits, and Tongchuan's
  /// county administrator), and the county node enrolled with it and synced once.
  final class OwnedCounty {
    let root: String
    let central: String
    let county: String
    let server = Process()
    let port = freePort()

    init(clearance: String = "masked") throws {
      root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-edge-\(UUID())").path
      central = root + "/central"
      county = root + "/county"
      setenv("EDUHUB_EDGE_PW", UntrustedEdgeProcessTests.password, 1)
      try Self.expectOK(["init", "--data", central])
      try Self.expectOK(["seed", "--data", central])
      for (user, role, org) in [("admin", "city-admin", "511700"), ("tongchuan", "county-admin", "511702")] {
        try Self.expectOK(["user", "--data", central, "--username", user, "--password-env", "EDUHUB_EDGE_PW", "--role", role, "--org", org])
      }
      try Self.expectOK(["grant", "--data", central, "--username", "admin", "--role", "auditor", "--org", "511700"])
      let created = try run(["node", "create", "--data", central, "--node-id", "county-511702", "--org", "511702", "--clearance", clearance])
      guard created.status == 0, let token = created.output.split(separator: "\n").last.map(String.init) else {
        throw FailureText("node create: \(created.errors)")
      }
      server.executableURL = binary
      server.arguments = ["serve", "--data", central, "--listen", "127.0.0.1:\(port)", "--log-level", "error"]
      server.standardOutput = FileHandle.nullDevice
      server.standardError = FileHandle.nullDevice
      try server.run()
      let enrolled = try retrying(["init", "--data", county, "--role", "county", "--upstream", "127.0.0.1:\(port)", "--enroll", token])
      guard enrolled.status == 0 else { throw FailureText("enroll: \(enrolled.errors)") }
      try Self.expectOK(["sync", "--data", county])
    }

    static func expectOK(_ arguments: [String]) throws {
      let result = try run(arguments)
      guard result.status == 0 else { throw FailureText("eduhub \(arguments.prefix(2).joined(separator: " ")): \(result.errors)") }
    }

    func stop() {
      if server.isRunning {
        server.terminate()
        server.waitUntilExit()
      }
      try? FileManager.default.removeItem(atPath: root)
    }

    var rpc: RPCClient { RPCClient(host: "127.0.0.1", port: port) }

    /// The attacker at the county's console: its database, opened with its own key files.
    func ownCounty<T>(_ body: (OpenNode) throws -> T) async throws -> T {
      var logger = Logger(label: "attacker")
      logger.logLevel = .critical
      let node = try NodeData.load(county).open(logger: logger)
      do {
        let result = try body(node)
        await node.close()
        return result
      } catch {
        await node.close()
        throw error
      }
    }

    /// Writes `writes` into the county's database as the county (its own stamps), as any program
    /// on that machine could, then runs `eduhub sync` there: the push must be refused.
    func forgeAndSync(_ writes: [Replica.Write]) async throws -> String {
      try await ownCounty { node in _ = try node.replica.write(writes) }
      let synced = try run(["sync", "--data", county])
      #expect(synced.status != 0, "the forged push went through: \(synced.output)")
      #expect(synced.errors.contains("PERMISSION_DENIED") && synced.errors.contains("push refused"), "\(synced.errors)")
      return synced.errors
    }

    /// A push of raw records, authenticated with the county's own key.
    func pushRaw(_ records: [Eduhub_Sync_V1_SyncRecord]) async throws {
      let key = try SigningKey(seed: try NodeData.load(county).key("node"))
      let client = try await ownCounty { node in
        SyncClient(nodeID: "county-511702", signingKey: key, store: node.identity.store, upstream: rpc)
      }
      let token = try await client.authenticate()
      var push = Eduhub_Sync_V1_PushRequest()
      push.nodeID = "county-511702"
      push.records = records
      push.throughSequence = 1
      let options = CallOptions(timeout: .seconds(30), metadata: ["authorization": .string("Bearer " + token)])
      _ = try await Eduhub_Sync_V1_SyncService.Client(client.upstreamRPC).push(options: options) { try await $0.write(push) }
    }

    func login(_ user: String) async throws -> CallOptions {
      var request = Eduhub_Identity_V1_LoginRequest()
      request.login = user
      request.password = UntrustedEdgeProcessTests.password
      let pair = try await Eduhub_Identity_V1_IdentityService.Client(rpc).login(request, options: CallOptions(timeout: .seconds(30)))
      return CallOptions(timeout: .seconds(30), metadata: ["authorization": .string("Bearer " + pair.accessToken)])
    }

    /// Central's refused pushes, as its audit log has them.
    func refusedPushes() async throws -> [Eduhub_Identity_V1_AuditEvent] {
      var request = Eduhub_Identity_V1_ListAuditEventsRequest()
      request.action = "sync.Push"
      request.outcome = "denied"
      request.limit = 1000
      return try await Eduhub_Identity_V1_IdentityService.Client(rpc).listAuditEvents(request, options: try await login("admin")).events
    }

    /// An account id at central (read through the county's replica, which holds the same ids).
    func accountID(_ username: String) async throws -> String {
      return try await Eduhub_Identity_V1_IdentityService.Client(rpc).whoAmI(options: try await login(username)).accountID
    }
  }

  struct FailureText: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
  }

  func withCounty(clearance: String = "masked", _ body: (OwnedCounty) async throws -> Void) async throws {
    let county = try OwnedCounty(clearance: clearance)
    defer { county.stop() }
    try await body(county)
  }

  static func record<M: Message>(_ collection: String, _ id: String, scope: String, _ body: M) throws -> Replica.Write {
    Replica.Write(collection: collection, id: id, scope: scope, body: try body.serializedBytes())
  }

  @Test("session forgery: a session naming the city administrator, pushed by the county, is refused; Refresh gets nothing")
  func sessionForgery() async throws {
    try await withCounty { county in
      let admin = try await county.accountID("admin")
      let secret = "attacker-chosen-secret"
      var session = Eduhub_Identity_V1_SessionRecord()
      session.id = "Sforged"
      session.accountID = admin
      session.createdMs = Int64(Date().timeIntervalSince1970 * 1000)
      session.expiresMs = session.createdMs + 86_400_000
      session.refreshHash = IdentityService.secretDigest(secret)
      let errors = try await county.forgeAndSync([try Self.record(IdentityCollections.session.name, "Sforged", scope: Self.countyScope, session)])
      #expect(errors.contains("session Sforged"))
      var refresh = Eduhub_Identity_V1_RefreshRequest()
      refresh.refreshToken = "Sforged." + secret
      await expectCode(.unauthenticated) { _ = try await Eduhub_Identity_V1_IdentityService.Client(county.rpc).refresh(refresh) }
      #expect(try await county.refusedPushes().contains { $0.target == "county-511702" && $0.detail.contains("session") })
      let status = try run(["status", "--data", county.central])
      #expect(status.output.contains("REFUSED 1 push(es) from node county-511702"), "\(status.output)")
    }
  }

  @Test("grant forgery: a CLEAR grant of every student, pushed by the county, is refused; the county admin still cannot subscribe")
  func grantForgery() async throws {
    try await withCounty { county in
      var grant = Eduhub_Sharing_V1_Grant()
      grant.id = "Rforged"
      grant.terms.resourceCode = "dz.student.basic"
      grant.terms.consumer.kind = .org
      grant.terms.consumer.id = "511702"
      grant.terms.masking = .clear
      grant.terms.expiresMs = Int64(Date().timeIntervalSince1970 * 1000) + 86_400_000
      grant.terms.ratePerSecond = 100
      grant.terms.dailyQuota = 1000
      grant.state = .active
      grant.consumerPath = Self.countyScope
      let errors = try await county.forgeAndSync([try Self.record("share_grant", "Rforged", scope: Self.countyScope, grant)])
      #expect(errors.contains("grant Rforged"))
      var subscribe = Eduhub_Sharing_V1_SubscribeRequest()
      subscribe.resourceCode = "dz.student.basic"
      subscribe.consumerID = "511702"
      let options = try await county.login("tongchuan")
      await expectCode(.permissionDenied) {
        try await Eduhub_Sharing_V1_SharingService.Client(county.rpc).subscribe(subscribe, options: options) { stream in
          for try await _ in stream {}
        }
      }
      #expect(try await county.refusedPushes().contains { $0.detail.contains("grant Rforged") })
    }
  }

  @Test("node forgery: a masked county registering a CLEAR node of its own is refused, and cannot authenticate as it")
  func nodeForgery() async throws {
    try await withCounty { county in
      let key = SigningKey()
      var stored = Eduhub_Sync_V1_SyncNodeRecord()
      // A node for one of its schools (one at its own level is refused before its clearance is judged).
      stored.node.id = "county-shadow"
      stored.node.orgCode = "5117020001"
      stored.node.clearance = .clear
      stored.node.state = .active
      stored.node.publicKey = Data(key.publicKey)
      let errors = try await county.forgeAndSync([
        try Self.record(SyncCollections.node.name, "county-shadow", scope: Self.countyScope + "/511702001/5117020001", stored)
      ])
      #expect(errors.contains("clearance is at most its creator's"))
      let shadow = SyncClient(
        nodeID: "county-shadow", signingKey: key,
        store: NodeStore(replica: try await county.ownCounty { $0.replica }), upstream: county.rpc)
      await expectCode(.unauthenticated) { _ = try await shadow.authenticate() }
    }
  }

  @Test("a vector counter at 2^64-1 is refused at the door; central keeps serving, and a poisoned replica record errs instead of trapping")
  func vectorOverflow() async throws {
    try await withCounty { county in
      let admin = try await county.ownCounty { node in
        try #require(try node.replica.store.find(IdentityCollections.account, index: "username", key: "tongchuan").first)
      }
      var record = Eduhub_Sync_V1_SyncRecord()
      record.collection = IdentityCollections.account.name
      record.id = admin.id
      record.scope = admin.scope
      record.body = Data(admin.body)
      record.version = Data(ReplicationEncoding.encode(VersionVector(["test-central": UInt64.max, "county-511702": 1])))
      record.stamps = Data(admin.stamps)
      await expectCode(.invalidArgument) { try await county.pushRaw([record]) }
      // Central still serves, and an anonymous wrong-password login for that account is an answer.
      var login = Eduhub_Identity_V1_LoginRequest()
      login.login = "tongchuan"
      login.password = "not the password at all"
      await expectCode(.unauthenticated) { _ = try await Eduhub_Identity_V1_IdentityService.Client(county.rpc).login(login) }
      _ = try await county.login("tongchuan")
      // A record already poisoned in a replica file: the next local write to it is an error.
      try await county.ownCounty { node in
        var poisoned = admin
        poisoned.version = ReplicationEncoding.encode(VersionVector(["county-511702": UInt64.max]))
        try node.replica.store.database.write { db in _ = try node.replica.store.put([poisoned], in: db) }
        #expect(throws: (any Error).self) {
          _ = try node.replica.write([.init(collection: IdentityCollections.account.name, id: admin.id, scope: admin.scope, body: admin.body)])
        }
      }
    }
  }

  @Test("a county administrator, who reads children masked, cannot make a CLEAR node over RPC")
  func clearNodeByMaskedAdmin() async throws {
    try await withCounty { county in
      var create = Eduhub_Sync_V1_CreateNodeRequest()
      create.nodeID = "county-laptop"
      create.orgCode = "511702"
      create.clearance = .clear
      let options = try await county.login("tongchuan")
      await expectCode(.permissionDenied) {
        _ = try await Eduhub_Sync_V1_SyncService.Client(county.rpc).createNode(create, options: options)
      }
      // Masked, it may: it then reads no more than its maker.
      create.clearance = .masked
      let created = try await Eduhub_Sync_V1_SyncService.Client(county.rpc).createNode(create, options: options)
      #expect(created.node.clearance == .masked)
    }
  }

  @Test("rows of an ingested table with personal columns reach a masked county node masked")
  func maskedRows() async throws {
    try await withCounty { county in
      let yaml = county.root + "/pupils.yaml"
      try Data(
        """
        code: tc.pupil.health
        name: 学生体检
        theme: health
        type: RESOURCE_TYPE_TABLE
        publishing_system: 体检系统
        responsible_org_code: "511702"
        exchange_forms: [数据库]
        sharing_class: SHARING_CLASS_CONDITIONAL
        opening_class: OPENING_CLASS_NOT_OPEN
        fields:
          - {name: pupil_no, type: FIELD_TYPE_STRING, description: 学号}
          - {name: pupil_name, type: FIELD_TYPE_STRING, description: 姓名, sensitivity: SENSITIVITY_SENSITIVE, masking: MASKING_KIND_NAME}
          - {name: phone, type: FIELD_TYPE_STRING, description: 家长电话, sensitivity: SENSITIVITY_SENSITIVE, masking: MASKING_KIND_PHONE}
        dataset:
          ingested: {key_fields: [pupil_no]}
        """.utf8
      ).write(to: URL(fileURLWithPath: yaml))
      try Data("pupil_no,pupil_name,phone\nP001,王小明,13800138000\n".utf8).write(to: URL(fileURLWithPath: county.root + "/pupils.csv"))
      // Central is serving: the catalog commands write through its database file like any other
      // process of that machine, and the serving node sees them on its next read.
      try OwnedCounty.expectOK(["catalog", "publish", "--data", county.central, yaml])
      try OwnedCounty.expectOK(["catalog", "import", "--data", county.central, "tc.pupil.health", county.root + "/pupils.csv"])
      try OwnedCounty.expectOK(["sync", "--data", county.county])
      let stored = try await county.ownCounty { node in
        try #require(try node.replica.store.get("catalog_row", "tc.pupil.health|P001"))
      }
      let text = String(decoding: stored.body, as: UTF8.self)
      #expect(text.contains("P001"))
      #expect(!text.contains("王小明") && !text.contains("13800138000"), "a masked node holds a pupil's name or phone in clear")
      #expect(text.contains("王*") || text.contains("138****8000"))
      // Nor does it hold the key that would reverse the pseudonyms of ID numbers.
      #expect(
        FileManager.default.contents(atPath: county.county + "/keys/pseudonym.key")
          != FileManager.default.contents(atPath: county.central + "/keys/pseudonym.key"))
    }
  }
}

/// Runs `body` and expects it to fail with `code`.
func expectCode(_ code: RPCError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async {
  do {
    try await body()
    Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
  } catch let error as RPCError {
    #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
  } catch {
    Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
  }
}
