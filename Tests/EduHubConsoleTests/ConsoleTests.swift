import EduHubAPI
@testable import EduHubConsole
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubSync
import EduHubTestSupport
import Foundation
import Logging
import Testing

/// A browser as far as the console can tell: a cookie jar and the headers a browser sends. Drives
/// `Console.handle` in process (the browser journeys in `Tools/console` drive it over sockets).
struct FakeBrowser {
  let console: Console
  var secure = false
  var jar: [String: String] = [:]
  var host = "127.0.0.1:8443"

  init(_ world: IdentityWorld) {
    var logger = Logger(label: "test.console")
    logger.logLevel = .warning
    console = Console(node: world.node, authenticator: Authenticator(identity: world.node.identity), logger: logger)
  }

  var origin: String { (secure ? "https://" : "http://") + host }

  mutating func send(
    _ method: String, _ target: String, form: [(String, String)] = [], headers extra: [(name: String, value: String)] = [],
    body: [UInt8]? = nil
  ) async -> HTTPResponse {
    var headers: [(name: String, value: String)] = [("host", host)]
    if !jar.isEmpty { headers.append(("cookie", jar.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))) }
    if method == "POST", body == nil {
      headers.append(("content-type", "application/x-www-form-urlencoded"))
      headers.append(("origin", origin))
      headers.append(("sec-fetch-site", "same-origin"))
    }
    headers = headers.filter { header in !extra.contains { $0.name == header.name } } + extra
    let encoded = form.map { FormCoding.encode($0.0) + "=" + FormCoding.encode($0.1) }.joined(separator: "&")
    let request = HTTPRequest(
      method: method, target: target, headers: headers, body: body ?? Array(encoded.utf8), peer: "ipv4:127.0.0.1:50000",
      version: "HTTP/1.1", isSecure: secure)
    let response = await console.handle(request)
    for cookie in response.setCookies {
      let pair = cookie.prefix { $0 != ";" }.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      guard pair.count == 2 else { continue }
      if cookie.contains("Max-Age=0;") { jar[String(pair[0])] = nil } else { jar[String(pair[0])] = String(pair[1]) }
    }
    return response
  }

  /// Signs in through the form, as a person would.
  mutating func signIn(_ login: String, password: String = IdentityWorld.password, next: String = "") async -> HTTPResponse {
    let form = await send("GET", "/login")
    return await send("POST", "/login", form: [("_csrf", form.hiddenValue("_csrf")), ("login", login), ("password", password), ("next", next)])
  }

  /// Posts a form of a page as the page's own form would (its form token included).
  mutating func submit(_ path: String, from page: String, _ form: [(String, String)]) async -> HTTPResponse {
    let token = await send("GET", page).hiddenValue("_csrf")
    return await send("POST", path, form: [("_csrf", token)] + form)
  }
}

extension HTTPResponse {
  var html: String { String(decoding: body, as: UTF8.self) }
  func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
  var setCookies: [String] { headers.filter { $0.name == "set-cookie" }.map(\.value) }

  /// The value of the first hidden input `name` on the page.
  func hiddenValue(_ name: String) -> String {
    guard let mark = html.range(of: "name=\"\(name)\" value=\"") else { return "" }
    return String(html[mark.upperBound...].prefix { $0 != "\"" })
  }
}

@Suite("Console")
struct ConsoleTests {
  @Test("signing in sets the session in HttpOnly, SameSite=Strict cookies; every page carries a strict CSP")
  func signIn() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      let form = await browser.send("GET", "/login")
      #expect(form.status == 200)
      let csp = try #require(form.header("content-security-policy"))
      #expect(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"))
      #expect(!csp.contains("unsafe-inline"))
      #expect(form.header("x-content-type-options") == "nosniff")
      #expect(form.html.contains("<html lang=\"zh-CN\""))

      let wrong = await browser.signIn("steward1", password: "not the password at all")
      #expect(wrong.status == 401 && wrong.html.contains("登录失败"))
      #expect(browser.jar["eduhub-access"] == nil)

