/// Why the store could not do what was asked. Messages name files and pages, never data or keys.
public struct StorageError: Error, Sendable, Hashable, CustomStringConvertible {
  public struct Code: RawRepresentable, Sendable, Hashable {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// The key does not open this database.
    public static let wrongKey = Code(rawValue: 1)
    /// A page failed to authenticate or the file is cut short: tampered or damaged.
    public static let corrupted = Code(rawValue: 2)
    /// The file is not an EduHub database (or its key metadata is missing).
    public static let notOurs = Code(rawValue: 3)
    /// The file or its key metadata could not be read or written.
    public static let io = Code(rawValue: 4)
    /// The database does not exist and was not to be created.
    public static let notFound = Code(rawValue: 5)
    /// A write was refused: nothing of it was stored.
    public static let rejected = Code(rawValue: 6)
    /// The store failed for another reason (SQLite's own error, not shown to callers).
    public static let failed = Code(rawValue: 7)
    /// The node does not take this now, for a reason the message gives (safe to show): a node
    /// restored from backup takes no local write before its first sync.
    public static let unavailable = Code(rawValue: 8)
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

  public static func == (lhs: StorageError, rhs: StorageError) -> Bool {
    lhs.code == rhs.code && lhs.message == rhs.message
  }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(code)
    hasher.combine(message)
  }
}
