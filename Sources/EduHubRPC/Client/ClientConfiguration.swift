import NIOCore

/// How a client treats its connection.
public struct ClientConfiguration: Sendable {
  /// The largest response message accepted, in bytes (RESOURCE_EXHAUSTED beyond).
  public var maxReceiveMessageSize: Int = 4 * 1024 * 1024
  /// The HTTP/2 flow-control window of each stream, in bytes.
  public var streamWindowSize: Int = 1024 * 1024
  /// The HTTP/2 flow-control window of the whole connection, in bytes.
  public var connectionWindowSize: Int = 8 * 1024 * 1024
  /// The largest response header block, in bytes.
  public var maxHeaderListSize: Int = 16 * 1024
  /// How long to wait for a TCP (and TLS) connection.
  public var connectTimeout: TimeAmount = .seconds(10)
  /// How often to ping an otherwise silent connection; nil never pings.
  public var keepaliveInterval: TimeAmount? = nil
  /// How long a ping may go unanswered before the connection is dropped.
  public var keepaliveTimeout: TimeAmount = .seconds(20)

  public init() {}
}

/// Per-call settings.
public struct CallOptions: Sendable {
  /// How long the caller waits; sent as `grpc-timeout`, enforced on both sides.
  public var timeout: Duration?
  /// Metadata sent as request headers.
  public var metadata: RPCMetadata

  public init(timeout: Duration? = nil, metadata: RPCMetadata = [:]) {
    self.timeout = timeout
    self.metadata = metadata
  }

  var deadline: NIODeadline? {
    guard let timeout else { return nil }
    let (seconds, attoseconds) = timeout.components
    let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    guard !nanos.overflow else { return .distantFuture }
    return .now() + .nanoseconds(nanos.partialValue + attoseconds / 1_000_000_000)
  }
}

/// A response with the metadata that came with it.
public struct RPCResponse<Message: Sendable>: Sendable {
  public var message: Message
  /// The response headers' metadata.
  public var headers: RPCMetadata
  /// The trailers' metadata.
  public var trailers: RPCMetadata
}
