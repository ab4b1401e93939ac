import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Foundation
import Testing

@Suite("Hostile bytes on the socket: no crash, a clear answer, other clients unharmed")
struct HostileInputTests {
  @Test("garbage instead of the HTTP/2 preface closes that connection only")
  func garbage() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      var generator = SystemRandomNumberGenerator()
      raw.sendRaw((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
      _ = await raw.readUntilClosed(timeout: 30)
      #expect(raw.peerClosed)
      try await expectServing(harness)
    }
  }

  @Test("a bad preface that starts like HTTP/2 gets a GOAWAY and a close")
  func badPreface() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.sendRaw(Array("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0])
      _ = await raw.readUntilClosed(timeout: 30)
      #expect(raw.peerClosed)
      try await expectServing(harness)
    }
  }

  @Test("an HTTP/1.1 request gets a plain 505 answer explaining the port")
  func http1() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.sendRaw(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
      let answer = String(decoding: await raw.readUntilClosed(timeout: 30), as: UTF8.self)
      #expect(answer.hasPrefix("HTTP/1.1 505"))
      #expect(answer.contains("gRPC over HTTP/2"))
      try await expectServing(harness)
    }
  }

  @Test("a length prefix larger than the data sent is INTERNAL, not a hang")
  func truncatedMessage() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let id = raw.request(path: EchoService.unary.path, body: grpcFrame(announcedLength: 100, payload: Array(repeating: 1, count: 10)))
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "13")
      #expect(raw.responses[id]?.header("grpc-message") == "the request ended inside a message")
    }
  }

  @Test("a message that is not valid protobuf is INVALID_ARGUMENT")
  func undecodable() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let payload: [UInt8] = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
      let id = raw.request(path: EchoService.unary.path, body: grpcFrame(announcedLength: payload.count, payload: payload))
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "3")
    }
  }

  @Test("a compressed flag without grpc-encoding is INTERNAL")
  func compressedFlag() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      var frame = grpcFrame(announcedLength: 1, payload: [0])
      frame[0] = 1
      let id = raw.request(path: EchoService.unary.path, body: frame)
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "13")
    }
  }

  @Test("a non-gRPC content-type is answered 415")
  func wrongContentType() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let id = raw.request(path: EchoService.unary.path, body: [], contentType: "application/json")
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header(":status") == "415")
    }
  }

  @Test("two messages to a unary method are refused")
  func twoMessagesToUnary() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let one = grpcFrame(announcedLength: 0, payload: [])
      let id = raw.request(path: EchoService.unary.path, body: one + one)
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "12")
    }
  }

  @Test("a flood of stream resets ends that connection with ENHANCE_YOUR_CALM")
  func resetFlood() async throws {
    var configuration = testServerConfiguration()
    configuration.streamResetBurst = 50
    configuration.streamResetRatePerSecond = 10
    try await withHarness(configuration: configuration) { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      for _ in 0..<400 {
        let id = raw.request(path: EchoService.hang.path, body: grpcFrame(announcedLength: 0, payload: []))
        await raw.pump(timeout: 0.001) { false }
        raw.reset(id)
        await raw.pump(timeout: 0.001) { false }
        if raw.goawayCode != nil || raw.peerClosed { break }
      }
      await raw.pump(timeout: 30) { raw.goawayCode != nil }
      #expect(raw.goawayCode == 0xB)
      try await eventually { harness.echo.observed.withLock { $0.active } == 0 }
      try await expectServing(harness)
    }
  }
}

/// Checks that a fresh client is still served.
func expectServing(_ harness: Harness) async throws {
  let client = harness.client()
  let reply = try await client.unary(EchoService.unary, request: bytes("ok"), responseType: Bytes.self)
  #expect(reply.value == Data("ok".utf8))
  await client.close()
}
