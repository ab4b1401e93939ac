/// A gRPC status: what a call ended with when it did not succeed.
///
/// Handlers throw it to end a call with a chosen status; clients receive it when a call fails.
/// Any other error thrown by a handler reaches the client as ``Code/internalError`` with a generic
/// message, so that no detail of the failure (which might hold personal data) leaves the node.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
  /// A gRPC status code (see grpc/doc/statuscodes.md).
  public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: Int

    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let ok = Code(rawValue: 0)
    public static let cancelled = Code(rawValue: 1)
    public static let unknown = Code(rawValue: 2)
    public static let invalidArgument = Code(rawValue: 3)
    public static let deadlineExceeded = Code(rawValue: 4)
    public static let notFound = Code(rawValue: 5)
    public static let alreadyExists = Code(rawValue: 6)
    public static let permissionDenied = Code(rawValue: 7)
    public static let resourceExhausted = Code(rawValue: 8)
    public static let failedPrecondition = Code(rawValue: 9)
    public static let aborted = Code(rawValue: 10)
    public static let outOfRange = Code(rawValue: 11)
    public static let unimplemented = Code(rawValue: 12)
    public static let internalError = Code(rawValue: 13)
    public static let unavailable = Code(rawValue: 14)
    public static let dataLoss = Code(rawValue: 15)
    public static let unauthenticated = Code(rawValue: 16)

    private static let names = [
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
      "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    /// The canonical upper-case name, e.g. `PERMISSION_DENIED`.
    public var description: String {
      rawValue >= 0 && rawValue < Self.names.count ? Self.names[rawValue] : "CODE_\(rawValue)"
    }
  }

  /// The status code.
  public var code: Code
  /// A message for the developer calling; never personal data.
  public var message: String
  /// Extra trailing metadata sent with the status.
  public var trailers: RPCMetadata
  /// Where the error was made (not sent on the wire).
  public var file: String
  public var line: Int

  /// Creates a status error.
  public init(
    _ code: Code, _ message: String, trailers: RPCMetadata = [:],
    file: String = #fileID, line: Int = #line
  ) {
    self.code = code
    self.message = message
    self.trailers = trailers
    self.file = file
    self.line = line
  }

  public var description: String { "\(code): \(message)" }

  public static func == (lhs: RPCError, rhs: RPCError) -> Bool {
    lhs.code == rhs.code && lhs.message == rhs.message && lhs.trailers == rhs.trailers
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(code)
    hasher.combine(message)
  }
}

extension RPCError {
  public static func invalidArgument(_ message: String, file: String = #fileID, line: Int = #line)
    -> RPCError
  { RPCError(.invalidArgument, message, file: file, line: line) }

  public static func notFound(_ message: String, file: String = #fileID, line: Int = #line)
    -> RPCError
  { RPCError(.notFound, message, file: file, line: line) }

  public static func permissionDenied(_ message: String, file: String = #fileID, line: Int = #line)
    -> RPCError
  { RPCError(.permissionDenied, message, file: file, line: line) }

  public static func unauthenticated(_ message: String, file: String = #fileID, line: Int = #line)
    -> RPCError
  { RPCError(.unauthenticated, message, file: file, line: line) }

  public static func internalError(_ message: String, file: String = #fileID, line: Int = #line)
    -> RPCError
  { RPCError(.internalError, message, file: file, line: line) }

  /// Maps any error thrown by a handler to the status sent to the client: an ``RPCError`` as it is,
  /// an ``RPCErrorConvertible`` as it says, cancellation as CANCELLED, anything else as INTERNAL with
  /// a generic message.
  public static func from(_ error: any Error) -> RPCError {
    if let rpc = error as? RPCError { return rpc }
    if let convertible = error as? any RPCErrorConvertible { return convertible.rpcError }
    if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
    return RPCError(.internalError, "internal error")
  }
}

/// An error of a lower layer (storage, say) that knows which status it is to a caller. The layer
/// that sees both declares the conformance, so the lower layer needs no RPC.
public protocol RPCErrorConvertible: Error {
  /// The status a caller receives; its message must hold no personal data.
  var rpcError: RPCError { get }
}
