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
  /// A downstream node that has not pulled for this long is shown offline.
  static let offlineAfterMs: Int64 = 15 * 60_000

  /// GET /node: this node's upstream and sync state; for county and central, each downstream
  /// node's last contact and lag; conflicts; shared-API call statistics. For node managers
  /// (`nodes.manage`), on the orgs they manage.
  func nodeStatus(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    let identity = node.data.identity
    let scopes = caller.scopes(for: .nodesManage)
    guard !scopes.isEmpty else { throw RPCError(.permissionDenied, "节点状态仅对节点管理员开放（nodes.manage）") }
    // The org the page is about: the one asked for, else the caller's first managed org.
    let org = visit.query("org").isEmpty ? String(scopes[0].split(separator: "/").last ?? "") : String(visit.query("org").prefix(32))
    let now = node.identity.nowMs()
    var context: [String: Any] = [
      "nodeID": identity.nodeID, "role": identity.role.rawValue, "scope": identity.scope.isEmpty ? "全市" : identity.scope,
      "upstream": node.data.upstream ?? "", "org": org,
    ]
    if let status = syncStatus() {
      context["sync"] = [
        "last": status.lastSyncMs.map(Labels.time) ?? "尚未同步", "pending": status.pendingWrites, "conflicts": status.conflicts,
        "firstDone": status.firstSyncDone, "stale": status.lastSyncMs.map { $0 < now - Self.offlineAfterMs } ?? true,
      ] as [String: Any]
    }
    // Downstream nodes the caller manages, with the lag this node sees.
    var list = Eduhub_Sync_V1_ListNodesRequest()
    list.orgCode = org
    // The registry holds this node itself (replicated from upstream) and, at central, the
    // schools enrolled with a county: a node inside another listed node's subtree syncs with that
    // one, which reports its last contact (as of that node's own last push).
    let me = node.data.identity.nodeID
    let nodes = try node.sync.listNodes(list, caller: caller, peer: visit.peer).nodes.filter { $0.id != me }
    let lag = Dictionary((try node.sync.downstream()).map { ($0.nodeID, $0) }, uniquingKeysWith: { first, _ in first })
    let reported = try node.sync.reportedContacts(nodes.map(\.id))
    context["downstream"] = nodes.sorted { $0.id < $1.id }.map { downstream -> [String: Any] in
      // A node that pulls here is seen here; one inside another listed node's subtree (a school
      // enrolled with its county, or with a town below the county) is known from that node's report.
      let seen = lag[downstream.id]
      let relays = nodes.filter { $0.id != downstream.id && !$0.scope.isEmpty && $0.scope != downstream.scope && Caller.covers($0.scope, downstream.scope) }
      let contact = reported[downstream.id].flatMap { contact in relays.contains { $0.id == contact.upstreamNodeID } ? contact : nil }
      let direct = seen?.lastPullMs != nil
      let via = direct ? nil : contact?.upstreamNodeID ?? relays.first?.id
      let last = direct ? seen?.lastPullMs : contact?.lastPullMs
      let behind = (direct ? seen?.behind : contact?.behind) ?? seen?.behind ?? 0
      let offline = downstream.state == .active && (last.map { $0 < now - Self.offlineAfterMs } ?? true)
      let when = last.map(Labels.time) ?? "从未"
      return [
        "id": downstream.id, "org": downstream.orgCode, "state": Self.nodeState(downstream.state),
        "last": via.map { "\(when)（经由 \($0)）" } ?? when, "behind": "\(behind)", "offline": offline,
      ]
    }
    context["hasDownstream"] = !nodes.isEmpty
    var conflicts = Eduhub_Sync_V1_ListConflictsRequest()
    conflicts.orgCode = org
    conflicts.limit = 20
    context["conflicts"] = try node.sync.listConflicts(conflicts, caller: caller, peer: visit.peer).conflicts.map { conflict -> [String: Any] in
      ["collection": conflict.collection, "record": conflict.recordID, "winner": conflict.winningNode, "loser": conflict.losingNode]
    }
    // Shared-API calls of the last 30 days the caller may see.
    let stats = (try? node.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), caller: caller).stats) ?? []
    var byResource: [String: (calls: Int64, failures: Int64, rows: Int64)] = [:]
    for stat in stats {
      var sum = byResource[stat.resourceCode] ?? (0, 0, 0)
      sum.calls += stat.calls
      sum.failures += stat.failures
      sum.rows += stat.rows
      byResource[stat.resourceCode] = sum
    }
    context["calls"] = byResource.sorted { $0.value.calls > $1.value.calls }.prefix(20).map {
      ["resource": $0.key, "calls": $0.value.calls, "failures": $0.value.failures, "rows": $0.value.rows]
    }
    context["hasCalls"] = !byResource.isEmpty
    return view.page("node", title: "节点状态", section: "node", visit: visit, context: context)
  }

  static func nodeState(_ state: Eduhub_Sync_V1_NodeState) -> String {
    switch state {
    case .pending: "待注册"
    case .active: "运行中"
    case .revoked: "已吊销"
    default: "未知"
    }
  }

  static let nodeTemplates: [String: String] = [
    "node": """
      <dl class="record">
      <dt>本节点</dt><dd>{{nodeID}}（{{role}}）</dd>
      <dt>数据范围</dt><dd>{{scope}}</dd>
      {{#upstream}}<dt>上级节点</dt><dd>{{upstream}}</dd>{{/upstream}}
      {{#sync}}
      <dt>上次同步</dt><dd id="last-sync">{{last}}{{#stale}} <span class="tag warn">同步滞后</span>{{/stale}}</dd>
      <dt>待上传写入</dt><dd id="pending">{{pending}}</dd>
      <dt>冲突</dt><dd>{{conflicts}}</dd>
      {{/sync}}
      </dl>
      <h2>下级节点（{{org}}）</h2>
      {{^hasDownstream}}<p class="muted">没有下级节点。</p>{{/hasDownstream}}
      {{#hasDownstream}}
      <table id="downstream"><caption class="visually-hidden">下级节点</caption>
      <thead><tr><th scope="col">节点</th><th scope="col">单位</th><th scope="col">状态</th><th scope="col">最近联系</th><th scope="col">落后变更数</th></tr></thead>
      <tbody>{{#downstream}}<tr{{#offline}} class="offline"{{/offline}}><td>{{id}}</td><td>{{org}}</td><td>{{state}}{{#offline}} <span class="tag danger">离线</span>{{/offline}}</td><td>{{last}}</td><td>{{behind}}</td></tr>{{/downstream}}</tbody>
      </table>
      {{/hasDownstream}}
      <h2>同步冲突</h2>
      <ul class="plain">{{#conflicts}}<li><code>{{collection}}</code> {{record}} <span class="muted">保留 {{winner}} 的值，舍弃 {{loser}} 的值</span></li>{{/conflicts}}</ul>
      {{^conflicts}}<p class="muted">没有冲突。</p>{{/conflicts}}
      <h2>共享接口调用（近 30 天）</h2>
      {{^hasCalls}}<p class="muted">没有调用记录。</p>{{/hasCalls}}
      {{#hasCalls}}
      <table><caption class="visually-hidden">共享接口调用</caption><thead><tr><th scope="col">资源</th><th scope="col">调用</th><th scope="col">失败</th><th scope="col">返回行数</th></tr></thead>
      <tbody>{{#calls}}<tr><td>{{resource}}</td><td>{{calls}}</td><td>{{failures}}</td><td>{{rows}}</td></tr>{{/calls}}</tbody></table>
      {{/hasCalls}}
      """
  ]
}
