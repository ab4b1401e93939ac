import CEduHubSodium

/// libsodium's one-time initialisation, done before any other call.
enum Sodium {
  /// Whether `sodium_init` succeeded (it is safe to call more than once).
  static let ready: Bool = sodium_init() >= 0

  static func ensureReady() throws(CryptoError) {
    guard ready else { throw CryptoError(.unavailable, "libsodium could not be initialised") }
  }
}
