/// A failure that is all message: what went wrong, in words a person can act on (never personal
/// data). One type for the plain failures of every layer, told apart by `Domain`, so each keeps a
/// name of its own to catch (`PushRefusal`, `NodeDataError`, …) without a body of its own.
public struct Failure<Domain>: Error, Sendable, Hashable, CustomStringConvertible {
  public let message: String

  public init(_ message: String) { self.message = message }

  public var description: String { message }
}
