/// A `host:port` address as given on a command line: `127.0.0.1:50051`, `localhost:50051`,
/// `[::1]:50051`, optionally prefixed by `http://` or `https://`.
public struct NodeAddress: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int
  /// Whether `https://` was given.
  public var secure: Bool

  public init(host: String, port: Int, secure: Bool = false) {
    self.host = host
    self.port = port
    self.secure = secure
  }

  /// Parses `text`.
  /// - Throws: ``NodeAddressError`` naming what is wrong.
  public init(parsing text: String) throws(NodeAddressError) {
    var rest = Substring(text)
    var secure = false
    if rest.hasPrefix("https://") {
      secure = true
      rest = rest.dropFirst(8)
    } else if rest.hasPrefix("http://") {
      rest = rest.dropFirst(7)
    }
    if rest.hasSuffix("/") { rest = rest.dropLast() }
    let host: Substring
    let portText: Substring
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]") else { throw NodeAddressError(text, "missing ] after the IPv6 address") }
      host = rest[rest.index(after: rest.startIndex)..<close]
      let after = rest[rest.index(after: close)...]
      guard after.hasPrefix(":") else { throw NodeAddressError(text, "expected :PORT after ]") }
      portText = after.dropFirst()
    } else {
      guard let colon = rest.lastIndex(of: ":") else { throw NodeAddressError(text, "expected HOST:PORT") }
      host = rest[..<colon]
      portText = rest[rest.index(after: colon)...]
    }
    guard !host.isEmpty else { throw NodeAddressError(text, "the host is empty") }
    guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "_" }) else {
      throw NodeAddressError(text, "the host has characters a host name cannot have")
    }
    guard let port = Int(portText), (0...65535).contains(port) else {
      throw NodeAddressError(text, "the port must be a number from 0 to 65535")
    }
    self.init(host: String(host), port: port, secure: secure)
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why an address could not be parsed.
public struct NodeAddressError: Error, CustomStringConvertible {
  public let text: String
  public let reason: String

  init(_ text: String, _ reason: String) {
    self.text = text
    self.reason = reason
  }

  public var description: String { "invalid address \"\(text)\": \(reason)" }
}
