import EduHubIdentity
import EduHubRPC
import Mustache

/// Renders the console's pages: each page's Mustache template inside the layout, with the headers
/// every page carries (a strict Content-Security-Policy, no caching of what may be personal data).
///
/// Templates are Swift strings compiled into the binary; `{{name}}` escapes HTML, and the only
/// unescaped insertions (`{{{…}}}`) are markup the console built itself (a page's body, an SVG chart).
struct ConsoleView: Sendable {
  let library: MustacheLibrary
  let nodeID: String
  let nodeRole: String

  init(templates: [String: String], nodeID: String, nodeRole: String) {
    var library = MustacheLibrary()
    for (name, text) in templates.merging(Self.shared, uniquingKeysWith: { page, _ in page }) {
      do {
        try library.register(text, named: name)
      } catch {
        // A template that does not parse is a programming error the first test of its page finds.
        preconditionFailure("console template \(name) does not parse: \(error)")
      }
    }
    self.library = library
    self.nodeID = nodeID
    self.nodeRole = nodeRole
  }

  /// The headers of every HTML answer.
  static func headers(secure: Bool) -> [(name: String, value: String)] {
    var headers: [(name: String, value: String)] = [
      ("content-type", "text/html; charset=utf-8"),
      (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
          + "frame-ancestors 'none'; base-uri 'none'"
      ),
      ("x-content-type-options", "nosniff"),
      ("x-frame-options", "DENY"),
      ("referrer-policy", "same-origin"),
      ("cache-control", "no-store"),
    ]
    if secure { headers.append(("strict-transport-security", "max-age=31536000")) }
    return headers
  }

  /// The sections of the navigation, each shown to the callers it serves.
  static func navigation(for caller: Caller, current: String) -> [[String: Any]] {
    var items: [(String, String, String)] = [("catalog", "/catalog", "数据目录"), ("requests", "/requests", "我的申请")]
    if caller.holdsAnywhere(.shareSecurity) || caller.holdsAnywhere(.catalogPublish) {
      items.append(("approvals", "/approvals", "审批"))
    }
    items.append(("orders", "/orders", "工单"))
    if caller.holdsAnywhere(.peopleRead) { items.append(("people", "/people", "人员")) }
    if caller.holdsAnywhere(.nodesManage) { items.append(("node", "/node", "节点")) }
    return items.map { ["key": $0.0, "href": $0.1, "label": $0.2, "current": $0.0 == current] }
  }

  /// A full page: `template` rendered with `context`, inside the layout.
  func page(
    _ template: String, title: String, section: String = "", visit: Visit, context: [String: Any] = [:], status: Int = 200
  ) -> HTTPResponse {
    var context = Self.blanked(context)
    context["csrf"] = visit.formToken
    context["title"] = title
    let body = library.render(context, withTemplate: template) ?? ""
    var layout: [String: Any] = ["title": title, "body": body, "csrf": visit.formToken, "nodeID": nodeID, "nodeRole": nodeRole]
    if let caller = visit.caller {
      layout["user"] = caller.username.isEmpty ? caller.accountID : caller.username
      layout["nav"] = Self.navigation(for: caller, current: section)
      layout["hasNav"] = true
    }
    if let flash = visit.flash { layout["flash"] = flash }
    let html = library.render(layout, withTemplate: "layout") ?? ""
    var headers = Self.headers(secure: visit.request.isSecure)
    headers += visit.cookies.map { ("set-cookie", $0) }
    return HTTPResponse(status: status, headers: headers, body: Array(html.utf8))
  }

  /// Mustache's sections treat every string as true; an empty text should read as "nothing"
  /// (`{{#reason}}…{{/reason}}` shown only when there is a reason).
  static func blanked(_ value: [String: Any]) -> [String: Any] { value.mapValues(blanked) }

  static func blanked(_ value: Any) -> Any {
    switch value {
    case let text as String: text.isEmpty ? Blank() : text
    case let dictionary as [String: Any]: blanked(dictionary)
    case let array as [[String: Any]]: array.map { blanked($0) }
    case let array as [Any]: array.map { blanked($0) }
    default: value
    }
  }

  /// A page that says what went wrong, with the status it deserves.
  func failure(_ error: RPCError, visit: Visit) -> HTTPResponse {
    let status: Int
    let title: String
    switch error.code {
    case .invalidArgument, .outOfRange: (status, title) = (400, "输入有误")
    case .notFound: (status, title) = (404, "未找到")
    case .permissionDenied: (status, title) = (403, "无权操作")
    case .alreadyExists, .aborted, .failedPrecondition: (status, title) = (409, "无法完成")
    case .resourceExhausted: (status, title) = (429, "请求过于频繁")
    case .unavailable: (status, title) = (503, "暂不可用")
    case .unauthenticated: (status, title) = (401, "需要登录")
    default: (status, title) = (500, "内部错误")
    }
    let message = status == 500 ? "服务器内部错误，请稍后再试。" : error.message
    return page("failure", title: title, visit: visit, context: ["message": message, "code": error.code.description], status: status)
  }

  /// A redirect after a form (Post/Redirect/Get), with the cookies of the visit.
  static func redirect(_ location: String, cookies: [String] = []) -> HTTPResponse {
    var headers: [(name: String, value: String)] = [("location", location), ("cache-control", "no-store")]
    headers += cookies.map { ("set-cookie", $0) }
    return HTTPResponse(status: 303, headers: headers)
  }

  static let shared: [String: String] = [
    "layout": """
      <!doctype html>
      <html lang="zh-CN">
      <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>{{title}} · EduHub 教育数据中枢</title>
      <link rel="stylesheet" href="/assets/console.css">
      <script src="/assets/console.js" defer></script>
      </head>
      <body>
      <a class="skip" href="#main">跳到正文</a>
      <header class="top">
      <a class="brand" href="/">EduHub 教育数据中枢</a>
      <span class="node" title="本节点">{{nodeID}} · {{nodeRole}}</span>
      {{#user}}
      <form method="post" action="/logout" class="logout">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <span class="who">{{user}}</span> <button type="submit">退出登录</button>
      </form>
      {{/user}}
      </header>
      {{#hasNav}}
      <nav class="sections" aria-label="主导航"><ul>
      {{#nav}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a></li>{{/nav}}
      </ul></nav>
      {{/hasNav}}
      <main id="main">
      {{#flash}}<p class="flash" role="status">{{flash}}</p>{{/flash}}
      <h1>{{title}}</h1>
      {{{body}}}
      </main>
      <footer class="bottom">EduHub · 未成年人个人信息按字段脱敏 · 本页操作均记入审计日志</footer>
      </body>
      </html>
      """,
    "failure": """
      <section class="failure" role="alert">
      <p>{{message}}</p>
      <p class="muted">状态：{{code}}</p>
      <p><a href="/">回到首页</a></p>
      </section>
      """,
  ]
}

/// An empty text: renders as nothing and counts as false in a section.
struct Blank: MustacheCustomRenderable {
  var renderText: String { "" }
  var isNull: Bool { true }
}
