import EduHubRPC
import Foundation
import SwiftProtobuf
import Testing

/// Answers every plain HTTP request with what it saw.
struct EchoHTTP: HTTPHandler {
  func handle(_ request: HTTPRequest) async -> HTTPResponse {
    let text = "\(request.method) \(request.path) \(request.version) q=\(request.query["q"] ?? "-") auth=\(request.header("authorization") ?? "-") body=\(String(decoding: request.body, as: UTF8.self))"
    return HTTPResponse(status: request.path == "/missing" ? 404 : 200, headers: [("content-type", "text/plain"), ("x-echo", "1")], body: Array(text.utf8))
  }
}

@Suite("Plain HTTP on the gRPC port (HTTP/1.1 and HTTP/2, plaintext and TLS)")
struct PlainHTTPTests {
  /// Runs curl on a thread of its own: waiting for it on the cooperative pool (two threads here)
  /// would starve the server's handlers, which run there.
  static func curl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
      Thread.detachNewThread {
        do {
          let process = Process()
          process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
          process.arguments = ["-sS", "--max-time", "30"] + arguments
          let pipe = Pipe()
          process.standardOutput = pipe
          process.standardError = FileHandle.nullDevice
          try process.run()
          let data = pipe.fileHandleForReading.readDataToEndOfFile()
          process.waitUntilExit()
          continuation.resume(returning: (process.terminationStatus, String(decoding: data, as: UTF8.self)))
        } catch {
          continuation.resume(throwing: error)
        }
      }
    }
  }

  static func configuration() -> ServerConfiguration {
    var configuration = testServerConfiguration()
    configuration.httpHandler = EchoHTTP()
    configuration.maxReceiveMessageSize = 64 * 1024
    return configuration
  }

  @Test("HTTP/1.1 (keep-alive, two requests on one connection) and HTTP/2 requests reach the handler; gRPC still works beside them")
  func plaintext() async throws {
    try await withHarness(configuration: Self.configuration()) { harness in
      let base = "http://127.0.0.1:\(harness.port)"
      let h1 = try await Self.curl(["--http1.1", "-H", "authorization: Bearer t", "-d", "hello", "\(base)/a?q=%E5%AD%A6+1", "\(base)/b"])
      #expect(h1.output == "POST /a HTTP/1.1 q=学 1 auth=Bearer t body=helloPOST /b HTTP/1.1 q=- auth=Bearer t body=hello")
      let h2 = try await Self.curl(["--http2-prior-knowledge", "-w", " %{http_code}", "\(base)/missing"])
      #expect(h2.output == "GET /missing HTTP/2 q=- auth=- body= 404")
      // Over the limit: 413, and nothing reaches the handler.
      let big = String(repeating: "x", count: 70 * 1024)
      for version in ["--http1.1", "--http2-prior-knowledge"] {
        let refused = try await Self.curl([version, "-o", "/dev/null", "-w", "%{http_code}", "-d", big, "\(base)/a"])
        #expect(refused.output == "413", "\(version)")
      }
      let client = harness.client()
      let reply = try await client.unary(EchoService.unary, request: bytes("still gRPC"), responseType: Bytes.self)
      #expect(reply.value == Data("still gRPC".utf8))
      await client.close()
    }
  }

  @Test("HTTPS: ALPN picks h2 or http/1.1 for a plain HTTP client")
  func tls() async throws {
    let (cert, key) = try makeSelfSignedCertificate()
    let tls = try ServerTLSConfiguration(certificateChainFile: cert, privateKeyFile: key)
    try await withHarness(configuration: Self.configuration(), tls: tls) { harness in
      for (version, expected) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let answer = try await Self.curl([version, "--cacert", cert, "-d", "over tls", "https://localhost:\(harness.port)/v1/x"])
        #expect(answer.status == 0 && answer.output == "POST /v1/x \(expected) q=- auth=- body=over tls", "\(version)")
      }
    }
  }
}
