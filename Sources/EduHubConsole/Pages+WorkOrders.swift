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

extension Console {
  static let openStates: [Eduhub_Workorder_V1_OrderState] = [.submitted, .accepted, .inProgress, .waitingRequester, .resolved]

  /// Whether an order's resolution clock has run out (or runs out before `now`).
  static func overdue(_ order: Eduhub_Workorder_V1_WorkOrder, now: Int64) -> Bool {
    guard openStates.contains(order.state), order.state != .resolved else { return false }
    return order.sla.resolutionBreached || (order.sla.resolutionDueMs > 0 && order.sla.resolutionDueMs < now)
  }

  /// GET /orders: the queue by state and SLA, overdue first.
  func orderQueue(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_ListOrdersRequest()
    let queues: [(String, Eduhub_Workorder_V1_Queue, String)] = [
      ("all", .all, "全部可见"), ("mine", .submittedByMe, "我提交的"), ("assigned", .assignedToMe, "指派给我"), ("org", .myOrg, "本单位"),
      ("watched", .watched, "我关注的"),
    ]
    let queueKey = queues.contains { $0.0 == visit.query("queue") } ? visit.query("queue") : "all"
    request.queue = queues.first { $0.0 == queueKey }?.1 ?? .all
    let stateKey = visit.query("state").isEmpty ? "open" : visit.query("state")
    let states: [(String, [Eduhub_Workorder_V1_OrderState], String)] =
      [("open", Self.openStates, "未关闭"), ("all", [], "全部")]
      + [Eduhub_Workorder_V1_OrderState.submitted, .accepted, .inProgress, .waitingRequester, .resolved, .closed, .rejected, .cancelled].map {
        (String($0.rawValue), [$0], Labels.order($0))
      }
    request.states = states.first { $0.0 == stateKey }?.1 ?? Self.openStates
    request.page.pageSize = 30
    // Overdue first, then the nearest resolution deadline, then the newest (across every page).
    request.sort = .urgent
    request.page.pageToken = String(visit.query("page").prefix(200))
    let response = try node.workOrders.listOrders(request, caller: caller)
    let now = node.identity.nowMs()
    func link(queue: String, state: String) -> String { "/orders?queue=" + FormCoding.encode(queue) + "&state=" + FormCoding.encode(state) }
    let orders = response.orders.map { order -> [String: Any] in
      [
        "id": order.id, "href": "/orders/" + FormCoding.encode(order.id), "title": order.title, "kind": Labels.orderKind(order.kind),
        "priority": Labels.priority(order.priority), "state": Labels.order(order.state), "org": order.submittingOrgCode,
        "created": Labels.time(order.createdMs), "due": Labels.time(order.sla.resolutionDueMs), "overdue": Self.overdue(order, now: now),
        "warning": order.sla.warning && !Self.overdue(order, now: now),
      ]
    }
    var context: [String: Any] = [
      "orders": orders, "empty": orders.isEmpty, "total": response.total,
      "queues": queues.map { ["label": $0.2, "href": link(queue: $0.0, state: stateKey), "current": $0.0 == queueKey] },
      "states": states.map { ["label": $0.2, "href": link(queue: queueKey, state: $0.0), "current": $0.0 == stateKey] },
      "maySubmit": caller.holdsAnywhere(.ordersSubmit),
    ]
    if !response.page.nextPageToken.isEmpty {
      context["next"] = link(queue: queueKey, state: stateKey) + "&page=" + FormCoding.encode(response.page.nextPageToken)
    }
    return view.page("orders", title: "工单", section: "orders", visit: visit, context: context)
  }

  /// The actions a caller may be offered on an order in its state (the service decides).
  static func actions(for order: Eduhub_Workorder_V1_WorkOrder, caller: Caller) -> [Eduhub_Workorder_V1_Action] {
    let isSubmitter = caller.accountID == order.submitter
    let handles = caller.can(.ordersHandle, at: order.orgPath)
    var offered: [Eduhub_Workorder_V1_Action] = []
    if handles { offered += [.accept, .start, .askRequester, .resolve, .escalate, .reject] }
    if isSubmitter { offered += [.answer, .verifyClose, .reopen, .cancel] }
    offered.append(.comment)
    return offered.filter { OrderMachine.transition($0, from: order.state) != nil }
  }

