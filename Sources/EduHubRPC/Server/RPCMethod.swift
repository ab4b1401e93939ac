import NIOCore
import SwiftProtobuf

/// The name of one RPC method: `/<service>/<method>` on the wire.
public struct RPCMethodDescriptor: Sendable, Hashable, CustomStringConvertible {
  /// The fully qualified service name, e.g. `eduhub.node.v1.NodeService`.
  public let service: String
  /// The method name, e.g. `Ping`.
  public let method: String
  /// The HTTP/2 `:path`, e.g. `/eduhub.node.v1.NodeService/Ping`.
  public let path: String

  public init(service: String, method: String) {
    self.service = service
    self.method = method
    self.path = "/\(service)/\(method)"
  }

  public var description: String { path }
}

/// The four kinds of RPC.
public enum RPCKind: Sendable, Hashable {
  case unary, serverStreaming, clientStreaming, bidirectionalStreaming
}

/// One method a server answers, with its handler.
///
/// Generated service protocols build these; a handler can also be registered by hand. A class, so
/// that a call holds its method with one reference instead of copying strings and closures.
public final class RPCMethod: Sendable {
  public let descriptor: RPCMethodDescriptor
  let handler: Handler

  init(descriptor: RPCMethodDescriptor, handler: Handler) {
    self.descriptor = descriptor
    self.handler = handler
  }

  enum Handler: Sendable {
    /// Runs on the event loop inside the read that completed the request. Returns a framed message.
    case inline(@Sendable (ByteBuffer, ServerContext) throws -> ByteBuffer)
    case unary(@Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer)
    /// Tries the first on the event loop; when it declines (nil: the call would be slow), runs the
    /// second as a task.
    case inlineOrTask(
      @Sendable (ByteBuffer, ServerContext) throws -> ByteBuffer?, @Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer)
    case serverStreaming(@Sendable (ByteBuffer, OutboundMessageQueue, ServerContext) async throws -> Void)
    case clientStreaming(@Sendable (InboundMessageQueue, ServerContext) async throws -> ByteBuffer)
    case bidirectional(@Sendable (InboundMessageQueue, OutboundMessageQueue, ServerContext) async throws -> Void)
  }

  /// The kind of call.
  public var kind: RPCKind {
    switch handler {
    case .inline, .unary, .inlineOrTask: return .unary
    case .serverStreaming: return .serverStreaming
    case .clientStreaming: return .clientStreaming
    case .bidirectional: return .bidirectionalStreaming
    }
  }

  /// A unary method whose handler is cheap and never blocks: it runs on the connection's event loop
  /// with no thread hop and no task.
  public static func inlineUnary<Request: Message, Response: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (Request, ServerContext) throws -> Response
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .inline { buffer, context in
        let request = try MessageCoding.decode(Request.self, from: buffer)
        return try MessageFramer.frame(try handler(request, context))
      })
  }

  /// An inline unary method whose handler returns its response already serialized (protobuf bytes,
  /// e.g. a stored record with a field or two appended): no decoding and re-encoding of a message
  /// the handler already holds as bytes.
  public static func inlineUnaryEncoded<Request: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (Request, ServerContext) throws -> [UInt8]
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .inline { buffer, context in
        let request = try MessageCoding.decode(Request.self, from: buffer)
        return frame(try handler(request, context))
      })
  }

  /// A unary method answered on the event loop when it is cheap, as a task when it is not: `quick`
  /// returns nil for a request it would be slow to answer (which then goes to `handler`, on the
  /// cooperative pool). For methods whose cost depends on the request, such as a point lookup
  /// against a scan. Both return the response already serialized (protobuf bytes).
  public static func inlineOrTask<Request: Message>(
    _ descriptor: RPCMethodDescriptor,
    quick: @escaping @Sendable (Request, ServerContext) throws -> [UInt8]?,
    _ handler: @escaping @Sendable (Request, ServerContext) async throws -> [UInt8]
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .inlineOrTask(
        { buffer, context in
          let request = try MessageCoding.decode(Request.self, from: buffer)
          return try quick(request, context).map(frame)
        },
        { buffer, context in
          let request = try MessageCoding.decode(Request.self, from: buffer)
          return frame(try await handler(request, context))
        }))
  }

  /// Serialized protobuf bytes with the 5-byte gRPC message header in front.
  static func frame(_ bytes: [UInt8]) -> ByteBuffer {
    var framed = ByteBufferAllocator().buffer(capacity: bytes.count + 5)
    framed.writeInteger(UInt8(0))
    framed.writeInteger(UInt32(truncatingIfNeeded: bytes.count))
    framed.writeBytes(bytes)
    return framed
  }

  /// A unary method whose handler runs as a task, so it may await slow work.
  public static func unary<Request: Message, Response: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .unary { buffer, context in
        let request = try MessageCoding.decode(Request.self, from: buffer)
        return try MessageFramer.frame(try await handler(request, context))
      })
  }

  /// A method with one request and a stream of responses.
  public static func serverStreaming<Request: Message, Response: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (Request, RPCWriter<Response>, ServerContext) async throws -> Void
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .serverStreaming { buffer, queue, context in
        let request = try MessageCoding.decode(Request.self, from: buffer)
        try await handler(request, RPCWriter(queue: queue), context)
      })
  }

  /// A method with a stream of requests and one response.
  public static func clientStreaming<Request: Message, Response: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (RPCStream<Request>, ServerContext) async throws -> Response
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .clientStreaming { queue, context in
        try MessageFramer.frame(try await handler(RPCStream(queue: queue), context))
      })
  }

  /// A method with streams both ways.
  public static func bidirectionalStreaming<Request: Message, Response: Message>(
    _ descriptor: RPCMethodDescriptor,
    _ handler: @escaping @Sendable (RPCStream<Request>, RPCWriter<Response>, ServerContext) async throws -> Void
  ) -> RPCMethod {
    RPCMethod(
      descriptor: descriptor,
      handler: .bidirectional { inbound, outbound, context in
        try await handler(RPCStream(queue: inbound), RPCWriter(queue: outbound), context)
      })
  }
}

/// A set of methods served together; generated service protocols conform to it.
public protocol RPCService: Sendable {
  /// The methods, each with its handler.
  var methods: [RPCMethod] { get }
}

extension Array where Element == RPCMethod {
  /// These methods with the one of `replacement`'s descriptor swapped for it: a service's
  /// generated methods with one given a handler of its own (inline, or answered from bytes).
  public func replacing(with replacement: RPCMethod) -> [RPCMethod] {
    map { $0.descriptor == replacement.descriptor ? replacement : $0 }
  }
}
