import CEduHubSodium

/// Keyed BLAKE2b (libsodium `crypto_generichash`): MACs, pseudonyms, digests.
public enum KeyedHash {
  public static let keyBytes = Int(crypto_generichash_KEYBYTES)

  /// The `length`-byte (16…64) keyed BLAKE2b of `message`.
  public static func hash(_ message: [UInt8], key: SecretBytes, length: Int = 32) throws(CryptoError) -> [UInt8] {
    try Sodium.ensureReady()
    guard (Int(crypto_generichash_BYTES_MIN)...Int(crypto_generichash_BYTES_MAX)).contains(length) else {
      throw CryptoError(.invalidInput, "a BLAKE2b output has 16 to 64 bytes")
    }
    guard (Int(crypto_generichash_KEYBYTES_MIN)...Int(crypto_generichash_KEYBYTES_MAX)).contains(key.count) else {
      throw CryptoError(.invalidInput, "a BLAKE2b key has 16 to 64 bytes")
    }
    var out = [UInt8](repeating: 0, count: length)
    key.withUnsafeBytes { key in
      _ = crypto_generichash(
        &out, length, message, UInt64(message.count), key.baseAddress!.assumingMemoryBound(to: UInt8.self), key.count)
    }
    return out
  }

  /// The unkeyed 32-byte BLAKE2b of `message`.
  public static func digest(_ message: [UInt8], length: Int = 32) -> [UInt8] {
    _ = Sodium.ready
    var out = [UInt8](repeating: 0, count: length)
    _ = crypto_generichash(&out, length, message, UInt64(message.count), nil, 0)
    return out
  }
}
