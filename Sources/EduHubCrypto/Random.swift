import CEduHubSodium

/// Random bytes from libsodium (the kernel's CSPRNG).
public enum Random {
  /// `count` random bytes.
  public static func bytes(_ count: Int) -> [UInt8] {
    _ = Sodium.ready
    var out = [UInt8](repeating: 0, count: count)
    if count > 0 { out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) } }
    return out
  }
}
