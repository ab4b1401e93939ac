import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import EduHubRPC
import Foundation
import Testing

@Suite("The four kinds of RPC over real loopback sockets")
struct RPCKindsTests {
  @Test("unary: an async handler echoes the request")
  func unary() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let reply = try await client.unary(EchoService.unary, request: bytes("hello"), responseType: Bytes.self)
      #expect(reply.value == Data("hello".utf8))
      await client.close()
    }
  }

  @Test("unary: an inline handler answers on the event loop, with its response headers")
  func inlineUnary() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let reply = try await client.unaryWithMetadata(EchoService.inline, request: bytes("fast"), responseType: Bytes.self)
      #expect(reply.message.value == Data("fast".utf8))
      #expect(reply.headers["inline"] == "yes")
      await client.close()
    }
  }

  @Test("unary: an empty message is a message (zero-length frame)")
  func emptyMessage() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let reply = try await client.unary(EchoService.unary, request: Bytes(), responseType: Bytes.self)
      #expect(reply.value.isEmpty)
      await client.close()
    }
  }

  @Test("server streaming: every message arrives in order")
  func serverStreaming() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let sizes = try await client.serverStreaming(EchoService.expand, request: bytes("200:1000"), responseType: Bytes.self) { stream in
        var seen: [UInt8] = []
        for try await message in stream {
          #expect(message.value.count == 1000)
          seen.append(message.value.first ?? 0)
        }
        return seen
      }
      #expect(sizes.count == 200)
      #expect(sizes == (0..<200).map { UInt8($0 % 256) })
      await client.close()
    }
  }

  @Test("server streaming: a handler error after some messages reaches the client as its status")
  func serverStreamingError() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.serverStreaming(EchoService.expand, request: bytes("nonsense"), responseType: Bytes.self) { stream in
          for try await _ in stream {}
        }
      }
      #expect(error?.code == .invalidArgument)
      #expect(error?.message == "expected COUNT:SIZE")
      await client.close()
    }
  }

  @Test("client streaming: the handler sees every request, then answers once")
  func clientStreaming() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let reply = try await client.clientStreaming(EchoService.collect, requestType: Bytes.self, responseType: Bytes.self) { writer in
        for index in 0..<500 { try await writer.write(bytes(count: index)) }
      }
      #expect(String(decoding: reply.value, as: UTF8.self) == "500:\((0..<500).reduce(0, +))")
      await client.close()
    }
  }

  @Test("client streaming: zero requests is a valid stream")
  func clientStreamingEmpty() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let reply = try await client.clientStreaming(EchoService.collect, requestType: Bytes.self, responseType: Bytes.self) { _ in }
      #expect(String(decoding: reply.value, as: UTF8.self) == "0:0")
      await client.close()
    }
  }

  @Test("bidirectional: replies interleave with requests (ping-pong)")
  func bidirectional() async throws {
    try await withHarness { harness in
      let client = harness.client()
      // The deadline only guards against a hang; a machine busy with other suites may be slow.
      let count = try await client.bidirectionalStreaming(EchoService.bidi, options: CallOptions(timeout: .seconds(300)), requestType: Bytes.self, responseType: Bytes.self) { writer, replies in
        var iterator = replies.makeAsyncIterator()
        for index in 0..<100 {
          try await writer.write(bytes("m\(index)"))
          let reply = try await iterator.next()
          #expect(reply.map { String(decoding: $0.value, as: UTF8.self) } == "m\(index)")
        }
        writer.finish()
        #expect(try await iterator.next() == nil)
        return 100
      }
      #expect(count == 100)
      await client.close()
    }
  }

  @Test("metadata: string and -bin values travel both ways")
  func metadata() async throws {
    try await withHarness { harness in
      let client = harness.client()
      var metadata: RPCMetadata = ["echo-text": "ünïcode is not ascii", "echo-plain": "value 1"]
      metadata.add("echo-blob-bin", binary: [0, 1, 2, 255, 254])
      let reply = try await client.unaryWithMetadata(
        EchoService.unary, request: bytes("x"), options: CallOptions(metadata: metadata), responseType: Bytes.self)
      #expect(reply.headers["echo-plain"] == "value 1")
      #expect(reply.trailers["echo-plain-trailer"] == "value 1")
      #expect(reply.headers.binary("echo-blob-bin") == [0, 1, 2, 255, 254])
      // A non-ASCII text value cannot be sent as an HTTP/2 header value and is dropped, not mangled.
      #expect(reply.headers["echo-text"] == nil)
      await client.close()
    }
  }

  @Test("a handler's RPCError reaches the client with its code and message, percent-encoded on the wire")
  func handlerError() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.unary(EchoService.unary, request: bytes("fail:7:学生 not yours: 100%"), responseType: Bytes.self)
      }
      #expect(error?.code == .permissionDenied)
      #expect(error?.message == "学生 not yours: 100%")
      await client.close()
    }
  }

  @Test("an unexpected throw is INTERNAL with a generic message: no detail leaks")
  func unexpectedThrow() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.unary(EchoService.unary, request: bytes("throw"), responseType: Bytes.self)
      }
      #expect(error?.code == .internalError)
      #expect(error?.message == "internal error")
      #expect(!(error?.description.contains("51170220100101001X") ?? true))
      await client.close()
    }
  }

  @Test("an unknown method is UNIMPLEMENTED and names the path")
  func unknownMethod() async throws {
    try await withHarness { harness in
      let client = harness.client()
      let error = await rpcError {
        _ = try await client.unary(RPCMethodDescriptor(service: "no.Such", method: "Thing"), request: bytes("x"), responseType: Bytes.self)
      }
      #expect(error?.code == .unimplemented)
      #expect(error?.message == "unknown method /no.Such/Thing")
      await client.close()
    }
  }
}
