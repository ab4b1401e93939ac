import NIOCore
import Synchronization

/// What a handler knows about the call it serves.
public struct ServerContext: Sendable {
  /// The call's stream. What a context reads of it is set before the handler starts and not
  /// changed afterwards; the response metadata is behind its own mutex.
  let call: ServerStream

  init(call: ServerStream) { self.call = call }

  /// The method being called.
  public var method: RPCMethodDescriptor { call.method!.descriptor }
  /// The request's metadata (custom headers; reserved gRPC and HTTP/2 headers are not included).
  public var metadata: RPCMetadata { call.metadata }
  /// When the caller stops waiting, if it set a deadline. The handler's task is cancelled then.
  public var deadline: NIODeadline? { call.deadline }
  /// The peer's address, as `ipv4:127.0.0.1:50000` or `ipv6:[::1]:50000`.
  public var peer: String { call.connection.connectionInfo.peer }
  /// What the server's interceptor made of the caller's credentials, if an interceptor is set.
  public var principal: (any Sendable)? { call.principal }
  /// Whether the connection is protected by TLS.
  public var isSecure: Bool { call.connection.connectionInfo.isSecure }

  /// Adds metadata to the response headers. Effective until the first response message is sent.
  public func addResponseHeader(_ key: String, _ value: String) {
    call.responseMetadata.withLock { $0.headers.add(key, value) }
  }

  /// Adds binary metadata to the response headers (`key` ends in `-bin`).
  public func addResponseHeader(_ key: String, binary value: [UInt8]) {
    call.responseMetadata.withLock { $0.headers.add(key, binary: value) }
  }

  /// Adds metadata to the response trailers.
  public func addTrailer(_ key: String, _ value: String) {
    call.responseMetadata.withLock { $0.trailers.add(key, value) }
  }

  /// Adds binary metadata to the response trailers (`key` ends in `-bin`).
  public func addTrailer(_ key: String, binary value: [UInt8]) {
    call.responseMetadata.withLock { $0.trailers.add(key, binary: value) }
  }
}

/// Metadata a handler adds to its response.
struct ResponseMetadata {
  var headers = RPCMetadata()
  var trailers = RPCMetadata()
}

/// Facts about one connection, shared by its calls.
final class ConnectionInfo: Sendable {
  let peer: String
  let isSecure: Bool

  init(remoteAddress: SocketAddress?, isSecure: Bool) {
    switch remoteAddress {
    case .v4(let address)?: peer = "ipv4:\(address.host):\(remoteAddress?.port ?? 0)"
    case .v6(let address)?: peer = "ipv6:[\(address.host)]:\(remoteAddress?.port ?? 0)"
    case .unixDomainSocket?: peer = "unix:\(remoteAddress?.pathname ?? "")"
    case nil: peer = "unknown"
    }
    self.isSecure = isSecure
  }
}

