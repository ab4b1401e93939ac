/// What a server tells about its connections and calls, for metrics. Every method is called on an
/// event loop, at most a few times per call: it must be cheap and must never block.
public protocol ServerObserver: Sendable {
  /// Called once per method when the server is built; what it returns hears that method's calls,
  /// so a call finds its instruments without a lookup.
  func observe(_ method: RPCMethodDescriptor) -> any CallObserver
  /// A connection was accepted (and its HTTP/2 session began).
  func connectionOpened()
  /// A connection ended.
  func connectionClosed()
}

/// Hears the calls of one method. A class: a call holds it by one reference.
public protocol CallObserver: AnyObject, Sendable {
  /// A call's request headers were accepted and its handler chosen.
  func callStarted()
  /// The call ended with `code` (CANCELLED when the client reset it before a status was decided),
  /// `nanoseconds` after it started.
  func callEnded(code: RPCError.Code, nanoseconds: Int64)
}
