import CEduHubSodium

/// XChaCha20-Poly1305 (IETF) authenticated encryption: a 32-byte key, a random 24-byte nonce per
/// message, a 16-byte tag. Sealed boxes are `nonce || ciphertext || tag`.
public enum AEAD {
  public static let keyBytes = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
  public static let nonceBytes = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
  public static let tagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

  /// A fresh random key.
  public static func makeKey() -> SecretBytes { SecretBytes(randomCount: keyBytes) }

  /// Encrypts `plaintext`, binding `associatedData`; a fresh random nonce is prepended.
  public static func seal(_ plaintext: [UInt8], associatedData: [UInt8] = [], key: SecretBytes) throws(CryptoError)
    -> [UInt8]
  {
    try Sodium.ensureReady()
    guard key.count == keyBytes else { throw CryptoError(.invalidInput, "an AEAD key has \(keyBytes) bytes") }
    var out = [UInt8](repeating: 0, count: nonceBytes + plaintext.count + tagBytes)
    out.withUnsafeMutableBytes { out in
      randombytes_buf(out.baseAddress!, nonceBytes)
      let nonce = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
      var length: UInt64 = 0
      key.withUnsafeBytes { key in
        _ = crypto_aead_xchacha20poly1305_ietf_encrypt(
          nonce + nonceBytes, &length, plaintext, UInt64(plaintext.count), associatedData,
          UInt64(associatedData.count), nil, nonce, key.baseAddress!.assumingMemoryBound(to: UInt8.self))
      }
    }
    return out
  }

  /// Decrypts a box made by `seal`.
  /// - Throws: `CryptoError.authenticationFailed` for a wrong key, wrong associated data or any
  ///   change to the box.
  public static func open(_ box: [UInt8], associatedData: [UInt8] = [], key: SecretBytes) throws(CryptoError)
    -> [UInt8]
  {
    try Sodium.ensureReady()
    guard key.count == keyBytes else { throw CryptoError(.invalidInput, "an AEAD key has \(keyBytes) bytes") }
    guard box.count >= nonceBytes + tagBytes else {
      throw CryptoError(.authenticationFailed, "the sealed box is too short")
    }
    var out = [UInt8](repeating: 0, count: box.count - nonceBytes - tagBytes)
    let rc = box.withUnsafeBytes { box in
      out.withUnsafeMutableBytes { out in
        key.withUnsafeBytes { key in
          var length: UInt64 = 0
          let nonce = box.baseAddress!.assumingMemoryBound(to: UInt8.self)
          return crypto_aead_xchacha20poly1305_ietf_decrypt(
            out.baseAddress?.assumingMemoryBound(to: UInt8.self), &length, nil, nonce + nonceBytes,
            UInt64(box.count - nonceBytes), associatedData, UInt64(associatedData.count), nonce,
            key.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
      }
    }
    guard rc == 0 else { throw CryptoError(.authenticationFailed, "decryption failed: wrong key or tampered data") }
    return out
  }
}