  /// GET /orders/{id}: the order, its timeline, attachments and every action the caller may take.
  func orderDetail(_ visit: Visit, id: String) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_GetOrderRequest()
    request.id = id
    let detail = try node.workOrders.getOrder(request, caller: caller)
    let order = detail.order
    let now = node.identity.nowMs()
    let names = node.identity.usernames(for: Set(detail.timeline.map(\.actor) + detail.attachments.map(\.uploadedBy)))
    let context: [String: Any] = [
      "id": order.id, "encoded": FormCoding.encode(order.id), "title": order.title, "description": order.description_p,
      "kind": Labels.orderKind(order.kind), "priority": Labels.priority(order.priority), "state": Labels.order(order.state),
      "org": order.submittingOrgCode, "serviceOrg": order.serviceOrgCode, "assignee": order.assignee, "assigneeOrg": order.assigneeOrgCode,
      "resource": order.resourceCode, "resourceHref": "/catalog/" + FormCoding.encode(order.resourceCode), "record": order.recordRef, "created": Labels.time(order.createdMs), "version": order.version,
      "due": Labels.time(order.sla.resolutionDueMs), "overdue": Self.overdue(order, now: now), "feedback": order.feedback,
      "firstResponse": order.sla.firstResponseMinutes > 0 ? Labels.minutes(order.sla.firstResponseMinutes) : "",
      "resolutionTarget": Labels.minutes(order.sla.resolutionTargetMinutes),
      "timeline": detail.timeline.map { event -> [String: Any] in
        [
          "time": Labels.time(event.timeMs), "actor": names[event.actor] ?? event.actor, "action": Labels.action(event.action),
          "to": event.fromState != event.toState ? Labels.order(event.toState) : "", "note": event.note, "superseded": event.superseded,
        ]
      },
      "attachments": detail.attachments.map { attachment -> [String: Any] in
        [
          "name": attachment.fileName, "size": attachment.size, "by": names[attachment.uploadedBy] ?? attachment.uploadedBy, "time": Labels.time(attachment.uploadedMs),
          "href": "/orders/" + FormCoding.encode(order.id) + "/attachments/" + FormCoding.encode(attachment.id),
        ]
      },
      "actions": Self.actions(for: order, caller: caller).map { ["value": $0.rawValue, "label": Labels.action($0)] },
      "handles": caller.can(.ordersHandle, at: order.orgPath),
    ]
    return view.page("order", title: order.title, section: "orders", visit: visit, context: context)
  }

  /// POST /orders/{id}/act: `WorkOrderService.act`, with the version the page showed.
  func act(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_ActRequest()
    request.orderID = id
    guard let number = Int(visit.field("action")), let action = Eduhub_Workorder_V1_Action(rawValue: number) else {
      throw RPCError(.invalidArgument, "请选择要执行的操作")
    }
    request.action = action
    request.expectedVersion = Int64(visit.field("version")) ?? 0
    request.note = visit.field("note")
    request.assigneeOrgCode = visit.field("assignee_org")
    request.assignee = visit.field("assignee")
    let orders = node.workOrders
    let peer = visit.peer
    _ = try await node.identity.store.blocking { [request] in try orders.act(request, caller: caller, peer: peer) }
    return ConsoleView.redirect(
      "/orders/" + FormCoding.encode(id) + "?" + visit.notice("已" + Labels.action(action)), cookies: visit.cookies)
  }

  /// GET /orders/new: the submission form.
  func orderForm(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    guard caller.holdsAnywhere(.ordersSubmit) else { throw RPCError(.permissionDenied, "你的账号不能提交工单（orders.submit）") }
    let kinds: [Eduhub_Workorder_V1_OrderKind] = [.dataQuality, .dataRequest, .dataCorrection, .accessProblem, .safetyHazard]
    let context: [String: Any] = [
      "kinds": kinds.map { ["value": $0.rawValue, "label": Labels.orderKind($0)] },
      "resource": String(visit.query("resource").prefix(64)), "limitMiB": WorkOrderService.attachmentLimit >> 20,
    ]
    return view.page("order-new", title: "提交工单", section: "orders", visit: visit, context: context)
  }

  /// POST /orders/new: `WorkOrderService.submit`, then the attachment if one came with it.
  func submitOrder(_ visit: Visit) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_SubmitRequest()
    guard let kind = Int(visit.field("kind")).flatMap(Eduhub_Workorder_V1_OrderKind.init(rawValue:)),
      let priority = Int(visit.field("priority")).flatMap(Eduhub_Workorder_V1_Priority.init(rawValue:))
    else { throw RPCError(.invalidArgument, "请选择工单类型和优先级") }
    request.order.kind = kind
    request.order.priority = priority
    request.order.title = visit.field("title")
    request.order.description_p = visit.form["description"]?.first ?? ""
    request.order.resourceCode = visit.field("resource")
    request.order.recordRef = visit.field("record")
    let order = try await node.workOrders.submit(request, caller: caller, peer: visit.peer)
    if let file = visit.files.first(where: { $0.name == "attachment" && !$0.data.isEmpty }) {
      _ = try await addAttachment(file, to: order.id, caller: caller, peer: visit.peer)
    }
    return ConsoleView.redirect(
      "/orders/" + FormCoding.encode(order.id) + "?" + visit.notice("工单已提交"), cookies: visit.cookies)
  }

  /// POST /orders/{id}/attach: an attachment added to an order.
  func attach(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    guard let file = visit.files.first(where: { $0.name == "attachment" && !$0.data.isEmpty }) else {
      throw RPCError(.invalidArgument, "请选择要上传的文件")
    }
    _ = try await addAttachment(file, to: id, caller: caller, peer: visit.peer)
    return ConsoleView.redirect("/orders/" + FormCoding.encode(id) + "?" + visit.notice("附件已上传"), cookies: visit.cookies)
  }

  private func addAttachment(_ file: Multipart.Part, to orderID: String, caller: Caller, peer: String) async throws
    -> Eduhub_Workorder_V1_Attachment
  {
    var chunk = Eduhub_Workorder_V1_AttachmentChunk()
    chunk.orderID = orderID
    // Browsers send the bare name; some older ones the whole path: keep the last component.
    let name = (file.fileName ?? "").split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
    chunk.fileName = name
    chunk.contentType = String((file.contentType ?? "").prefix(100))
    chunk.data = Data(file.data)
    let chunks = AsyncThrowingStream<Eduhub_Workorder_V1_AttachmentChunk, any Error> { continuation in
      continuation.yield(chunk)
      continuation.finish()
    }
    return try await node.workOrders.addAttachment(chunks, caller: caller, peer: peer)
  }

  /// GET /orders/{id}/attachments/{attachment}: the file, as a download (never shown inline: an
  /// uploaded file is not trusted to be what its name says).
  func attachment(_ visit: Visit, id: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_GetAttachmentRequest()
    request.id = id
    var bytes: [UInt8] = []
    var fileName = ""
    try await node.workOrders.getAttachment(request, caller: caller) { chunk in
      if chunk.hasAttachment { fileName = chunk.attachment.fileName }
      if !chunk.fileName.isEmpty { fileName = chunk.fileName }
      bytes += chunk.data
    }
    let name = fileName.isEmpty ? "attachment" : fileName
    var headers: [(name: String, value: String)] = [
      ("content-type", "application/octet-stream"), ("x-content-type-options", "nosniff"), ("cache-control", "no-store"),
      ("content-disposition", "attachment; filename=\"download\"; filename*=UTF-8''" + FormCoding.encode(name)),
      ("content-security-policy", "default-src 'none'; sandbox"),
    ]
    headers += visit.cookies.map { ("set-cookie", $0) }
    return HTTPResponse(status: 200, headers: headers, body: bytes)
  }

  /// GET /orders/stats: counts and SLA attainment, with charts drawn by the server.
  func orderStats(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Workorder_V1_StatsRequest()
    request.orgCode = String(visit.query("org").prefix(40))
    let stats = try node.workOrders.getStats(request, caller: caller)
    // SLA attainment month by month, the last six months (one statistics call each).
    let now = node.identity.nowMs()
    var months: [(label: String, value: Double?)] = []
    let (year, month, _) = Labels.civil((now / 1000 + 8 * 3600) / 86_400)
    for back in (0..<6).reversed() {
      var y = year
      var m = month - Int64(back)
      while m < 1 { m += 12; y -= 1 }
      let start = Self.chinaMidnight(y, m)
      let end = m == 12 ? Self.chinaMidnight(y + 1, 1) : Self.chinaMidnight(y, m + 1)
      var window = request
      window.fromMs = start
      window.toMs = min(end, now)
      let monthly = try node.workOrders.getStats(window, caller: caller)
      months.append(("\(m)月", monthly.resolution.count > 0 ? monthly.resolutionAttainment : nil))
    }
    let byOrg = stats.byOrg.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(20)
    let context: [String: Any] = [
      "total": stats.total, "org": request.orgCode,
      "attainment": String(format: "%.1f%%", stats.resolutionAttainment * 100),
      "firstAttainment": String(format: "%.1f%%", stats.firstResponseAttainment * 100),
      "median": Labels.minutes(stats.resolution.medianMinutes), "p90": Labels.minutes(stats.resolution.p90Minutes),
      "reopen": String(format: "%.1f%%", stats.reopenRate * 100),
      "byState": stats.byState.sorted { $0.key < $1.key }.map { ["name": Self.stateLabel($0.key), "count": $0.value] },
      "byOrgChart": SVGChart.bars(title: "各单位工单数", items: byOrg.map { ($0.key, Double($0.value)) }),
      "slaChart": SVGChart.line(title: "按月解决时限达成率", points: months, percent: true),
      "byOrgTable": byOrg.map { ["name": $0.key, "count": $0.value] },
      "monthsTable": months.map { ["label": $0.label, "value": $0.value.map { String(format: "%.1f%%", $0 * 100) } ?? "—"] },
    ]
    return view.page("order-stats", title: "工单统计", section: "orders", visit: visit, context: context)
  }

  /// Midnight at the start of day 1 of a month, China time, in Unix milliseconds.
  static func chinaMidnight(_ year: Int64, _ month: Int64) -> Int64 {
    // Days from civil (the inverse of Labels.civil).
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = month > 2 ? month - 3 : month + 9
    let doy = (153 * mp + 2) / 5
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    return (days * 86_400 - 8 * 3600) * 1000
  }

  /// A state as `Stats.by_state` names it (the enum's proto name or number) in Chinese.
  static func stateLabel(_ key: String) -> String {
    for state in [Eduhub_Workorder_V1_OrderState.submitted, .accepted, .inProgress, .waitingRequester, .resolved, .closed, .rejected, .cancelled]
    where key == OrderMachine.name(state) || key == String(state.rawValue) {
      return Labels.order(state)
    }
    return key
  }

  static let orderTemplates: [String: String] = [
    "orders": """
      <div class="actions">
      {{#maySubmit}}<a class="button primary" href="/orders/new" id="new-order">提交工单</a>{{/maySubmit}}
      <a class="button" href="/orders/stats">统计</a>
      </div>
      <nav aria-label="队列" class="tabs"><ul>{{#queues}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a></li>{{/queues}}</ul></nav>
      <nav aria-label="状态" class="tabs"><ul>{{#states}}<li><a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a></li>{{/states}}</ul></nav>
      <p class="total">共 {{total}} 个工单（超时的排在最前）</p>
      {{#empty}}<p class="muted">这个队列里没有工单。</p>{{/empty}}
      {{^empty}}
      <div class="scroll"><table id="orders"><caption class="visually-hidden">工单</caption>
      <thead><tr><th scope="col">标题</th><th scope="col">类型</th><th scope="col">优先级</th><th scope="col">状态</th><th scope="col">提交单位</th><th scope="col">提交时间</th><th scope="col">解决期限</th></tr></thead>
      <tbody>
      {{#orders}}<tr{{#overdue}} class="overdue"{{/overdue}}><td><a href="{{href}}">{{title}}</a>{{#overdue}} <span class="tag danger">已超时</span>{{/overdue}}{{#warning}} <span class="tag warn">临近超时</span>{{/warning}}</td><td>{{kind}}</td><td>{{priority}}</td><td>{{state}}</td><td>{{org}}</td><td>{{created}}</td><td>{{due}}</td></tr>{{/orders}}
      </tbody></table></div>
      {{/empty}}
      {{#next}}<p><a href="{{next}}" rel="next">下一页</a></p>{{/next}}
      """,
    "order": """
      <p class="meta"><span class="tag state" id="order-state">{{state}}</span> <span class="tag">{{kind}}</span> <span class="tag">{{priority}}</span>{{#overdue}} <span class="tag danger">已超时</span>{{/overdue}}
      工单号 {{id}} · 提交单位 {{org}} · 承办单位 {{serviceOrg}}{{#assigneeOrg}} · 指派 {{assigneeOrg}}{{/assigneeOrg}}{{#assignee}} / {{assignee}}{{/assignee}}</p>
      <p class="meta">提交于 {{created}} · 解决时限 {{resolutionTarget}}{{#due}} · 期限 {{due}}{{/due}}{{#firstResponse}} · 首次响应用时 {{firstResponse}}{{/firstResponse}}</p>
      {{#resource}}<p class="meta">相关资源 <a href="{{resourceHref}}">{{resource}}</a>{{#record}} · 记录 {{record}}{{/record}}</p>{{/resource}}
      <div class="prose">{{description}}</div>
      {{#feedback}}<p>处理结果：{{feedback}}</p>{{/feedback}}
      <h2>处理记录</h2>
      <ol class="timeline" id="timeline">
      {{#timeline}}<li{{#superseded}} class="superseded"{{/superseded}}><span class="muted">{{time}}</span> {{actor}} <strong>{{action}}</strong>{{#to}} → {{to}}{{/to}}{{#note}}：{{note}}{{/note}}</li>{{/timeline}}
      </ol>
      <h2>附件</h2>
      <ul class="plain">{{#attachments}}<li><a href="{{href}}" download>{{name}}</a> <span class="muted">{{size}} 字节 · {{by}} · {{time}}</span></li>{{/attachments}}</ul>
      <form method="post" action="/orders/{{encoded}}/attach" enctype="multipart/form-data" class="inline">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <label for="attachment">上传附件</label> <input id="attachment" type="file" name="attachment"> <button type="submit">上传</button>
      </form>
      <h2>操作</h2>
      <form method="post" action="/orders/{{encoded}}/act" class="stack" id="act-form">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <input type="hidden" name="version" value="{{version}}">
      <label for="note">说明</label>
      <textarea id="note" name="note" rows="3" maxlength="10000"></textarea>
      {{#handles}}
      <details><summary>转派或升级时填写</summary>
      <label for="assignee_org">承办单位代码</label><input id="assignee_org" name="assignee_org" maxlength="40">
      <label for="assignee">承办人账号</label><input id="assignee" name="assignee" maxlength="64">
      </details>
      {{/handles}}
      <div class="actions">{{#actions}}<button type="submit" name="action" value="{{value}}">{{label}}</button>{{/actions}}</div>
      </form>
      """,
    "order-new": """
      <p class="muted" id="order-privacy">工单的标题、描述和附件会被处理单位的工作人员看到：请勿填写学生姓名、身份证号、电话等个人信息，用“相关记录”填写记录编号即可。</p>
      <form method="post" action="/orders/new" enctype="multipart/form-data" class="stack" id="order-form">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      <label for="kind">类型</label>
      <select id="kind" name="kind">{{#kinds}}<option value="{{value}}">{{label}}</option>{{/kinds}}</select>
      <label for="priority">优先级</label>
      <select id="priority" name="priority"><option value="1">P1 紧急</option><option value="2">P2 高</option><option value="3" selected>P3 中</option><option value="4">P4 低</option></select>
      <label for="title">标题</label>
      <input id="title" name="title" required maxlength="200">
      <label for="description">问题描述</label>
      <textarea id="description" name="description" rows="5" maxlength="10000"></textarea>
      <label for="resource">相关资源编码（可选）</label>
      <input id="resource" name="resource" value="{{resource}}" maxlength="64">
      <label for="record">相关记录编号（可选，如学生编号 S5117030001-0001）</label>
      <input id="record" name="record" maxlength="200">
      <label for="attachment">附件（可选，最大 {{limitMiB}} MiB）</label>
      <input id="attachment" type="file" name="attachment">
      <button type="submit" class="primary" id="submit-order">提交</button>
      </form>
      """,
    "order-stats": """
      <form method="get" action="/orders/stats" class="inline">
      <label for="org">单位代码</label> <input id="org" name="org" value="{{org}}" maxlength="40" placeholder="空为全部可见">
      <button type="submit">查看</button>
      </form>
      <ul class="figures">
      <li><span class="label">工单总数</span> <strong id="stats-total">{{total}}</strong></li>
      <li><span class="label">解决时限达成率</span> <strong>{{attainment}}</strong></li>
      <li><span class="label">首次响应达成率</span> <strong>{{firstAttainment}}</strong></li>
      <li><span class="label">解决用时中位数</span> <strong>{{median}}</strong></li>
      <li><span class="label">解决用时 P90</span> <strong>{{p90}}</strong></li>
      <li><span class="label">重开率</span> <strong>{{reopen}}</strong></li>
      </ul>
      <div class="charts">
      <figure>{{{byOrgChart}}}<figcaption>各单位工单数</figcaption></figure>
      <figure>{{{slaChart}}}<figcaption>近六个月解决时限达成率</figcaption></figure>
      </div>
      <h2>按状态</h2>
      <table><caption class="visually-hidden">按状态</caption><thead><tr><th scope="col">状态</th><th scope="col">数量</th></tr></thead>
      <tbody>{{#byState}}<tr><td>{{name}}</td><td>{{count}}</td></tr>{{/byState}}</tbody></table>
      <h2>按月达成率</h2>
      <table><caption class="visually-hidden">按月达成率</caption><thead><tr><th scope="col">月份</th><th scope="col">达成率</th></tr></thead>
      <tbody>{{#monthsTable}}<tr><td>{{label}}</td><td>{{value}}</td></tr>{{/monthsTable}}</tbody></table>
      """,
  ]
}
