import CEduHubSodium

/// Ed25519 signatures.
public struct SigningKey: Sendable {
  /// The 64-byte secret key (seed and public key), zeroed when released.
  public let secret: SecretBytes
  /// The 32-byte public key.
  public let publicKey: [UInt8]

  public static let publicKeyBytes = Int(crypto_sign_PUBLICKEYBYTES)
  public static let secretKeyBytes = Int(crypto_sign_SECRETKEYBYTES)
  public static let seedBytes = Int(crypto_sign_SEEDBYTES)
  public static let signatureBytes = Int(crypto_sign_BYTES)

  /// A fresh key pair.
  public init() {
    _ = Sodium.ready
    var publicKey = [UInt8](repeating: 0, count: Self.publicKeyBytes)
    secret = SecretBytes(count: Self.secretKeyBytes) { sk in
      _ = crypto_sign_keypair(&publicKey, sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
    self.publicKey = publicKey
  }

  /// The key pair of a 32-byte seed (deterministic).
  public init(seed: SecretBytes) throws(CryptoError) {
    try Sodium.ensureReady()
    guard seed.count == Self.seedBytes else { throw CryptoError(.invalidInput, "a seed has \(Self.seedBytes) bytes") }
    var publicKey = [UInt8](repeating: 0, count: Self.publicKeyBytes)
    secret = SecretBytes(count: Self.secretKeyBytes) { sk in
      seed.withUnsafeBytes { seed in
        _ = crypto_sign_seed_keypair(
          &publicKey, sk.baseAddress!.assumingMemoryBound(to: UInt8.self),
          seed.baseAddress!.assumingMemoryBound(to: UInt8.self))
      }
    }
    self.publicKey = publicKey
  }

  /// The detached signature of `message`.
  public func sign(_ message: [UInt8]) -> [UInt8] {
    var signature = [UInt8](repeating: 0, count: Self.signatureBytes)
    secret.withUnsafeBytes { sk in
      _ = crypto_sign_detached(
        &signature, nil, message, UInt64(message.count), sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
    return signature
  }

  /// Whether `signature` is `publicKey`'s signature of `message`.
  public static func verify(signature: [UInt8], of message: [UInt8], publicKey: [UInt8]) -> Bool {
    guard Sodium.ready, signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
    return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
  }
}
