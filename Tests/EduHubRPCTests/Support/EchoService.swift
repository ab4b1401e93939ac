import Logging
import NIOCore
import EduHubRPC
import Foundation
import SwiftProtobuf
import Synchronization

typealias Bytes = Google_Protobuf_BytesValue

/// Methods that exercise the runtime, registered by hand (RPC knows nothing of EduHub's API).
///
/// Requests are `BytesValue`s whose text selects a behaviour: `fail:CODE:MESSAGE` throws an
/// `RPCError`, `throw` throws a plain error, `sleep:MS` waits (observing cancellation).
final class EchoService: RPCService, Sendable {
  static let service = "test.Echo"
  static let unary = RPCMethodDescriptor(service: service, method: "Unary")
  static let inline = RPCMethodDescriptor(service: service, method: "Inline")
  static let expand = RPCMethodDescriptor(service: service, method: "Expand")
  static let collect = RPCMethodDescriptor(service: service, method: "Collect")
  static let bidi = RPCMethodDescriptor(service: service, method: "Bidi")
  static let hang = RPCMethodDescriptor(service: service, method: "Hang")

  /// What handlers observed, for assertions.
  struct Observed {
    var cancelled = 0
    var active = 0
    var maxActive = 0
    var streamWritesDone = 0
  }

  let observed = Mutex(Observed())

  var methods: [RPCMethod] {
    [
      .unary(Self.unary) { (request: Bytes, context: ServerContext) in
        try await self.track { try await self.behave(request, context) }
      },
      .inlineUnary(Self.inline) { (request: Bytes, context: ServerContext) in
        context.addResponseHeader("inline", "yes")
        return request
      },
      .serverStreaming(Self.expand) { (request: Bytes, writer: RPCWriter<Bytes>, context: ServerContext) in
        // "COUNT:SIZE": COUNT messages of SIZE bytes.
        let parts = String(decoding: request.value, as: UTF8.self).split(separator: ":").compactMap { Int($0) }
        guard parts.count == 2 else { throw RPCError(.invalidArgument, "expected COUNT:SIZE") }
        for index in 0..<parts[0] {
          var message = Bytes()
          message.value = Data(repeating: UInt8(index % 256), count: parts[1])
          try await writer.write(message)
          self.observed.withLock { $0.streamWritesDone += 1 }
        }
      },
      .clientStreaming(Self.collect) { (requests: RPCStream<Bytes>, context: ServerContext) in
        var count = 0
        var bytes = 0
        for try await request in requests {
          count += 1
          bytes += request.value.count
        }
        var response = Bytes()
        response.value = Data("\(count):\(bytes)".utf8)
        return response
      },
      .bidirectionalStreaming(Self.bidi) { (requests: RPCStream<Bytes>, writer: RPCWriter<Bytes>, context: ServerContext) in
        for try await request in requests { try await writer.write(request) }
      },
      .unary(Self.hang) { (request: Bytes, context: ServerContext) -> Bytes in
        try await self.track {
          do {
            try await Task.sleep(for: .seconds(60))
          } catch {
            self.observed.withLock { $0.cancelled += 1 }
            throw error
          }
          return request
        }
      },
    ]
  }

  private func track<R>(_ body: () async throws -> R) async throws -> R {
    observed.withLock {
      $0.active += 1
      $0.maxActive = max($0.maxActive, $0.active)
    }
    defer { observed.withLock { $0.active -= 1 } }
    return try await body()
  }

  private func behave(_ request: Bytes, _ context: ServerContext) async throws -> Bytes {
    let text = String(decoding: request.value.prefix(64), as: UTF8.self)
    if text.hasPrefix("fail:") {
      let parts = text.split(separator: ":", maxSplits: 2)
      throw RPCError(RPCError.Code(rawValue: Int(parts[1]) ?? 2), parts.count > 2 ? String(parts[2]) : "")
    }
    if text == "throw" {
      struct Secret: Error { let national = "51170220100101001X" }
      throw Secret()
    }
    if text.hasPrefix("sleep:"), let ms = Int(text.dropFirst(6)) {
      do {
        try await Task.sleep(for: .milliseconds(ms))
      } catch {
        observed.withLock { $0.cancelled += 1 }
        throw error
      }
    }
    for entry in context.metadata where entry.key.hasPrefix("echo-") {
      switch entry.value {
      case .string(let value):
        context.addResponseHeader(entry.key, value)
        context.addTrailer(entry.key + "-trailer", value)
      case .binary(let value):
        context.addResponseHeader(entry.key, binary: value)
      }
    }
    return request
  }
}

func bytes(_ text: String) -> Bytes {
  var message = Bytes()
  message.value = Data(text.utf8)
  return message
}

func bytes(count: Int, fill: UInt8 = 0x61) -> Bytes {
  var message = Bytes()
  message.value = Data(repeating: fill, count: count)
  return message
}
