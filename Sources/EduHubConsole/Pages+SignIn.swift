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

extension Console {
  /// GET /login: the form; POST /login: `IdentityService.login` with the `Login` RPC's rules.
  ///
  /// Before there is a session, the form is tied to the browser by a random token in a cookie and
  /// in the form (a page of another origin can make the browser post, but not read the token), and
  /// the browser's own report of the form's origin must be this console.
  func signInPage(_ request: HTTPRequest, form: [String: [String]]) async -> HTTPResponse {
    let names = ConsoleSessions.Names(secure: request.isSecure)
    let jar = FormCoding.cookies(request.headers)
    var cookies: [String] = []
    // A second sign-in cookie was planted (see `ConsoleSessions.resolve`): neither is trusted.
    let planted = FormCoding.count(of: names.login, in: request.headers) > 1
    var token = planted ? "" : jar[names.login] ?? ""
    if token.utf8.count != 43 {
      token = Base64URL.encode(Random.bytes(32))
      cookies.append(ConsoleSessions.cookie(names.login, token, maxAge: 3600, secure: request.isSecure))
    }
    let next = Self.safeNext(request.method == "POST" ? form["next"]?.first ?? "" : request.query["next"] ?? "")
    let visit = Visit(request: request, caller: nil, formToken: token, cookies: cookies, form: form)
    var context: [String: Any] = ["next": next]
    if request.method == "POST" {
      let login = visit.field("login")
      context["login"] = login
      guard !planted, sessions.formIsGenuine(visit, expected: jar[names.login] ?? "") else {
        context["error"] = "登录表单已失效或来自其他网站，请重新登录。"
        return view.page("login", title: "登录", visit: visit, context: context, status: 403)
      }
      do {
        let session = try await sessions.signIn(login: login, password: visit.form["password"]?.first ?? "", request: request)
        return ConsoleView.redirect(next, cookies: session)
      } catch let error as RPCError {
        // The Login RPC's one answer to every failure (unknown login, wrong password, locked).
        context["error"] =
          error.code == .unauthenticated ? "登录失败：用户名或密码错误，或账号已被锁定。" : error.message
        return view.page("login", title: "登录", visit: visit, context: context, status: error.code == .unauthenticated ? 401 : 400)
      } catch {
        context["error"] = "登录暂时无法完成，请稍后再试。"
        return view.page("login", title: "登录", visit: visit, context: context, status: 503)
      }
    }
    if await sessions.resolve(request) != nil { return ConsoleView.redirect(next) }
    return view.page("login", title: "登录", visit: visit, context: context)
  }

  /// POST /logout: the session is revoked on the node, the cookies cleared.
  func signOut(_ visit: Visit) throws -> HTTPResponse {
    _ = try node.identity.logout(caller: try visit.signedIn, peer: visit.peer)
    return ConsoleView.redirect("/login", cookies: sessions.clearing(secure: visit.request.isSecure))
  }

  /// Where to go after signing in: a path of this console only (never `//host` or a scheme).
  static func safeNext(_ next: String) -> String {
    guard next.hasPrefix("/"), !next.hasPrefix("//"), !next.hasPrefix("/\\"), next.utf8.count <= 512,
      // Browsers drop tabs and newlines from a URL ("/\t/evil" is "//evil"): no control characters at all.
      !next.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }), !next.hasPrefix("/login")
    else { return "/catalog" }
    return next
  }

  static let signInTemplates: [String: String] = [
    "login": """
      <section class="signin">
      <p class="muted">使用与客户端相同的账号登录。连续输错密码会暂时锁定账号。</p>
      {{#error}}<p class="error" role="alert" id="login-error">{{error}}</p>{{/error}}
      <form method="post" action="/login" class="stack">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <input type="hidden" name="next" value="{{next}}">
      <label for="login">用户名</label>
      <input id="login" name="login" value="{{login}}" autocomplete="username" required maxlength="64" autofocus>
      <label for="password">密码</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
      <button type="submit" id="signin">登录</button>
      </form>
      </section>
      """
  ]
}
