import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Foundation
import NIOPosix
import Testing

@Suite("Sizes, concurrency and flow control")
struct LimitsTests {
  @Test("10 MiB messages travel both ways when both sides allow them")
  func largeMessages() async throws {
    var server = testServerConfiguration()
    server.maxReceiveMessageSize = 16 * 1024 * 1024
    try await withHarness(configuration: server) { harness in
      var configuration = ClientConfiguration()
      configuration.maxReceiveMessageSize = 16 * 1024 * 1024
      let client = harness.client(configuration: configuration)
      var request = bytes(count: 10 * 1024 * 1024)
      request.value[12345] = 7
      let reply = try await client.unary(EchoService.unary, request: request, responseType: Bytes.self)
      #expect(reply.value.count == 10 * 1024 * 1024)
      #expect(reply.value == request.value)
      await client.close()
    }
  }

  @Test("a request over the server's limit is RESOURCE_EXHAUSTED, and the connection still serves")
  func oversizeRequest() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.unary(EchoService.unary, request: bytes(count: 5 * 1024 * 1024), responseType: Bytes.self)
      }
      #expect(error?.code == .resourceExhausted)
      #expect(error?.message.contains("exceeds the limit of 4194304 bytes") == true)
      let reply = try await client.unary(EchoService.unary, request: bytes("still here"), responseType: Bytes.self)
      #expect(reply.value == Data("still here".utf8))
      await client.close()
    }
  }

  @Test("a prefix announcing 2 GiB is refused without allocating it")
  func hugeAnnouncedLength() async throws {
    try await withHarness { harness in
      let raw = try RawHTTP2Connection(port: harness.port)
      raw.startSession()
      let id = raw.request(path: EchoService.unary.path, body: grpcFrame(announcedLength: 0x7FFF_FFFF, payload: [1, 2, 3]))
      await raw.pump(timeout: 30) { raw.responses[id]?.closed == true }
      #expect(raw.responses[id]?.header("grpc-status") == "8")
    }
  }

  @Test("a response over the client's limit is RESOURCE_EXHAUSTED at the client")
  func oversizeResponse() async throws {
    try await withHarness { harness in
      var configuration = ClientConfiguration()
      configuration.maxReceiveMessageSize = 1024
      let client = harness.client(configuration: configuration)
      let error = await rpcError {
        _ = try await client.unary(EchoService.unary, request: bytes(count: 2048), responseType: Bytes.self)
      }
      #expect(error?.code == .resourceExhausted)
      await client.close()
    }
  }

  @Test("1,000 concurrent calls share one connection")
  func thousandConcurrentCalls() async throws {
    try await withHarness { harness in
      let client = harness.client()
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for index in 0..<1000 {
          group.addTask {
            let text = "call \(index)"
            let reply = try await client.unary(EchoService.unary, request: bytes(text), responseType: Bytes.self)
            return reply.value == Data(text.utf8)
          }
        }
        var ok = 0
        for try await matched in group where matched { ok += 1 }
        #expect(ok == 1000)
      }
      #expect(harness.server.connectionCount == 1)
      await client.close()
    }
  }

  @Test("the concurrent-stream cap holds: extra calls wait instead of failing")
  func concurrentStreamCap() async throws {
    var server = testServerConfiguration()
    server.maxConcurrentStreams = 8
    try await withHarness(configuration: server) { harness in
      let client = harness.client()
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<64 {
          group.addTask {
            _ = try await client.unary(EchoService.unary, request: bytes("sleep:20"), responseType: Bytes.self)
          }
        }
        try await group.waitForAll()
      }
      let maxActive = harness.echo.observed.withLock { $0.maxActive }
      #expect(maxActive <= 8)
      #expect(maxActive >= 2)
      await client.close()
    }
  }

  @Test("many connections at once")
  func manyConnections() async throws {
    try await withHarness { harness in
      try await withThrowingTaskGroup(of: Int.self) { group in
        for index in 0..<64 {
          group.addTask {
            let client = harness.client()
            var ok = 0
            for call in 0..<20 {
              let text = "\(index).\(call)"
              let reply = try await client.unary(EchoService.inline, request: bytes(text), responseType: Bytes.self)
              if reply.value == Data(text.utf8) { ok += 1 }
            }
            await client.close()
            return ok
          }
        }
        var total = 0
        for try await ok in group { total += ok }
        #expect(total == 64 * 20)
      }
    }
  }

  @Test("a slow reader of a 64 MiB stream holds the server to a bounded backlog")
  func backpressure() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let messageSize = 64 * 1024
      let count = 1024  // 64 MiB
      var maxBacklog = 0
      let received = try await client.serverStreaming(
        EchoService.expand, request: bytes("\(count):\(messageSize)"), responseType: Bytes.self
      ) { stream in
        var received = 0
        for try await message in stream {
          received += 1
          #expect(message.value.count == messageSize)
          // Messages the handler has written that the client has not read yet.
          let written = harness.echo.observed.withLock { $0.streamWritesDone }
          maxBacklog = max(maxBacklog, (written - received) * messageSize)
          if received % 8 == 0 { try await Task.sleep(for: .milliseconds(2)) }
        }
        return received
      }
      #expect(received == count)
      // Flow-control windows (1 MiB stream, the client's queue) plus the server's 256 KiB queue and
      // socket buffers: a few MiB, far from the stream's 64 MiB.
      #expect(maxBacklog < 12 * 1024 * 1024, "backlog reached \(maxBacklog) bytes")
      await client.close()
    }
  }
}

@Suite("Busy polling", .timeLimit(.minutes(1)))
struct BusyPollingTests {
  @Test("a spinning loop gives way to an async handler's completion, never waiting out its budget")
  func completionInterruptsSpin() async throws {
    var configuration = testServerConfiguration()
    // A budget no completion on any machine takes: a spin that ends by it did not see the work.
    configuration.busyPollBudget = .seconds(10)
    // Loops of its own for the server (its spin must not stall other tests) and for the client.
    let serverLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let harness = try await Harness.start(configuration: configuration, group: serverLoops)
    let rpc = RPCClient(host: "127.0.0.1", port: harness.port, group: clientLoops)
    for round in 0..<10 {
      // The inline call's answer starts the server loop's spin; the async call's handler finishes
      // a few milliseconds later on another thread, while nothing else arrives: its completion must
      // end the spin. What ended each spin is counted, so how busy the machine is does not matter.
      async let fast = rpc.unary(EchoService.inline, request: bytes("f\(round)"), responseType: Bytes.self)
      async let slow = rpc.unary(EchoService.unary, request: bytes("sleep:3"), responseType: Bytes.self)
      let (a, b) = try await (fast, slow)
      #expect(a.value == Data("f\(round)".utf8))
      #expect(b.value == Data("sleep:3".utf8))
    }
    let seen = harness.server.busyPolling
    #expect(seen.spins >= 10, "\(seen)")
    #expect(seen.endedByWork >= 1, "\(seen)")
    #expect(seen.endedByBudget == 0, "\(seen)")
    await rpc.close()
    // Shutdown ends the spin still running after the last answer rather than waiting 10 s for it.
    await harness.stop()
    #expect(harness.server.busyPolling.endedByBudget == 0)
    try await clientLoops.shutdownGracefully()
    try await serverLoops.shutdownGracefully()
  }
}
