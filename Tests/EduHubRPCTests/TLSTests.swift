import EduHubRPC
import Foundation
import SwiftProtobuf
import Testing

@Suite("TLS with ALPN h2")
struct TLSTests {
  @Test("a client trusting the CA file calls over TLS; one that does not trust it cannot")
  func selfSigned() async throws {
    let (cert, key) = try makeSelfSignedCertificate()
    let tls = try ServerTLSConfiguration(certificateChainFile: cert, privateKeyFile: key)
    try await withHarness(tls: tls) { harness in
      let trusted = RPCClient(host: "localhost", port: harness.port, tls: try ClientTLSConfiguration(caFile: cert))
      let reply = try await trusted.unary(EchoService.unary, request: bytes("secret"), responseType: Bytes.self)
      #expect(reply.value == Data("secret".utf8))
      await trusted.close()

      let untrusted = RPCClient(host: "localhost", port: harness.port, tls: try ClientTLSConfiguration())
      let error = await rpcError {
        _ = try await untrusted.unary(EchoService.unary, request: bytes("x"), options: CallOptions(timeout: .seconds(60)), responseType: Bytes.self)
      }
      #expect(error?.code == .unavailable)
      await untrusted.close()

      // A plaintext client gets no answer it could mistake for gRPC.
      let plain = RPCClient(host: "127.0.0.1", port: harness.port)
      let plainError = await rpcError {
        _ = try await plain.unary(EchoService.unary, request: bytes("x"), options: CallOptions(timeout: .seconds(60)), responseType: Bytes.self)
      }
      #expect(plainError != nil)
      await plain.close()
    }
  }

  @Test("unusable certificate files give one clear error")
  func badFiles() throws {
    #expect(throws: RPCError.self) {
      try ServerTLSConfiguration(certificateChainFile: "/nonexistent.pem", privateKeyFile: "/nonexistent.pem")
    }
    let garbage = FileManager.default.temporaryDirectory.appendingPathComponent("garbage-\(UUID()).pem").path
    try "not a certificate".write(toFile: garbage, atomically: true, encoding: .utf8)
    do {
      _ = try ServerTLSConfiguration(certificateChainFile: garbage, privateKeyFile: garbage)
      Issue.record("garbage accepted")
    } catch let error as RPCError {
      #expect(error.message == "cannot read certificate \(garbage): not a readable PEM certificate")
    }
  }
}

/// A fresh self-signed certificate for localhost and 127.0.0.1, made with the openssl command.
func makeSelfSignedCertificate() throws -> (cert: String, key: String) {
  let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-tls-\(UUID())")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  let cert = directory.appendingPathComponent("cert.pem").path
  let key = directory.appendingPathComponent("key.pem").path
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
  process.arguments = [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
    "-subj", "/CN=localhost", "-keyout", key, "-out", cert, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]
  process.standardOutput = FileHandle.nullDevice
  process.standardError = FileHandle.nullDevice
  try process.run()
  process.waitUntilExit()
  guard process.terminationStatus == 0 else { throw RPCError(.internalError, "openssl failed") }
  return (cert, key)
}
