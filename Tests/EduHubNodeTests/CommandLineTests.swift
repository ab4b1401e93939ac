import Foundation
import EduHubStorage
import GRDB

#if canImport(Glibc)
  import Glibc
#endif
import Testing

/// The `eduhub` binary as a user runs it.
@Suite("The eduhub command", .serialized)
struct CommandLineTests {
  @Test("--help explains the command and its subcommands")
  func help() throws {
    let result = try run(["--help"])
    #expect(result.status == 0)
    #expect(result.output.contains("EduHub: the data backbone of a regional education system."))
    #expect(result.output.contains("serve"))
    #expect(result.output.contains("ping"))
  }

  @Test("serve --help documents the listen address and TLS")
  func serveHelp() throws {
    let result = try run(["serve", "--help"])
    #expect(result.status == 0)
    #expect(result.output.contains("--listen <listen>"))
    #expect(result.output.contains("--tls-cert"))
  }

  @Test("a malformed address is refused with a clear first line")
  func badAddress() throws {
    let result = try run(["serve", "--listen", "nonsense"])
    #expect(result.status != 0)
    #expect(result.errors.split(separator: "\n").first == "Error: invalid address \"nonsense\": expected HOST:PORT")
  }

  @Test("the web console is served in plaintext only on loopback")
  func consoleNeedsTLSOffLoopback() throws {
    let result = try run(["serve", "--data", "/nonexistent", "--console-listen", "0.0.0.0:8443"])
    #expect(result.status != 0)
    #expect(result.errors.hasPrefix("Error: --console-listen on 0.0.0.0 needs --tls-cert and --tls-key"), "\(result.errors)")
  }

  @Test("an unknown flag is refused")
  func unknownFlag() throws {
    let result = try run(["serve", "--bogus"])
    #expect(result.status != 0)
    #expect(result.errors.hasPrefix("Error: Unknown option '--bogus'"))
  }

  @Test("an option with a fixed set of values refuses any other and names the set", arguments: [
    (["serve", "--role", "capital"], "Please provide one of 'central', 'county' or 'school'"),
    (["seed", "--data", "/nonexistent", "--scale", "huge"], "Please provide one of 'small' and 'city'"),
    (["grant", "--data", "/nonexistent", "--username", "u", "--org", "1", "--role", "king"], "city-admin"),
    (["share", "request", "--data", "/nonexistent", "--resource", "r", "--consumer", "c", "--purpose", "p", "--masking", "blurred"], "de-identified"),
    (["node", "create", "--data", "/nonexistent", "--node-id", "n", "--org", "1", "--clearance", "half"], "'clear' and 'masked'"),
  ])
  func fixedValues(arguments: [String], named: String) throws {
    let result = try run(arguments)
    #expect(result.status != 0)
    #expect(result.errors.hasPrefix("Error: The value"), "\(result.errors)")
    #expect(result.errors.contains(named), "\(result.errors)")
  }

  @Test("a missing certificate is one line and a non-zero exit")
  func missingCertificate() throws {
    let result = try run(["serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"])
    #expect(result.status != 0)
    #expect(result.errors == "Error: cannot read certificate /nonexistent.pem: not a readable PEM certificate\n")
  }

  @Test("--tls-cert without --tls-key is refused")
  func halfTLS() throws {
    let result = try run(["serve", "--tls-cert", "/x.pem"])
    #expect(result.status != 0)
    #expect(result.errors.contains("--tls-cert and --tls-key go together"))
  }

  @Test("ping to a closed port fails with UNAVAILABLE in one line")
  func pingClosedPort() throws {
    let result = try run(["ping", "127.0.0.1:1", "--count", "1"])
    #expect(result.status != 0)
    #expect(result.errors == "Error: 127.0.0.1:1: UNAVAILABLE: cannot connect to 127.0.0.1:1: connection refused\n")
  }

