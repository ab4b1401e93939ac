import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubSync
import EduHubWorkOrders
import Synchronization

/// The console's sign-in: the node's own login sessions carried in cookies.
///
/// Signing in is `IdentityService.login` (the same accounts, password check, lockout and audit as
/// the `Login` RPC); the session's access token and refresh token go into two HttpOnly,
/// SameSite=Strict cookies (Secure, with the `__Host-` prefix, under TLS). Every request resolves
/// its caller from the access token with the RPCs' ``Authenticator``; when the browser has dropped
/// the access cookie (it expires a little before the token), the refresh token is rotated with
/// `IdentityService.refresh`, as a client would. Logging out revokes the session.
final class ConsoleSessions: Sendable {
  let identity: IdentityService
  let authenticator: Authenticator
  /// A console session idle this long needs a new sign-in: the refresh cookie's lifetime (renewed
  /// with each rotation), and `refresh` ends a session idle longer even when a copy of the cookie
  /// comes back. The node's sessions themselves last longer for API clients.
  let idleSeconds: Int64
  /// How long a rotation's result is shared with the same browser's other requests.
  static let sharedRotationMs: Int64 = 10_000

  /// Refreshes done in the last seconds, by the refresh token presented: a browser that sends two
  /// requests with the same expired access cookie (two tabs) rotates once, and both get the new
  /// pair, instead of the second one presenting a rotated token (which ends the session as reuse).
  private let recent = Mutex<[String: (pair: Eduhub_Identity_V1_TokenPair, atMs: Int64)]>([:])

  init(identity: IdentityService, authenticator: Authenticator, idleSeconds: Int64 = 8 * 3600) {
    self.identity = identity
    self.authenticator = authenticator
    self.idleSeconds = idleSeconds
  }

  /// Cookie names: `__Host-` under TLS (the browser then insists on Secure, Path=/ and no Domain).
  struct Names {
    let access: String
    let refresh: String
    /// The sign-in form's anti-forgery cookie (before there is a session).
    let login: String

    init(secure: Bool) {
      let prefix = secure ? "__Host-" : ""
      access = prefix + "eduhub-access"
      refresh = prefix + "eduhub-refresh"
      login = prefix + "eduhub-login"
    }
  }

  static func cookie(_ name: String, _ value: String, maxAge: Int64, secure: Bool) -> String {
    "\(name)=\(value); Path=/; Max-Age=\(max(0, maxAge)); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
  }

  /// The cookies that carry a token pair.
  func cookies(for pair: Eduhub_Identity_V1_TokenPair, secure: Bool) -> [String] {
    let names = Names(secure: secure)
    let now = identity.nowMs()
    // The access cookie goes a little before its token does, so a request never carries an expired
    // one (which the authenticator would refuse and audit) and refreshes instead.
    let accessAge = (pair.accessExpiresMs - now) / 1000 - 30
    let refreshAge = min((pair.refreshExpiresMs - now) / 1000, idleSeconds)
    return [
      Self.cookie(names.access, pair.accessToken, maxAge: accessAge, secure: secure),
      Self.cookie(names.refresh, pair.refreshToken, maxAge: refreshAge, secure: secure),
    ]
  }

  /// Cookies that end the session in the browser.
  func clearing(secure: Bool) -> [String] {
    let names = Names(secure: secure)
    return [Self.cookie(names.access, "", maxAge: 0, secure: secure), Self.cookie(names.refresh, "", maxAge: 0, secure: secure)]
  }

  /// The caller of a request and the cookies to set (after a refresh), or nil when not signed in.
  func resolve(_ request: HTTPRequest) async -> (caller: Caller, cookies: [String])? {
    let names = Names(secure: request.isSecure)
    let jar = FormCoding.cookies(request.headers)
    // A session cookie sent twice means a second one was planted (another port of the host can set
    // a cookie for a narrower path, which the browser sends first): trust neither.
    guard FormCoding.count(of: names.access, in: request.headers) <= 1, FormCoding.count(of: names.refresh, in: request.headers) <= 1
    else { return nil }
    if let token = jar[names.access], !token.isEmpty, token.utf8.count <= 4096,
      let caller = try? authenticator.caller(for: token, peer: "console:" + request.peer, method: "console")
    {
      return (caller, [])
    }
    guard let refreshToken = jar[names.refresh], !refreshToken.isEmpty, refreshToken.utf8.count <= 200 else { return nil }
    guard let pair = rotate(refreshToken, peer: "console:" + request.peer),
      let caller = try? authenticator.caller(for: pair.accessToken, peer: "console:" + request.peer, method: "console")
    else { return nil }
    return (caller, cookies(for: pair, secure: request.isSecure))
  }

  private func rotate(_ refreshToken: String, peer: String) -> Eduhub_Identity_V1_TokenPair? {
    let now = identity.nowMs()
    // Keyed by the token and the browser's address (not its port: two tabs use two connections),
    // and kept for seconds: a copy of the token presented from elsewhere, or later, reaches
    // `refresh`, whose reuse detection ends the session.
    let address = peer.split(separator: ":").dropLast().joined(separator: ":")
    let key = Base64URL.encode(KeyedHash.digest(Array((address + "\0" + refreshToken).utf8)))
    if let done = recent.withLock({ $0[key] }), now - done.atMs < Self.sharedRotationMs { return done.pair }
    var request = Eduhub_Identity_V1_RefreshRequest()
    request.refreshToken = refreshToken
    guard let pair = try? identity.refresh(request, peer: peer, maxIdleMs: idleSeconds * 1000) else { return nil }
    recent.withLock { recent in
      recent = recent.filter { now - $0.value.atMs < Self.sharedRotationMs }
      if recent.count < 100_000 { recent[key] = (pair, now) }
    }
    return pair
  }

  /// Signs in with the `Login` RPC's rules and returns the session's cookies.
  func signIn(login: String, password: String, request: HTTPRequest) async throws -> [String] {
    var asked = Eduhub_Identity_V1_LoginRequest()
    asked.login = login
    asked.password = password
    let pair = try await identity.login(asked, peer: "console:" + request.peer, maxIdleMs: idleSeconds * 1000)
    return cookies(for: pair, secure: request.isSecure)
  }

  /// The form token of a signed-in caller's session.
  func formToken(for caller: Caller) -> String { identity.formToken(sessionID: caller.sessionID) }

  /// Whether a posted form is the session's own: its token matches (constant time) and, when the
  /// browser says where the form came from, it came from this console's origin.
  func formIsGenuine(_ visit: Visit, expected: String) -> Bool {
    guard Self.sameOrigin(visit.request) else { return false }
    let presented = visit.form["_csrf"]?.first ?? ""
    return !expected.isEmpty && ConstantTime.equals(Array(presented.utf8), Array(expected.utf8))
  }

  /// False when the browser reports a cross-origin request: `Sec-Fetch-Site` other than
  /// same-origin (a page on another port of the same host is "same-site", and SameSite cookies do
  /// not stop it), or an `Origin` that is not this console's.
  static func sameOrigin(_ request: HTTPRequest) -> Bool {
    if let site = request.header("sec-fetch-site"), site != "same-origin", site != "none" { return false }
    if let origin = request.header("origin") {
      guard let host = request.header("host") else { return false }
      return origin == (request.isSecure ? "https://" : "http://") + host
    }
    return true
  }
}
