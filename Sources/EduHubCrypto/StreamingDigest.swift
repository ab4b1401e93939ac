import CEduHubSodium

/// The unkeyed 32-byte BLAKE2b of data given in pieces: for files too large to hold in memory
/// (backup snapshots).
public struct StreamingDigest: ~Copyable {
  // libsodium's state is a 64-byte-aligned struct Swift sees as opaque: allocated by its size.
  private let state: UnsafeMutableRawPointer

  public init() {
    _ = Sodium.ready
    state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
    _ = crypto_generichash_init(OpaquePointer(state), nil, 0, 32)
  }

  deinit { state.deallocate() }

  /// Adds `bytes` to what is hashed.
  public mutating func update(_ bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    _ = crypto_generichash_update(OpaquePointer(state), base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
  }

  /// The digest of everything added.
  public consuming func finish() -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    _ = crypto_generichash_final(OpaquePointer(state), &out, 32)
    return out
  }
}