  @Test("serve answers ping, refuses a second bind of its port, and exits 0 on SIGTERM")
  func serveAndPing() throws {
    let port = freePort()
    let server = Process()
    server.executableURL = binary
    server.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--node-id", "school-1", "--role", "school"]
    server.standardOutput = FileHandle.nullDevice
    let serverErrors = Pipe()
    server.standardError = serverErrors
    try server.run()
    defer { if server.isRunning { server.terminate() } }
    let pinged = try retrying(["ping", "127.0.0.1:\(port)", "--count", "2"])
    try #require(pinged.status == 0, "\(pinged.errors)")
    let output = pinged.output
    #expect(output.hasPrefix("node school-1 (school) scope \"\" version"))
    #expect(output.contains("ping 2: 100 bytes"))

    let second = try run(["serve", "--listen", "127.0.0.1:\(port)"])
    #expect(second.status != 0)
    #expect(second.errors.contains("Error: cannot listen on 127.0.0.1:\(port): address already in use"))

    kill(server.processIdentifier, SIGTERM)
    server.waitUntilExit()
    #expect(server.terminationStatus == 0)
    let log = String(decoding: serverErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(log.contains("graceful shutdown"))
  }
}

/// The built `eduhub` executable, next to the test bundle.
let binary: URL = {
  let bundleDirectory = Bundle.main.bundleURL
  let candidates = [
    bundleDirectory.appendingPathComponent("eduhub"),
    bundleDirectory.deletingLastPathComponent().appendingPathComponent("eduhub"),
  ]
  return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
}()

/// Runs `eduhub` with `arguments`, waiting for it to exit.
func run(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
  let process = Process()
  process.executableURL = binary
  process.arguments = arguments
  let output = Pipe()
  let errors = Pipe()
  process.standardOutput = output
  process.standardError = errors
  try process.run()
  let out = output.fileHandleForReading.readDataToEndOfFile()
  let err = errors.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}

@Suite("eduhub keygen and rekey")
struct RekeyCommandTests {
  @Test("rekey moves a database to a new key file; keygen refuses to overwrite")
  func rekey() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-cli-\(UUID())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let old = directory + "/old.key"
    let new = directory + "/new.key"
    #expect(try run(["keygen", old]).status == 0)
    #expect(try run(["keygen", new]).status == 0)
    #expect(try run(["keygen", new]).status != 0)
    let path = directory + "/node.sqlite"
    let database = try EncryptedDatabase.open(path: path, key: .keyFile(old), create: true)
    try database.write { db in
      try db.execute(sql: "CREATE TABLE t (v TEXT)")
      for index in 0..<100 { try db.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: ["学生\(index)"]) }
    }
    try database.close()
    let result = try run(["rekey", path, "--key-file", old, "--new-key-file", new])
    #expect(result.status == 0, "\(result.errors)")
    let reopened = try EncryptedDatabase.open(path: path, key: .keyFile(new))
    #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 100)
    try reopened.close()
    let wrong = try run(["rekey", path, "--key-file", old, "--new-key-file", new])
    #expect(wrong.status != 0)
    #expect(wrong.errors.contains("the key does not open"))
  }
}

@Suite("eduhub audit export, verify --archive and prune")
struct AuditCommandTests {
  @Test("a period exports to an archive that verifies; a retention under 184 days and a bad date are refused")
  func auditCommands() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-audit-cli-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    #expect(try run(["init", "--data", directory]).status == 0)
    #expect(try run(["seed", "--data", directory]).status == 0)
    setenv("EDUHUB_AUDIT_CLI_PW", "audit command passphrase", 1)
    defer { unsetenv("EDUHUB_AUDIT_CLI_PW") }
    // Two audited writes: the account and its role.
    let user = try run(["user", "--data", directory, "--username", "auditor1", "--password-env", "EDUHUB_AUDIT_CLI_PW", "--role", "auditor", "--org", "511700"])
    #expect(user.status == 0, "\(user.errors)")
    let archive = directory + "/audit.jsonl"
    let export = try run(["audit", "export", "--data", directory, "--since", "2020-01-01", "--until", "2100-01-01", "--to", archive])
    #expect(export.status == 0, "\(export.errors)")
    #expect(export.output.contains("exported 2 audit entries"), "\(export.output)")
    let verify = try run(["audit", "verify", "--data", directory, "--archive", archive])
    #expect(verify.status == 0 && verify.output.contains("audit archive intact"), "\(verify.output)\(verify.errors)")
    // A changed archive fails with exit 1.
    var text = try String(contentsOfFile: archive, encoding: .utf8)
    if let range = text.range(of: "\"outcome\":\"ok\"") { text.replaceSubrange(range, with: "\"outcome\":\"no\"") }
    try text.write(toFile: archive, atomically: true, encoding: .utf8)
    #expect(try run(["audit", "verify", "--data", directory, "--archive", archive]).status == 1)
    let short = try run(["audit", "prune", "--data", directory, "--retention-days", "100"])
    #expect(short.status != 0 && short.errors.contains("184"))
    let prune = try run(["audit", "prune", "--data", directory])
    #expect(prune.status == 0 && prune.output.contains("nothing older than 184 days"))
    #expect(try run(["audit", "export", "--data", directory, "--since", "2026-13-01", "--until", "2027-01-01", "--to", archive]).status != 0)
    #expect(try run(["audit", "verify", "--data", directory]).status == 0)
  }
}
