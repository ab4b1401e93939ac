import EduHubRPC
import EduHubTestSupport
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Answers every plain HTTP request with what it saw.
struct EchoHTTP: HTTPHandler {
  func handle(_ request: HTTPRequest) async -> HTTPResponse {
    let text = "\(request.method) \(request.path) \(request.version) q=\(request.query["q"] ?? "-") auth=\(request.header("authorization") ?? "-") body=\(String(decoding: request.body, as: UTF8.self))"
    return HTTPResponse(status: request.path == "/missing" ? 404 : 200, headers: [("content-type", "text/plain"), ("x-echo", "1")], body: Array(text.utf8))
  }
}

/// Echoes, and takes at most 100 bytes of body on `/small`.
struct SmallBodies: HTTPHandler {
  func handle(_ request: HTTPRequest) async -> HTTPResponse { await EchoHTTP().handle(request) }
  func bodyLimit(method: String, path: Substring, headers: [(name: String, value: String)]) -> Int? { path == "/small" ? 100 : nil }
}

@Suite("Plain HTTP on the gRPC port (HTTP/1.1 and HTTP/2, plaintext and TLS)")
struct PlainHTTPTests {
  /// Runs curl (on a thread of its own: see ChildProcess), giving up after 30 seconds.
  static func curl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "30"] + arguments)
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

  @Test("a handler bounds a request's body from its head; all bodies together are bounded by the server's budget, which every request gives back")
  func bodyBounds() async throws {
    var configuration = Self.configuration()
    configuration.httpHandler = SmallBodies()
    configuration.httpBodyBudget = HTTPBodyBudget(limit: 8 * 1024)
    try await withHarness(configuration: configuration) { harness in
      let base = "http://127.0.0.1:\(harness.port)"
      for version in ["--http1.1", "--http2-prior-knowledge"] {
        let small = try await Self.curl([version, "-o", "/dev/null", "-w", "%{http_code}", "-d", String(repeating: "s", count: 200), "\(base)/small"])
        #expect(small.output == "413", "\(version): over the handler's limit")
        let fits = try await Self.curl([version, "-w", " %{http_code}", "-d", String(repeating: "f", count: 4096), "\(base)/fits"])
        #expect(fits.output.hasSuffix(" 200") && fits.output.contains("body=ffff"), "\(version)")
        let busy = try await Self.curl([version, "-o", "/dev/null", "-w", "%{http_code}", "-d", String(repeating: "b", count: 10_000), "\(base)/a"])
        #expect(busy.output == "503", "\(version): over the server's budget")
      }
      // Every byte taken was given back once the streams and requests ended.
      try await eventually(timeout: .seconds(10)) { configuration.httpBodyBudget.inUse == 0 }
      #expect(configuration.httpBodyBudget.inUse == 0)
    }
  }

  @Test("an idle HTTP/1.1 keep-alive connection is closed after the keep-alive timeout")
  func keepAliveTimeout() async throws {
    var configuration = Self.configuration()
    configuration.httpKeepAliveTimeout = .milliseconds(300)
    try await withHarness(configuration: configuration) { harness in
      let port = harness.port
      let closedAfter: Double = try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
          let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
          defer { close(descriptor) }
          // A server that never closes fails the test after 60 s rather than hanging it.
          var limit = timeval(tv_sec: 60, tv_usec: 0)
          setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
          var address = sockaddr_in()
          address.sin_family = sa_family_t(AF_INET)
          address.sin_port = in_port_t(UInt16(port).bigEndian)
          address.sin_addr.s_addr = inet_addr("127.0.0.1")
          let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
          }
          guard connected == 0 else { return continuation.resume(throwing: RPCError(.unavailable, "connect failed")) }
          let request = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
          _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
          var buffer = [UInt8](repeating: 0, count: 4096)
          let answered = recv(descriptor, &buffer, buffer.count, 0)
          guard answered > 0, String(decoding: buffer[..<answered], as: UTF8.self).hasPrefix("HTTP/1.1 200") else {
            return continuation.resume(throwing: RPCError(.internalError, "no answer"))
          }
          let start = Date()
          // The next read returns 0 when the server closes the idle connection.
          let closed = recv(descriptor, &buffer, buffer.count, 0)
          continuation.resume(returning: closed == 0 ? Date().timeIntervalSince(start) : -1)
        }
      }
      // The server closed it (a read timing out, at 60 s, is -1): its idle timer did, since the
      // client never would. How soon is a timer's business, not a loaded machine's test.
      #expect(closedAfter >= 0, "closed after \(closedAfter) s")
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
