import NIOCore
import Synchronization

/// What a handler knows about the call it serves.
public struct ServerContext: Sendable {
  let call: ServerCallInfo

  init(call: ServerCallInfo) { self.call = call }

  /// The method being called.
  public var method: RPCMethodDescriptor { call.method }
  /// The request's metadata (custom headers; reserved gRPC and HTTP/2 headers are not included).
  public var metadata: RPCMetadata { call.requestMetadata }
  /// When the caller stops waiting, if it set a deadline. The handler's task is cancelled then.
  public var deadline: NIODeadline? { call.deadline }
  /// The peer's address, as `ipv4:127.0.0.1:50000` or `ipv6:[::1]:50000`.
  public var peer: String { call.connection.peer }
  /// Whether the connection is protected by TLS.
  public var isSecure: Bool { call.connection.isSecure }

  /// Adds metadata to the response headers. Effective until the first response message is sent.
  public func addResponseHeader(_ key: String, _ value: String) {
    call.response.withLock { $0.headers.add(key, value) }
  }

  /// Adds binary metadata to the response headers (`key` ends in `-bin`).
  public func addResponseHeader(_ key: String, binary value: [UInt8]) {
    call.response.withLock { $0.headers.add(key, binary: value) }
  }

  /// Adds metadata to the response trailers.
  public func addTrailer(_ key: String, _ value: String) {
    call.response.withLock { $0.trailers.add(key, value) }
  }

  /// Adds binary metadata to the response trailers (`key` ends in `-bin`).
  public func addTrailer(_ key: String, binary value: [UInt8]) {
    call.response.withLock { $0.trailers.add(key, binary: value) }
  }
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

/// The per-call facts a handler may read from any thread; written on the event loop before the
/// handler starts and not changed afterwards, except the response metadata behind its mutex.
final class ServerCallInfo: Sendable {
  struct ResponseMetadata {
    var headers = RPCMetadata()
    var trailers = RPCMetadata()
  }

  let method: RPCMethodDescriptor
  let requestMetadata: RPCMetadata
  let deadline: NIODeadline?
  let connection: ConnectionInfo
  let response = Mutex(ResponseMetadata())

  init(method: RPCMethodDescriptor, requestMetadata: RPCMetadata, deadline: NIODeadline?,
    connection: ConnectionInfo)
  {
    self.method = method
    self.requestMetadata = requestMetadata
    self.deadline = deadline
    self.connection = connection
  }
}