      let signedIn = await browser.signIn("steward1", next: "/approvals")
      #expect(signedIn.status == 303 && signedIn.header("location") == "/approvals")
      let access = try #require(signedIn.setCookies.first { $0.hasPrefix("eduhub-access=") })
      #expect(access.contains("HttpOnly") && access.contains("SameSite=Strict") && access.contains("Path=/"))
      #expect(!access.contains("Secure"), "plain HTTP: a Secure cookie would never come back")
      #expect(await browser.send("GET", "/approvals").status == 200)
      #expect(try world.auditCount(action: "identity.Login", outcome: "ok") >= 1)
    }
  }

  @Test("under TLS the cookies are __Host- prefixed and Secure, and HSTS is sent")
  func secureCookies() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      browser.secure = true
      let signedIn = await browser.signIn("steward1")
      #expect(signedIn.status == 303)
      let cookies = signedIn.setCookies
      #expect(cookies.count == 2 && cookies.allSatisfy { $0.hasPrefix("__Host-eduhub-") && $0.contains("; Secure") })
      let page = await browser.send("GET", "/catalog")
      #expect(page.status == 200)
      #expect(page.header("strict-transport-security")?.contains("max-age=") == true)
    }
  }

  @Test("a page asked for without a session goes to sign-in and back; a foreign next is refused")
  func redirects() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      let away = await browser.send("GET", "/orders?state=open")
      #expect(away.status == 303 && away.header("location") == "/login?next=%2Forders%3Fstate%3Dopen")
      for hostile in ["//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "/\r\n/evil.example", "evil"] {
        #expect(Console.safeNext(hostile) == "/catalog", "next=\(hostile.debugDescription)")
      }
      let back = await browser.signIn("steward1", next: "//evil.example/")
      #expect(back.header("location") == "/catalog")
    }
  }

  @Test("a form without the session's token, or from another origin, is refused and audited; nothing changes")
  func forgedForms() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("steward1")
      let token = await browser.send("GET", "/catalog").hiddenValue("_csrf")
      #expect(!token.isEmpty)
      // No token: a page elsewhere posting through the browser.
      let bare = await browser.send("POST", "/logout")
      #expect(bare.status == 403)
      // The right token, but the browser says the form came from another site.
      let crossSite = await browser.send(
        "POST", "/logout", form: [("_csrf", token)], headers: [("sec-fetch-site", "same-site")])
      #expect(crossSite.status == 403)
      let otherOrigin = await browser.send(
        "POST", "/logout", form: [("_csrf", token)], headers: [("origin", "http://127.0.0.1:9999")])
      #expect(otherOrigin.status == 403)
      #expect(try world.auditCount(action: "console.form", outcome: "denied") >= 3)
      // Still signed in: none of them logged out.
      #expect(await browser.send("GET", "/catalog").status == 200)
      // A sign-in form posted without its cookie-bound token is refused too (login CSRF).
      var stranger = FakeBrowser(world)
      let forced = await stranger.send("POST", "/login", form: [("login", "steward1"), ("password", IdentityWorld.password)])
      #expect(forced.status == 403 && stranger.jar["eduhub-access"] == nil)
    }
  }

  @Test("logging out revokes the node's session: the old cookies sign nobody in")
  func logout() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("steward1")
      let stolen = browser.jar
      let out = await browser.submit("/logout", from: "/catalog", [])
      #expect(out.status == 303 && out.header("location") == "/login")
      #expect(browser.jar["eduhub-access"] == nil && browser.jar["eduhub-refresh"] == nil)
      var thief = FakeBrowser(world)
      thief.jar = stolen
      let page = await thief.send("GET", "/catalog")
      #expect(page.status == 303 && page.header("location")?.hasPrefix("/login") == true)
    }
  }

  @Test("a session idle for 8 hours ends at the node, even for a copy of its cookies that a browser did not expire")
  func idleSessionEnds() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("steward1")
      // Active: seven hours on, the access cookie has expired and the refresh cookie rotates it.
      world.clock.advance(by: .seconds(7 * 3600))
      #expect(await browser.send("GET", "/catalog").status == 200)
      let copied = browser.jar
      // Idle past eight hours since that rotation: the copy is refused and the session ended,
      // through the Refresh RPC as through the console (the session carries its limit).
      world.clock.advance(by: .seconds(8 * 3600 + 60))
      var refresh = Eduhub_Identity_V1_RefreshRequest()
      refresh.refreshToken = try #require(copied["eduhub-refresh"])
      #expect(throws: (any Error).self) { try world.identity.refresh(refresh, peer: "ipv4:203.0.113.9:4000") }
      var thief = FakeBrowser(world)
      thief.jar = copied
      let page = await thief.send("GET", "/catalog")
      #expect(page.status == 303 && page.header("location")?.hasPrefix("/login") == true)
      try world.node.audit.flush()
      #expect(try world.auditEvents(action: "identity.Refresh").contains { $0.outcome == "denied" && $0.detail.contains("idle") })
      // Ended, not merely refused: the browser's own cookies no longer work either.
      #expect(await browser.send("GET", "/catalog").status == 303)
    }
  }

  @Test("central's node page shows a school enrolled with a county by the county's report of its last pull, and marks it offline when that goes stale")
  func schoolsBelowCounties() async throws {
    try await withWorld { world in
      let tiers = try await ThreeTiers.start(world)
      try await world.account("city-nodes", role: .cityAdmin, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("city-nodes")
      // The county's push brings the school's registration; before the county reports a pull of
      // the school's, it is offline as far as central knows.
      _ = try await tiers.county.client.syncOnce()
      let before = await browser.send("GET", "/node").html
      #expect(before.contains("school-5117020001") && before.contains("从未（经由 "))
      // The school pulls from the county, the county pushes its report up.
      _ = try await tiers.school.syncOnce()
      _ = try await tiers.county.client.syncOnce()
      let page = await browser.send("GET", "/node").html
      let row = try #require(page.components(separatedBy: "<tr").first { $0.contains("<td>school-5117020001</td>") })
      #expect(!row.contains("离线") && row.contains("经由 "))
      // Sixteen minutes of silence later (the county's report is as old), it is marked offline.
      world.clock.advance(by: .seconds(16 * 60))
      _ = await browser.signIn("city-nodes")
      let later = await browser.send("GET", "/node").html
      let stale = try #require(later.components(separatedBy: "<tr").first { $0.contains("<td>school-5117020001</td>") })
      #expect(stale.contains("离线"))
      await tiers.stop()
    }
  }

  @Test("a teacher sees her own pupil as GetPerson shows her, and not another school's")
  func people() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school, person: IdentityWorld.teacher)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("teacher1")
      var request = Eduhub_Identity_V1_GetPersonRequest()
      request.id = IdentityWorld.student
      let resolved = await browser.console.sessions.resolve(browser.probe())
      let rpcView = try world.identity.getPerson(request, caller: try #require(resolved).caller, peer: "test")
      let own = await browser.send("GET", "/people/" + IdentityWorld.student)
      #expect(own.status == 200)
      #expect(own.html.contains(rpcView.name) && own.html.contains(rpcView.birthDate))
      let other = await browser.send("GET", "/people/" + IdentityWorld.otherStudent)
      #expect(other.status == 403 || other.status == 404)
      #expect(!other.html.contains(IdentityWorld.otherStudent + "</"), "the refusal names no one")
    }
  }

  @Test("what a reader typed comes back escaped, never as markup")
  func escaping() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("steward1")
      let hostile = "<script>alert(1)</script>\"'"
      let page = await browser.send("GET", "/catalog?q=" + FormCoding.encode(hostile))
      #expect(page.status == 200)
      #expect(!page.html.contains("<script>alert(1)"))
      #expect(page.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
      let missing = await browser.send("GET", "/catalog/" + FormCoding.encode(hostile))
      #expect(missing.status == 404 && !missing.html.contains("<script>alert(1)"))
    }
  }

  @Test("what an attacker can plant does not stick: a second session cookie, a notice in a link, a cross-site sign-out, a flood of fields")
  func planted() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      try await world.account("steward2", role: .dataSteward, org: CitySeeder.cityCode)
      var victim = FakeBrowser(world)
      _ = await victim.signIn("steward1")
      var attacker = FakeBrowser(world)
      _ = await attacker.signIn("steward2")
      // Another port of the host planted the attacker's access cookie for a narrower path, which
      // the browser sends first: the request is nobody's, not the attacker's.
      let access = try #require(attacker.jar["eduhub-access"])
      let tossed = await victim.send(
        "GET", "/orders/new", headers: [("cookie", "eduhub-access=\(access); " + victim.jar.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))])
      #expect(tossed.status == 303 && !tossed.html.contains("steward2"))
      // A notice is shown only when this session's own action sent it.
      let forged = await victim.send("GET", "/catalog?done=" + FormCoding.encode("账号异常，请访问 http://evil.example 重新登录"))
      #expect(forged.status == 200 && !forged.html.contains("evil.example"))
      let followed = await victim.submit("/catalog/nothing-here/follow", from: "/catalog", [("on", "1")])
      #expect(followed.status == 404)
      // A cross-site form arrives without the SameSite cookies: it is sent to sign in, and the
      // browser's cookies are left alone.
      var crossSite = FakeBrowser(world)
      let away = await crossSite.send("POST", "/logout", headers: [("sec-fetch-site", "cross-site")])
      #expect(away.status == 303 && away.setCookies.isEmpty)
      // 1,001 fields: refused before anything reads them.
      let flood = Array(repeating: ("a", "b"), count: 1_001)
      let token = await victim.send("GET", "/catalog").hiddenValue("_csrf")
      #expect(await victim.send("POST", "/logout", form: [("_csrf", token)] + flood).status == 400)
      #expect(await victim.send("GET", "/catalog").status == 200, "still signed in")
    }
  }

  @Test("bodies are bounded by the page from the request's head: sign-in a few KiB, forms 64 KiB, uploads of a session 11 MiB")
  func bodyLimits() async throws {
    try await withWorld { world in
      let browser = FakeBrowser(world)
      let console = browser.console
      let session: [(name: String, value: String)] = [("cookie", "eduhub-access=x")]
      #expect(console.bodyLimit(method: "GET", path: "/catalog", headers: session) == 0)
      #expect(console.bodyLimit(method: "POST", path: "/login", headers: []) == 16 << 10)
      #expect(console.bodyLimit(method: "POST", path: "/orders/new", headers: []) == 64 << 10)
      #expect(console.bodyLimit(method: "POST", path: "/orders/new", headers: session) == nil)
      #expect(console.bodyLimit(method: "POST", path: "/orders/WO-1/attach", headers: session) == nil)
      #expect(console.bodyLimit(method: "POST", path: "/approvals/x", headers: session) == 64 << 10)
    }
  }

  @Test("a notice an action sends is shown on the page it leads to")
  func notices() async throws {
    try await withWorld { world in
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school, person: IdentityWorld.teacher)
      var browser = FakeBrowser(world)
      _ = await browser.signIn("teacher1")
      let token = await browser.send("GET", "/orders/new").hiddenValue("_csrf")
      let submitted = await browser.send(
        "POST", "/orders/new", form: [("_csrf", token), ("kind", "2"), ("priority", "3"), ("title", "出生日期有误"), ("description", "与证明不符")])
      #expect(submitted.status == 303, "\(submitted.html.prefix(400))")
      let location = try #require(submitted.header("location"))
      let page = await browser.send("GET", location)
      #expect(page.status == 200 && page.html.contains("工单已提交") && page.html.contains("出生日期有误"))
    }
  }

  @Test("methods other than GET and POST, and unknown pages, get a clear answer")
  func unknown() async throws {
    try await withWorld { world in
      try await world.account("steward1", role: .dataSteward, org: CitySeeder.cityCode)
      var browser = FakeBrowser(world)
      #expect(await browser.send("DELETE", "/catalog").status == 405)
      _ = await browser.signIn("steward1")
      #expect(await browser.send("GET", "/nowhere").status == 404)
      #expect(await browser.send("GET", "/assets/console.css").header("content-type")?.hasPrefix("text/css") == true)
      #expect(await browser.send("GET", "/assets/missing.js").status == 404)
    }
  }
}

