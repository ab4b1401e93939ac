/// gRPC metadata: an ordered list of key/value pairs sent as HTTP/2 headers or trailers.
///
/// Keys are lower-case ASCII. Keys ending in `-bin` carry binary values, base64-encoded on the wire;
/// all other values are printable ASCII strings.
public struct RPCMetadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
  public typealias Key = String
  public typealias Value = Entry

  /// One metadata value.
  public enum Entry: Sendable, Hashable {
    case string(String)
    case binary([UInt8])
  }

  public private(set) var entries: [(key: String, value: Entry)]

  public init() { entries = [] }

  public init(dictionaryLiteral elements: (String, Entry)...) {
    entries = elements.map { (key: $0.0.lowercased(), value: $0.1) }
  }

  public var isEmpty: Bool { entries.isEmpty }
  public var count: Int { entries.count }

  /// Appends a string value.
  public mutating func add(_ key: String, _ value: String) {
    entries.append((key: key.lowercased(), value: .string(value)))
  }

  /// Appends a binary value; the key must end in `-bin`.
  public mutating func add(_ key: String, binary value: [UInt8]) {
    precondition(key.hasSuffix("-bin"), "binary metadata keys end in -bin")
    entries.append((key: key.lowercased(), value: .binary(value)))
  }

  /// Appends an entry whose key is known to be lower-case already (HTTP/2 header names).
  mutating func append(key: String, _ value: Entry) {
    entries.append((key: key, value: value))
  }

  /// The string entries as HTTP headers.
  var textEntries: [(name: String, value: String)] {
    entries.compactMap { entry in
      if case .string(let value) = entry.value { return (entry.key, value) }
      return nil
    }
  }

  /// The first string value for `key`.
  public subscript(_ key: String) -> String? {
    let key = key.lowercased()
    for entry in entries where entry.key == key {
      if case .string(let value) = entry.value { return value }
    }
    return nil
  }

  /// The first binary value for `key` (which ends in `-bin`).
  public func binary(_ key: String) -> [UInt8]? {
    let key = key.lowercased()
    for entry in entries where entry.key == key {
      if case .binary(let value) = entry.value { return value }
    }
    return nil
  }

  public func makeIterator() -> IndexingIterator<[(key: String, value: Entry)]> {
    entries.makeIterator()
  }

  public static func == (lhs: RPCMetadata, rhs: RPCMetadata) -> Bool {
    lhs.entries.count == rhs.entries.count
      && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
  }

  public func hash(into hasher: inout Hasher) {
    for entry in entries {
      hasher.combine(entry.key)
      hasher.combine(entry.value)
    }
  }

  /// Whether `key` is reserved for the protocol and so never surfaces as user metadata.
  static func isReserved(_ key: String) -> Bool {
    key.hasPrefix(":") || key.hasPrefix("grpc-") || key == "content-type" || key == "te"
      || key == "user-agent" || key == "content-length" || key == "connection"
      || key == "host" || key == "transfer-encoding" || key == "keep-alive"
  }

  /// Whether `key` is a valid metadata key: lower-case letters, digits, `-`, `_`, `.`.
  static func isValidKey(_ key: String) -> Bool {
    !key.isEmpty
      && key.utf8.allSatisfy { c in
        (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F || c == 0x2E
      }
  }
}

extension RPCMetadata.Entry: ExpressibleByStringLiteral {
  public init(stringLiteral value: String) { self = .string(value) }
}
