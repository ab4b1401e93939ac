/// Why a cryptographic operation failed. Messages never contain key material.
public struct CryptoError: Error, Sendable, Hashable, CustomStringConvertible {
  public struct Code: RawRepresentable, Sendable, Hashable {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// libsodium could not be initialised.
    public static let unavailable = Code(rawValue: 1)
    /// A ciphertext or signature did not verify: wrong key or tampered data.
    public static let authenticationFailed = Code(rawValue: 2)
    /// An input had the wrong size or form.
    public static let invalidInput = Code(rawValue: 3)
    /// Password hashing ran out of memory.
    public static let outOfMemory = Code(rawValue: 4)
    /// A key file is missing, unreadable, malformed or readable by others.
    public static let keyFile = Code(rawValue: 5)
  }

  public var code: Code
  public var message: String
  public var file: String
  public var line: Int

  public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
    self.code = code
    self.message = message
    self.file = file
    self.line = line
  }

  public var description: String { message }

  public static func == (lhs: CryptoError, rhs: CryptoError) -> Bool {
    lhs.code == rhs.code && lhs.message == rhs.message
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(code)
    hasher.combine(message)
  }
}
