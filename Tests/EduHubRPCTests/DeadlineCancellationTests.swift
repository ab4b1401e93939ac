import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Foundation
import Testing

@Suite("Deadlines and cancellation")
struct DeadlineCancellationTests {
  @Test("a deadline expires: the client gets DEADLINE_EXCEEDED and the handler is cancelled")
  func deadline() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.unary(
          EchoService.hang, request: bytes("x"), options: CallOptions(timeout: .milliseconds(200)), responseType: Bytes.self)
      }
      // The handler never answers: only the deadline can end the call.
      #expect(error?.code == .deadlineExceeded)
      // The handler counts its cancellation before its `defer` leaves: wait for both.
      try await eventually { harness.echo.observed.withLock { $0.cancelled == 1 && $0.active == 0 } }
      await client.close()
    }
  }

  @Test("the server enforces grpc-timeout even when the client does not reset the stream")
  func serverSideDeadline() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let payload: [UInt8] = [0x0A, 0x01, 0x78]
      let id = raw.request(path: EchoService.hang.path, body: grpcFrame(announcedLength: payload.count, payload: payload), timeout: "100m")
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "4")
      try await eventually { harness.echo.observed.withLock { $0.cancelled } == 1 }
    }
  }

  @Test("a malformed grpc-timeout is refused with INVALID_ARGUMENT")
  func malformedTimeout() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let id = raw.request(path: EchoService.unary.path, body: grpcFrame(announcedLength: 0, payload: []), timeout: "10x")
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "3")
    }
  }

  @Test("cancelling the caller's task resets the stream and cancels the handler")
  func cancellation() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let task = Task {
        try await client.unary(EchoService.hang, request: bytes("x"), responseType: Bytes.self)
      }
      try await eventually { harness.echo.observed.withLock { $0.active } == 1 }
      task.cancel()
      let result = await task.result
      #expect(throws: RPCError.self) { try result.get() }
      if case .failure(let error as RPCError) = result { #expect(error.code == .cancelled) }
      try await eventually { harness.echo.observed.withLock { $0.cancelled } == 1 }
      try await eventually { harness.echo.observed.withLock { $0.active } == 0 }
      // The connection still serves.
      let reply = try await client.unary(EchoService.unary, request: bytes("after"), responseType: Bytes.self)
      #expect(reply.value == Data("after".utf8))
      await client.close()
    }
  }

  @Test("a server stream abandoned by its reader stops the handler")
  func abandonedStream() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let first = try await client.serverStreaming(EchoService.expand, request: bytes("100000:1000"), responseType: Bytes.self) { stream in
        var iterator = stream.makeAsyncIterator()
        return try await iterator.next()
      }
      #expect(first?.value.count == 1000)
      let writesAtStop = harness.echo.observed.withLock { $0.streamWritesDone }
      try await Task.sleep(for: .milliseconds(300))
      let writesLater = harness.echo.observed.withLock { $0.streamWritesDone }
      #expect(writesLater < 100000)
      #expect(writesLater - writesAtStop < 5000)
      await client.close()
    }
  }
}

/// Polls `condition` until it holds, failing after `timeout`.
func eventually(timeout: Duration = .seconds(60), _ condition: () -> Bool) async throws {
  let end = ContinuousClock.now + timeout
  while !condition() {
    guard ContinuousClock.now < end else {
      Issue.record("condition not met within \(timeout)")
      return
    }
    try await Task.sleep(for: .milliseconds(10))
  }
}
