import CEduHubSodium

/// Secret bytes (a key, a seed) kept in memory of their own and zeroed when released.
///
/// A final class so that copies share one buffer and the zeroing happens exactly once. Never
/// printed: its description hides the content.
public final class SecretBytes: @unchecked Sendable, CustomStringConvertible {
  private let pointer: UnsafeMutableRawBufferPointer

  /// The number of bytes.
  public var count: Int { pointer.count }

  /// Copies `bytes` (the caller should wipe its own copy).
  public init(_ bytes: some Collection<UInt8>) {
    pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    pointer.initializeMemory(as: UInt8.self, repeating: 0)
    UnsafeMutableRawBufferPointer(rebasing: pointer[0..<bytes.count]).copyBytes(from: bytes)
    self.countStorage = bytes.count
  }

  /// `count` fresh random bytes.
  public init(randomCount count: Int) {
    _ = Sodium.ready
    pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
    randombytes_buf(pointer.baseAddress!, count)
    self.countStorage = count
  }

  /// Fills a buffer of `count` bytes with `body`.
  init(count: Int, fill body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
    pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
    pointer.initializeMemory(as: UInt8.self, repeating: 0)
    self.countStorage = count
    // Fully initialised: if `body` throws, deinit zeroes and frees the buffer.
    try body(UnsafeMutableRawBufferPointer(rebasing: pointer[0..<count]))
  }

  private let countStorage: Int

  deinit {
    sodium_memzero(pointer.baseAddress!, pointer.count)
    pointer.deallocate()
  }

  /// Calls `body` with the bytes, valid only during the call.
  public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try body(UnsafeRawBufferPointer(rebasing: pointer[0..<countStorage]))
  }

  /// Constant-time equality.
  public func isEqual(to other: SecretBytes) -> Bool {
    withUnsafeBytes { a in other.withUnsafeBytes { b in ConstantTime.equals(a, b) } }
  }

  public var description: String { "SecretBytes(\(countStorage) bytes)" }
}
