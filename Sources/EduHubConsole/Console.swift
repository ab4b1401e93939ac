import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubSync
import EduHubWorkOrders
import Foundation
import Logging

/// The web console: server-rendered pages for the people in the loop (consumers, stewards, the
/// security officer, the data service unit, teachers, county IT), served by every node.
///
/// One policy: every page acts through the same service methods as the RPCs, with the caller
/// resolved from the node's own login session by the RPCs' ``Authenticator``; there is no second
/// authorization path, and every decision is audited by the service with the console's peer.
public final class Console: HTTPHandler {
  let node: OpenNode
  let sessions: ConsoleSessions
  let view: ConsoleView
  /// This node's sync with its upstream, when it has one.
  let syncStatus: @Sendable () -> SyncClient.Status?
  let logger: Logger

  /// - Parameter syncStatus: reads this node's sync state (upstream, last sync, pending writes).
  public init(
    node: OpenNode, authenticator: Authenticator, syncStatus: @escaping @Sendable () -> SyncClient.Status? = { nil }, logger: Logger
  ) {
    self.node = node
    self.sessions = ConsoleSessions(identity: node.identity, authenticator: authenticator)
    self.syncStatus = syncStatus
    self.logger = logger
    var templates: [String: String] = [:]
    for group in [Self.signInTemplates, Self.catalogTemplates, Self.sharingTemplates, Self.orderTemplates, Self.peopleTemplates, Self.nodeTemplates] {
      templates.merge(group) { first, _ in first }
    }
    self.view = ConsoleView(templates: templates, nodeID: node.data.identity.nodeID, nodeRole: node.data.identity.role.rawValue)
  }

  public func handle(_ request: HTTPRequest) async -> HTTPResponse {
    let start = ContinuousClock.now
    var response = await answer(request)
    // The time the node spent on the page (the browser's devtools and the benchmark read it).
    let elapsed = ContinuousClock.now - start
    let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    response.headers.append(("server-timing", "app;dur=" + String(format: "%.2f", ms)))
    return response
  }

  func answer(_ request: HTTPRequest) async -> HTTPResponse {
    let path = String(request.path)
    if path.hasPrefix("/assets/") { return ConsoleAssets.serve(path, method: request.method) }
    guard request.method == "GET" || request.method == "POST" else {
      return HTTPResponse(status: 405, headers: [("allow", "GET, POST"), ("content-type", "text/plain; charset=utf-8")], body: Array("GET or POST\n".utf8))
    }
    if path == "/login" {
      guard let (form, _) = Self.form(of: request) else { return .text(400, "malformed form") }
      return await signInPage(request, form: form)
    }
    // Who asks comes first: nobody's body is parsed before the session is known.
    guard let (caller, cookies) = await sessions.resolve(request) else {
      // Not signed in (or the session ended): to the sign-in page, back here afterwards. No cookie
      // is cleared here: a cross-site form arrives without the SameSite cookies and would otherwise
      // sign the person out.
      let back = request.method == "GET" ? "?next=" + FormCoding.encode(request.target) : ""
      return ConsoleView.redirect("/login" + back)
    }
    guard let (form, files) = Self.form(of: request) else { return .text(400, "malformed form") }
    var visit = Visit(request: request, caller: caller, formToken: sessions.formToken(for: caller), cookies: cookies, form: form)
    visit.files = files
    if request.method == "POST", !sessions.formIsGenuine(visit, expected: visit.formToken) {
      node.identity.audit.record(
        .init(actor: caller.actor, action: "console.form", target: path, outcome: "denied", detail: "form token or origin mismatch",
          peer: visit.peer, timeMs: node.identity.nowMs()))
      return view.failure(RPCError(.permissionDenied, "表单已失效或来自其他网站，请刷新页面后重试。"), visit: visit)
    }
    do {
      return try await route(visit, path: path)
    } catch let error as RPCError {
      return view.failure(error, visit: visit)
    } catch let error as any RPCErrorConvertible {
      return view.failure(error.rpcError, visit: visit)
    } catch {
      logger.error("console page failed", metadata: ["console.path": "\(path.prefix(100))", "error.type": "\(type(of: error))"])
      return view.failure(RPCError(.internalError, "internal"), visit: visit)
    }
  }

