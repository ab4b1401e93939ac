import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubSync
import EduHubWorkOrders

extension Console {
  /// The orgs a caller may ask for data for (its share.request scopes).
  static func consumerOrgs(_ caller: Caller) -> [String] {
    var seen = Set<String>()
    return caller.scopes(for: .shareRequest).compactMap { scope in
      let code = String(scope.split(separator: "/").last ?? "")
      return !code.isEmpty && seen.insert(code).inserted ? code : nil
    }
  }

  /// GET /catalog/{code}/apply: purpose, fields, duration, masking.
  func applyForm(_ visit: Visit, code: String) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var get = Eduhub_Catalog_V1_GetResourceRequest()
    get.code = code
    let resource = try node.catalog.getResource(get, caller: caller, peer: visit.peer)
    let orgs = Self.consumerOrgs(caller)
    guard !orgs.isEmpty else { throw RPCError(.permissionDenied, "你的账号没有申请数据的权限（share.request）") }
    let context: [String: Any] = [
      "name": resource.name, "code": resource.code, "encoded": FormCoding.encode(resource.code),
      "fields": resource.fields.map { field -> [String: Any] in
        [
          "name": field.name, "description": field.description_p, "sensitivity": Labels.sensitivity(field.sensitivity),
          "personal": field.sensitivity == .sensitive || field.sensitivity == .highlySensitive,
        ]
      },
      "orgs": orgs.enumerated().map { ["code": $0.element, "first": $0.offset == 0] },
      "conditional": resource.sharingClass == .conditional,
    ]
    return view.page("apply", title: "申请使用：" + resource.name, section: "catalog", visit: visit, context: context)
  }

  /// POST /catalog/{code}/apply: `SharingService.requestAccess`.
  func apply(_ visit: Visit, code: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Sharing_V1_RequestAccessRequest()
    request.terms.resourceCode = code
    request.terms.consumer.kind = .org
    request.terms.consumer.id = visit.field("org")
    request.terms.purpose = visit.field("purpose")
    request.terms.fields = visit.fields("fields")
    switch visit.field("masking") {
    case "clear": request.terms.masking = .clear
    case "deidentified": request.terms.masking = .deidentified
    default: request.terms.masking = .masked
    }
    guard let days = Int64(visit.field("days")), (1...3650).contains(days) else {
      throw RPCError(.invalidArgument, "使用期限须为 1 到 3650 天")
    }
    request.terms.expiresMs = node.identity.nowMs() + days * 86_400_000
    let sharing = node.sharing
    let peer = visit.peer
    let made = try await node.identity.store.blocking { [request] in try sharing.requestAccess(request, caller: caller, peer: peer) }
    return ConsoleView.redirect("/requests?" + visit.notice("申请 \(made.id) 已提交，等待审批"), cookies: visit.cookies)
  }

  /// A request as the pages show it.
  /// - Parameter names: usernames by account id, for the chain's steps.
  static func requestContext(_ request: Eduhub_Sharing_V1_AccessRequest, names: [String: String]) -> [String: Any] {
    [
      "id": request.id, "resource": request.terms.resourceCode, "resourceHref": "/catalog/" + FormCoding.encode(request.terms.resourceCode),
      "consumer": request.terms.consumer.id, "purpose": request.terms.purpose,
      "fields": request.terms.fields.isEmpty ? "全部字段" : request.terms.fields.joined(separator: "、"),
      "masking": Labels.maskingLevel(request.terms.masking), "expires": Labels.day(request.terms.expiresMs),
      "state": Labels.request(request.state), "version": request.version, "created": Labels.time(request.createdMs),
      "security": request.needsSecurityOfficer, "encoded": FormCoding.encode(request.id),
      "open": request.state == .pendingSteward || request.state == .pendingSecurity || request.state == .changesRequested,
      "steps": request.steps.map { step -> [String: Any] in
        ["actor": names[step.actor] ?? step.actor, "action": Labels.step(step.action), "reason": step.reason, "time": Labels.time(step.timeMs)]
      },
    ]
  }

  static func grantContext(_ grant: Eduhub_Sharing_V1_Grant) -> [String: Any] {
    [
      "id": grant.id, "encoded": FormCoding.encode(grant.id), "resource": grant.terms.resourceCode,
      "resourceHref": "/catalog/" + FormCoding.encode(grant.terms.resourceCode), "consumer": grant.terms.consumer.id,
      "state": Labels.grant(grant.state), "expires": Labels.day(grant.terms.expiresMs), "reason": grant.reason,
      "masking": Labels.maskingLevel(grant.terms.masking), "active": grant.state == .active, "suspended": grant.state == .suspended,
      "live": grant.state == .active || grant.state == .suspended,
    ]
  }

  /// GET /requests: the caller's requests and grants, with their state.
  func myRequests(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var list = Eduhub_Sharing_V1_ListRequestsRequest()
    list.filter = .mine
    list.page.pageSize = 100
    let found = try node.sharing.listRequests(list, caller: caller).requests
    let names = node.identity.usernames(for: Set(found.flatMap { $0.steps.map(\.actor) }))
    let requests = found.map { Self.requestContext($0, names: names) }
    var grants = Eduhub_Sharing_V1_ListGrantsRequest()
    grants.mine = true
    grants.page.pageSize = 100
    let granted = try node.sharing.listGrants(grants, caller: caller).grants.map(Self.grantContext)
    return view.page(
      "requests", title: "我的申请与授权", section: "requests", visit: visit,
      context: ["requests": requests, "grants": granted, "noRequests": requests.isEmpty, "noGrants": granted.isEmpty])
  }

  /// POST /requests/{id}/withdraw.
  func withdraw(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Sharing_V1_WithdrawRequestRequest()
    request.requestID = id
    let sharing = node.sharing
    let peer = visit.peer
    _ = try await node.identity.store.blocking { [request] in try sharing.withdrawRequest(request, caller: caller, peer: peer) }
    return ConsoleView.redirect("/requests?" + visit.notice("申请已撤回"), cookies: visit.cookies)
  }

  /// GET /approvals: what waits for this steward or security officer, and the grants they steward.
  func approvals(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var list = Eduhub_Sharing_V1_ListRequestsRequest()
    list.filter = .toDecide
    list.page.pageSize = 100
    let pending = try node.sharing.listRequests(list, caller: caller).requests
    let names = node.identity.usernames(for: Set(pending.flatMap { $0.steps.map(\.actor) }))
    let waiting = pending.map { Self.requestContext($0, names: names) }
    var grants: [[String: Any]] = []
    if caller.holdsAnywhere(.catalogPublish) {
      var all = Eduhub_Sharing_V1_ListGrantsRequest()
      all.page.pageSize = 100
      grants = try node.sharing.listGrants(all, caller: caller).grants.map(Self.grantContext)
    }
    return view.page(
      "approvals", title: "审批", section: "approvals", visit: visit,
      context: ["requests": waiting, "grants": grants, "noRequests": waiting.isEmpty, "noGrants": grants.isEmpty])
  }

  /// POST /approvals/{id}: approve, reject or ask for changes, with a reason.
  func decide(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var decision = Eduhub_Sharing_V1_DecideRequest()
    decision.requestID = id
    decision.reason = visit.field("reason")
    decision.expectedVersion = Int32(visit.field("version")) ?? 0
    switch visit.field("decision") {
    case "approve": decision.decision = .approve
    case "reject": decision.decision = .reject
    case "changes": decision.decision = .askChanges
    default: throw RPCError(.invalidArgument, "请选择批准、驳回或要求修改")
    }
    let sharing = node.sharing
    let peer = visit.peer
    let decided = try await node.identity.store.blocking { [decision] in try sharing.decide(decision, caller: caller, peer: peer) }
    return ConsoleView.redirect("/approvals?" + visit.notice("申请 \(decided.id)：\(Labels.request(decided.state))"), cookies: visit.cookies)
  }

  /// POST /grants/{id}: suspend, resume or revoke a grant, with a reason.
  func changeGrant(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var change = Eduhub_Sharing_V1_ChangeGrantRequest()
    change.grantID = id
    change.reason = visit.field("reason")
    switch visit.field("action") {
    case "suspend": change.action = .suspend
    case "resume": change.action = .resume
    case "revoke": change.action = .revoke
    default: throw RPCError(.invalidArgument, "请选择暂停、恢复或撤销")
    }
    let sharing = node.sharing
    let peer = visit.peer
    let changed = try await node.identity.store.blocking { [change] in try sharing.changeGrant(change, caller: caller, peer: peer) }
    return ConsoleView.redirect("/approvals?" + visit.notice("授权 \(changed.id)：\(Labels.grant(changed.state))"), cookies: visit.cookies)
  }

  static let sharingTemplates: [String: String] = [
    "apply": """
      <p class="muted">资源编码 <code>{{code}}</code>。{{#conditional}}有条件共享的资源需经数据管理员审批；申请含未成年人个人信息的字段时，还需数据安全官审批。{{/conditional}}</p>
      <form method="post" action="/catalog/{{encoded}}/apply" class="stack" id="apply-form">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <label for="org">申请单位</label>
      <select id="org" name="org">{{#orgs}}<option value="{{code}}"{{#first}} selected{{/first}}>{{code}}</option>{{/orgs}}</select>
      <label for="purpose">用途说明</label>
      <textarea id="purpose" name="purpose" required maxlength="2000" rows="3" placeholder="例如：学位预警分析"></textarea>
      <fieldset><legend>申请字段（不选即全部字段）</legend>
      {{#fields}}<label class="check"><input type="checkbox" name="fields" value="{{name}}"> <code>{{name}}</code> {{description}} {{#personal}}<span class="tag warn">{{sensitivity}}</span>{{/personal}}</label>{{/fields}}
      </fieldset>
      <fieldset><legend>数据形式</legend>
      <label class="check"><input type="radio" name="masking" value="masked" checked> 脱敏</label>
      <label class="check"><input type="radio" name="masking" value="deidentified"> 去标识化</label>
      <label class="check"><input type="radio" name="masking" value="clear"> 明文（需说明理由，审批更严格）</label>
      </fieldset>
      <label for="days">使用期限</label>
      <select id="days" name="days"><option value="30">30 天</option><option value="90" selected>90 天</option><option value="180">180 天</option><option value="365">1 年</option></select>
      <button type="submit" class="primary" id="submit-apply">提交申请</button>
      </form>
      """,
    "requests": """
      <h2>申请</h2>
      {{#noRequests}}<p class="muted">还没有申请。在数据目录里找到资源后点“申请使用”。</p>{{/noRequests}}
      {{#requests}}
      <article class="card request" id="request-{{id}}">
      <h3><a href="{{resourceHref}}">{{resource}}</a> <span class="tag state">{{state}}</span></h3>
      <p class="meta">申请号 {{id}} · 申请单位 {{consumer}} · {{masking}} · 至 {{expires}} · 提交于 {{created}}</p>
      <p>用途：{{purpose}}</p><p class="meta">字段：{{fields}}</p>
      <ol class="steps">{{#steps}}<li>{{time}} {{actor}} {{action}}{{#reason}}：{{reason}}{{/reason}}</li>{{/steps}}</ol>
      {{#open}}<form method="post" action="/requests/{{encoded}}/withdraw"><input type="hidden" name="_csrf" value="{{csrf}}"><button type="submit">撤回申请</button></form>{{/open}}
      </article>
      {{/requests}}
      <h2>授权</h2>
      {{#noGrants}}<p class="muted">还没有生效的授权。</p>{{/noGrants}}
      <ul class="plain">{{#grants}}<li><a href="{{resourceHref}}">{{resource}}</a> <span class="tag state">{{state}}</span> <span class="muted">{{id}} · {{consumer}} · {{masking}} · 至 {{expires}}{{#reason}} · {{reason}}{{/reason}}</span></li>{{/grants}}</ul>
      """,
    "approvals": """
      <h2>待我审批</h2>
      {{#noRequests}}<p class="muted" id="nothing-to-decide">没有待审批的申请。</p>{{/noRequests}}
      {{#requests}}
      <article class="card request" id="request-{{id}}">
      <h3><a href="{{resourceHref}}">{{resource}}</a> <span class="tag state">{{state}}</span>{{#security}} <span class="tag warn">含未成年人个人信息</span>{{/security}}</h3>
      <p class="meta">申请号 {{id}} · 申请单位 {{consumer}} · {{masking}} · 至 {{expires}}</p>
      <p>用途：{{purpose}}</p><p class="meta">字段：{{fields}}</p>
      <h4>审批链</h4>
      <ol class="steps">{{#steps}}<li>{{time}} {{actor}} {{action}}{{#reason}}：{{reason}}{{/reason}}</li>{{/steps}}</ol>
      <form method="post" action="/approvals/{{encoded}}" class="stack decide">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <input type="hidden" name="version" value="{{version}}">
      <label for="reason-{{id}}">意见</label>
      <textarea id="reason-{{id}}" name="reason" rows="2" maxlength="2000"></textarea>
      <div class="actions">
      <button type="submit" name="decision" value="approve" class="primary">批准</button>
      <button type="submit" name="decision" value="changes">要求修改</button>
      <button type="submit" name="decision" value="reject" class="danger">驳回</button>
      </div>
      </form>
      </article>
      {{/requests}}
      <h2>我管理的授权</h2>
      {{#noGrants}}<p class="muted">没有授权。</p>{{/noGrants}}
      {{#grants}}
      <article class="card grant" id="grant-{{id}}">
      <p><a href="{{resourceHref}}">{{resource}}</a> → {{consumer}} <span class="tag state">{{state}}</span> <span class="muted">{{id}} · {{masking}} · 至 {{expires}}{{#reason}} · {{reason}}{{/reason}}</span></p>
      {{#live}}
      <form method="post" action="/grants/{{encoded}}" class="inline">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <input id="grant-reason-{{id}}" name="reason" aria-label="理由" placeholder="理由" maxlength="2000">
      {{#active}}<button type="submit" name="action" value="suspend">暂停</button>{{/active}}
      {{#suspended}}<button type="submit" name="action" value="resume">恢复</button>{{/suspended}}
      <button type="submit" name="action" value="revoke" class="danger">撤销</button>
      </form>
      {{/live}}
      </article>
      {{/grants}}
      """,
  ]
}
