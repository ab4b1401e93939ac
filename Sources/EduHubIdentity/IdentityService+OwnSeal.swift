import EduHubCrypto

extension IdentityService {
  /// Encrypts and authenticates `bytes` for this node alone (a key derived from its own session
  /// key, which never leaves it), bound to `context`: for state a client carries and hands back,
  /// such as a subscription cursor naming the last row key it was sent, which it must not read.
  package func sealForSelf(_ bytes: [UInt8], context: String) throws -> String {
    let key = try ownSealKey()
    return Base64URL.encode(try AEAD.seal(bytes, associatedData: Array(context.utf8), key: key))
  }

  /// What `sealForSelf` sealed under `context`; nil when the text is not such a box (altered,
  /// another context, another node).
  package func openForSelf(_ text: String, context: String) -> [UInt8]? {
    guard let box = Base64URL.decode(text), let key = try? ownSealKey() else { return nil }
    return try? AEAD.open(box, associatedData: Array(context.utf8), key: key)
  }

  private func ownSealKey() throws -> SecretBytes {
    SecretBytes(try KeyedHash.hash(Array("eduhub-own-seal".utf8), key: sessionKey))
  }
}