  /// The fields and files of a POST's form (urlencoded or multipart); nil when it is malformed.
  static func form(of request: HTTPRequest) -> (fields: [String: [String]], files: [Multipart.Part])? {
    guard request.method == "POST" else { return ([:], []) }
    guard let boundary = Multipart.boundary(request.header("content-type")) else {
      return FormCoding.parse(request.body).map { ($0, []) }
    }
    guard let parts = Multipart.parse(request.body, boundary: boundary) else { return nil }
    var fields: [String: [String]] = [:]
    var files: [Multipart.Part] = []
    for part in parts {
      if part.fileName != nil { files.append(part) } else { fields[part.name, default: []].append(String(decoding: part.data, as: UTF8.self)) }
    }
    return (fields, files)
  }

  /// Bodies are bounded by what the page takes, decided from the request's head: the sign-in form a
  /// few KiB, other forms 64 KiB, and only the two upload forms of a browser with a session cookie
  /// the listener's 11 MiB (an attachment of 10 MiB). The server's ``HTTPBodyBudget`` bounds them all.
  public func bodyLimit(method: String, path: Substring, headers: [(name: String, value: String)]) -> Int? {
    guard method == "POST" else { return 0 }
    if path == "/login" { return 16 << 10 }
    let upload = path == "/orders/new" || (path.hasPrefix("/orders/") && path.hasSuffix("/attach"))
    let names = ConsoleSessions.Names(secure: false)
    let hasSession = headers.contains { $0.name == "cookie" && ($0.value.contains(names.access) || $0.value.contains(names.refresh)) }
    return upload && hasSession ? nil : 64 << 10
  }

  /// The pages of a signed-in caller.
  func route(_ visit: Visit, path: String) async throws -> HTTPResponse {
    let parts = path.split(separator: "/", omittingEmptySubsequences: true).map { PercentEncoding.decode(Array($0.utf8)) }
    let post = visit.request.method == "POST"
    switch (post, parts.first ?? "", parts.count) {
    case (false, "", 0): return ConsoleView.redirect("/catalog", cookies: visit.cookies)
    case (true, "logout", 1): return try signOut(visit)
    case (false, "catalog", 1): return try catalogSearch(visit)
    case (false, "catalog", 2): return try resourceDetail(visit, code: parts[1])
    case (true, "catalog", 3) where parts[2] == "follow": return try await follow(visit, code: parts[1])
    case (false, "catalog", 3) where parts[2] == "apply": return try applyForm(visit, code: parts[1])
    case (true, "catalog", 3) where parts[2] == "apply": return try await apply(visit, code: parts[1])
    case (false, "followed", 1): return try followedList(visit)
    case (false, "requests", 1): return try myRequests(visit)
    case (true, "requests", 3) where parts[2] == "withdraw": return try await withdraw(visit, id: parts[1])
    case (false, "approvals", 1): return try approvals(visit)
    case (true, "approvals", 2): return try await decide(visit, id: parts[1])
    case (true, "grants", 2): return try await changeGrant(visit, id: parts[1])
    case (false, "orders", 1): return try orderQueue(visit)
    case (false, "orders", 2) where parts[1] == "new": return try orderForm(visit)
    case (true, "orders", 2) where parts[1] == "new": return try await submitOrder(visit)
    case (false, "orders", 2) where parts[1] == "stats": return try orderStats(visit)
    case (false, "orders", 2): return try orderDetail(visit, id: parts[1])
    case (true, "orders", 3) where parts[2] == "act": return try await act(visit, id: parts[1])
    case (true, "orders", 3) where parts[2] == "attach": return try await attach(visit, id: parts[1])
    case (false, "orders", 4) where parts[2] == "attachments": return try await attachment(visit, id: parts[3])
    case (false, "people", 1): return try peopleSearch(visit)
    case (false, "people", 2): return try person(visit, id: parts[1])
    case (false, "node", 1): return try nodeStatus(visit)
    default:
      throw RPCError(.notFound, "没有这个页面")
    }
  }
}
