import EduHubCrypto

extension IdentityService {
  /// The anti-forgery token of a login session's web forms: a keyed hash of the session's id under
  /// the node's session key (domain-separated from refresh digests). Nothing is stored: a form
  /// posted by the session carries it, a page of another origin cannot read it, and a node that
  /// restarts still accepts the forms it rendered.
  package func formToken(sessionID: String) -> String {
    let message = Array("eduhub-console-form\u{0}".utf8) + Array(sessionID.utf8)
    return Base64URL.encode((try? KeyedHash.hash(message, key: sessionKey, length: 24)) ?? KeyedHash.digest(message, length: 24))
  }

  /// How long the access tokens this node issues live, in seconds.
  package var accessTokenLifetime: Int64 { tokens.lifetime }
}
