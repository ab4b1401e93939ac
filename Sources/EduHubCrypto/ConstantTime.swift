import CEduHubSodium

/// Comparisons whose time does not depend on where the inputs differ.
public enum ConstantTime {
  /// Whether `a` and `b` hold the same bytes; different lengths are unequal (length is not secret).
  public static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    guard a.count > 0 else { return true }
    return sodium_memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
  }

  /// Whether `a` and `b` hold the same bytes.
  public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBytes { a in b.withUnsafeBytes { b in equals(a, b) } }
  }
}
