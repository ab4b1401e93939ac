import CEduHubSodium

/// Argon2id password hashing and key derivation (libsodium `crypto_pwhash`).
public enum PasswordHash {
  /// Work factors. `interactive` is libsodium's (64 MiB, 2 passes); `moderate` (256 MiB, 3
  /// passes) is for keys derived once per process start. Both exceed OWASP's minimum (19 MiB, t=2).
  public struct Limits: Sendable, Hashable {
    public var opsLimit: UInt64
    public var memLimit: Int

    public init(opsLimit: UInt64, memLimit: Int) {
      self.opsLimit = opsLimit
      self.memLimit = memLimit
    }

    public static let interactive = Limits(
      opsLimit: UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE), memLimit: Int(crypto_pwhash_MEMLIMIT_INTERACTIVE))
    public static let moderate = Limits(
      opsLimit: UInt64(crypto_pwhash_OPSLIMIT_MODERATE), memLimit: Int(crypto_pwhash_MEMLIMIT_MODERATE))
    /// OWASP's floor (19 MiB, 2 passes): for tests and for hashing many passwords.
    public static let owaspMinimum = Limits(opsLimit: 2, memLimit: 19 * 1024 * 1024)
  }

  public static let saltBytes = Int(crypto_pwhash_SALTBYTES)

  /// A self-describing Argon2id hash string (`$argon2id$v=19$m=…`) of `password`.
  public static func hash(_ password: String, limits: Limits = .interactive) throws(CryptoError) -> String {
    try Sodium.ensureReady()
    var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
    let rc = password.withCString { pw in
      crypto_pwhash_str_alg(
        &out, pw, UInt64(strlen(pw)), limits.opsLimit, limits.memLimit, crypto_pwhash_ALG_ARGON2ID13)
    }
    guard rc == 0 else { throw CryptoError(.outOfMemory, "password hashing ran out of memory") }
    return String(cString: out)
  }

  /// Whether `password` matches `hash` (constant time in libsodium).
  public static func verify(_ password: String, hash: String) -> Bool {
    guard Sodium.ready else { return false }
    return hash.withCString { h in
      password.withCString { pw in crypto_pwhash_str_verify(h, pw, UInt64(strlen(pw))) == 0 }
    }
  }

  /// Whether `hash` was made with weaker limits than `limits` and should be redone.
  public static func needsRehash(_ hash: String, limits: Limits = .interactive) -> Bool {
    hash.withCString { crypto_pwhash_str_needs_rehash($0, limits.opsLimit, limits.memLimit) != 0 }
  }

  /// Derives a `length`-byte key from `passphrase` and `salt` (Argon2id).
  public static func deriveKey(
    from passphrase: String, salt: [UInt8], length: Int = 32, limits: Limits = .moderate
  ) throws(CryptoError) -> SecretBytes {
    try Sodium.ensureReady()
    guard salt.count == saltBytes else { throw CryptoError(.invalidInput, "a salt has \(saltBytes) bytes") }
    var rc: Int32 = 0
    let key = SecretBytes(count: length) { out in
      rc = passphrase.withCString { pw in
        crypto_pwhash(
          out.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(length), pw, UInt64(strlen(pw)), salt,
          limits.opsLimit, limits.memLimit, crypto_pwhash_ALG_ARGON2ID13)
      }
    }
    guard rc == 0 else { throw CryptoError(.outOfMemory, "key derivation ran out of memory") }
    return key
  }
}

#if canImport(Glibc)
  import Glibc
#endif