extension FakeBrowser {
  /// A request carrying this browser's cookies (to resolve its caller the way a page does).
  func probe() -> HTTPRequest {
    HTTPRequest(
      method: "GET", target: "/", headers: [("cookie", jar.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))], body: [],
      peer: "ipv4:127.0.0.1:50000", version: "HTTP/1.1", isSecure: secure)
  }
}

@Suite("Multipart")
struct MultipartTests {
  let boundary = "----eduhub7MA4YWxk"

  func body(_ text: String) -> [UInt8] { Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8) }

  @Test("a form with a file parses into its fields and the file's exact bytes")
  func wellFormed() throws {
    let text = """
      --\(boundary)
      Content-Disposition: form-data; name="title"

      成绩有误
      --\(boundary)
      Content-Disposition: form-data; name="file"; filename="证明.txt"
      Content-Type: text/plain

      line one
      line two
      --\(boundary)--

      """
    let parts = try #require(Multipart.parse(body(text), boundary: boundary))
    #expect(parts.count == 2)
    #expect(parts[0].name == "title" && parts[0].fileName == nil && String(decoding: parts[0].data, as: UTF8.self) == "成绩有误")
    #expect(parts[1].fileName == "证明.txt" && parts[1].contentType == "text/plain")
    #expect(String(decoding: parts[1].data, as: UTF8.self) == "line one\r\nline two")
    #expect(Multipart.boundary("multipart/form-data; boundary=\"\(boundary)\"") == boundary)
    #expect(Multipart.boundary("application/json") == nil)
    #expect(Multipart.boundary("multipart/form-data; boundary=" + String(repeating: "x", count: 71)) == nil)
  }

  @Test("truncated, unterminated or oversized bodies are refused, not half-read")
  func malformed() {
    let head = "--\(boundary)\nContent-Disposition: form-data; name=\"a\"\n\n"
    for text in ["", "garbage", head + "value", head, "--\(boundary)\nno blank line", "--other\n\n--other--"] {
      #expect(Multipart.parse(body(text), boundary: boundary) == nil, "\(text.debugDescription)")
    }
    let many = (0..<101).map { _ in "--\(boundary)\nContent-Disposition: form-data; name=\"a\"\n\nx\n" }.joined() + "--\(boundary)--"
    #expect(Multipart.parse(body(many), boundary: boundary) == nil, "more than 100 parts")
  }
}
