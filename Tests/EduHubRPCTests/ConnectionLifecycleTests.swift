import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Foundation
import Testing

@Suite("Connection life cycle: shutdown, keepalive, idle, reconnect")
struct ConnectionLifecycleTests {
  @Test("graceful shutdown lets calls in flight finish, then refuses new connections")
  func gracefulShutdown() async throws {
    // A grace period no call here comes near: the drain must end because the calls did.
    var configuration = testServerConfiguration()
    configuration.shutdownGracePeriod = .seconds(60)
    let harness = try await Harness.start(configuration: configuration)
    let client = harness.client()
    _ = try await client.unary(EchoService.unary, request: bytes("warm"), responseType: Bytes.self)
    let calls = Task {
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for index in 0..<20 {
          group.addTask {
            let reply = try await client.unary(EchoService.unary, request: bytes("sleep:300"), responseType: Bytes.self)
            return reply.value == Data("sleep:300".utf8) && index >= 0
          }
        }
        var ok = 0
        for try await matched in group where matched { ok += 1 }
        return ok
      }
    }
    try await eventually { harness.echo.observed.withLock { $0.active } == 20 }
    let outcome = await harness.server.shutdownGracefully()
    #expect(outcome.connectionsCut == 0)
    #expect(try await calls.value == 20)
    let error = await rpcError {
      _ = try await harness.client().unary(EchoService.unary, request: bytes("late"), responseType: Bytes.self)
    }
    #expect(error?.code == .unavailable)
    await client.close()
  }

  @Test("after the grace period, calls still running are cut")
  func gracePeriodOver() async throws {
    var configuration = testServerConfiguration()
    configuration.shutdownGracePeriod = .milliseconds(200)
    let harness = try await Harness.start(configuration: configuration)
    let client = harness.client()
    let call = Task { try await client.unary(EchoService.hang, request: bytes("x"), responseType: Bytes.self) }
    try await eventually { harness.echo.observed.withLock { $0.active } == 1 }
    let outcome = await harness.server.shutdownGracefully()
    #expect(outcome.connectionsCut == 1)
    let result = await call.result
    if case .failure(let error as RPCError) = result {
      #expect(error.code == .unavailable || error.code == .cancelled)
    } else {
      Issue.record("the call should have been cut: \(result)")
    }
    try await eventually { harness.echo.observed.withLock { $0.cancelled } == 1 }
  }

  @Test("a peer that never answers pings is disconnected")
  func keepaliveTimeout() async throws {
    var configuration = testServerConfiguration()
    configuration.keepaliveInterval = .milliseconds(100)
    configuration.keepaliveTimeout = .milliseconds(200)
    try await withHarness(configuration: configuration) { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      // The client preface and an empty SETTINGS frame, then silence: PINGs go unanswered.
      raw.sendRaw(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0])
      let received = await raw.readUntilClosed(timeout: 30)
      #expect(raw.peerClosed)
      // Somewhere in what the server sent is a PING frame (type 6).
      #expect(containsFrame(type: 6, in: received))
    }
  }

  @Test("a client that answers pings keeps its idle connection until the idle timeout")
  func idleTimeoutAndReconnect() async throws {
    var configuration = testServerConfiguration()
    configuration.keepaliveInterval = .milliseconds(50)
    // Long enough that a loaded machine still sees the connection open right after the call.
    configuration.idleTimeout = .milliseconds(1500)
    try await withHarness(configuration: configuration) { harness in
      let client = harness.client()
      _ = try await client.unary(EchoService.unary, request: bytes("one"), responseType: Bytes.self)
      #expect(harness.server.connectionCount == 1)
      try await eventually(timeout: .seconds(60)) { harness.server.connectionCount == 0 }
      // The client notices and reconnects for the next call.
      let reply = try await client.unary(EchoService.unary, request: bytes("two"), responseType: Bytes.self)
      #expect(reply.value == Data("two".utf8))
      await client.close()
    }
  }

  @Test("a client survives a server restart on the same port")
  func reconnectAfterRestart() async throws {
    let first = try await Harness.start()
    let port = first.port
    let client = first.client()
    _ = try await client.unary(EchoService.unary, request: bytes("a"), responseType: Bytes.self)
    await first.stop()
    let error = await rpcError {
      _ = try await client.unary(EchoService.unary, request: bytes("b"), responseType: Bytes.self)
    }
    #expect(error?.code == .unavailable)
    let second = RPCServer(services: [EchoService()], configuration: testServerConfiguration(), logger: .init(label: "t"))
    _ = try await second.start(host: "127.0.0.1", port: port)
    let reply = try await client.unary(EchoService.unary, request: bytes("c"), responseType: Bytes.self)
    #expect(reply.value == Data("c".utf8))
    await client.close()
    await second.shutdownGracefully()
  }

  @Test("connecting to a closed port is UNAVAILABLE with the address in the message")
  func connectionRefused() async throws {
    let harness = try await Harness.start()
    let port = harness.port
    await harness.stop()
    let client = RPCClient(host: "127.0.0.1", port: port)
    let error = await rpcError {
      _ = try await client.unary(EchoService.unary, request: bytes("x"), responseType: Bytes.self)
    }
    #expect(error?.code == .unavailable)
    #expect(error?.message.contains("127.0.0.1:\(port)") == true)
  }

  @Test("binding a port in use fails with a clear error")
  func portInUse() async throws {
    try await withHarness { harness in
      let second = RPCServer(services: [], logger: .init(label: "t"))
      let error = await rpcError { _ = try await second.start(host: "127.0.0.1", port: harness.port) }
      #expect(error?.code == .unavailable)
      #expect(error?.message.contains("cannot listen on 127.0.0.1:\(harness.port)") == true)
    }
  }
}

/// Whether `bytes` (after the server's first frames) holds an HTTP/2 frame of `type`.
func containsFrame(type: UInt8, in bytes: [UInt8]) -> Bool {
  var index = 0
  while index + 9 <= bytes.count {
    let length = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
    if bytes[index + 3] == type { return true }
    index += 9 + length
  }
  return false
}
