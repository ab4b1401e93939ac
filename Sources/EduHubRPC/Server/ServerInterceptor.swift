/// What an interceptor sees of a call before its handler runs.
public struct ServerCallHead: Sendable {
  /// The method being called.
  public let method: RPCMethodDescriptor
  /// The request's custom metadata (e.g. `authorization`).
  public let metadata: RPCMetadata
  /// The peer's address, as `ipv4:127.0.0.1:50000`.
  public let peer: String
}

/// Runs on the event loop before each call's handler starts, once its headers are complete.
///
/// It must be cheap and must not block (cache what is expensive): it runs inline like an inline
/// handler. Throwing an ``RPCError`` ends the call with that status before the handler is chosen
/// to run; the returned value becomes the call's ``ServerContext/principal``.
public protocol ServerInterceptor: Sendable {
  func intercept(_ call: ServerCallHead) throws -> (any Sendable)?
}
