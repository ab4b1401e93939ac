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
  /// The search's filters: query parameter, the facet the catalog counts, the request field.
  static let searchFilters: [(parameter: String, facet: String)] = [
    ("org", "org_code"), ("theme", "theme"), ("type", "type"), ("sharing", "sharing_class"), ("system", "publishing_system"),
    ("form", "exchange_form"),
  ]

  /// GET /catalog: search box, facets with counts, results, next page.
  func catalogSearch(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Catalog_V1_SearchResourcesRequest()
    request.query = String(visit.query("q").prefix(200))
    request.orgCode = visit.query("org")
    request.theme = visit.query("theme")
    request.publishingSystem = visit.query("system")
    request.exchangeForm = visit.query("form")
    switch visit.query("type") {
    case "table": request.type = .table
    case "api": request.type = .api
    case "file": request.type = .file
    default: break
    }
    switch visit.query("sharing") {
    case "unconditional": request.sharingClass = .unconditional
    case "conditional": request.sharingClass = .conditional
    case "notShared": request.sharingClass = .notShared
    default: break
    }
    request.followedByMe = visit.query("followed") == "1"
    request.page.pageSize = 20
    request.page.pageToken = String(visit.query("page").prefix(200))
    let response = try node.catalog.searchResources(request, caller: caller, peer: visit.peer)

    // The filters in force, as query parameters (the page token belongs to one search only).
    var current: [(String, String)] = []
    if !request.query.isEmpty { current.append(("q", request.query)) }
    for (parameter, _) in Self.searchFilters where !visit.query(parameter).isEmpty { current.append((parameter, visit.query(parameter))) }
    if request.followedByMe { current.append(("followed", "1")) }
    func link(_ pairs: [(String, String)]) -> String {
      "/catalog" + (pairs.isEmpty ? "" : "?" + pairs.map { $0.0 + "=" + FormCoding.encode($0.1) }.joined(separator: "&"))
    }
    var facets: [[String: Any]] = []
    for (parameter, facetName) in Self.searchFilters {
      guard let facet = response.facets.first(where: { $0.filter == facetName }), !facet.counts.isEmpty else { continue }
      let chosen = visit.query(parameter)
      let values = facet.counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(12).map { value, count -> [String: Any] in
        let others = current.filter { $0.0 != parameter }
        let selected = value == chosen
        return [
          "label": Labels.facetValue(facetName, value), "count": count, "selected": selected,
          "href": link(selected ? others : others + [(parameter, value)]),
        ]
      }
      facets.append(["name": Labels.facetName(facetName), "values": Array(values)])
    }
    let resources = response.resources.map { resource -> [String: Any] in
      [
        "code": resource.code, "name": resource.name, "summary": String(resource.summary.prefix(160)), "theme": resource.theme,
        "type": Labels.type(resource.type), "sharing": Labels.sharing(resource.sharingClass), "org": resource.responsibleOrgCode,
        "updated": Labels.day(resource.updatedMs), "follows": resource.follows, "views": resource.views,
        "href": "/catalog/" + FormCoding.encode(resource.code), "followed": resource.followed,
      ]
    }
    var context: [String: Any] = [
      "q": request.query, "total": response.total, "resources": resources, "facets": facets, "hasFacets": !facets.isEmpty,
      "followedOnly": request.followedByMe, "empty": resources.isEmpty,
    ]
    if !response.page.nextPageToken.isEmpty { context["next"] = link(current + [("page", response.page.nextPageToken)]) }
    if !current.isEmpty { context["clear"] = "/catalog" }
    return view.page("catalog", title: "数据目录", section: "catalog", visit: visit, context: context)
  }

  /// GET /catalog/{code}: fields with their classification, the masked sample, the API manual.
  func resourceDetail(_ visit: Visit, code: String) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Catalog_V1_GetResourceRequest()
    request.code = code
    let resource = try node.catalog.getResource(request, caller: caller, peer: visit.peer)
    let fields = resource.fields.map { field -> [String: Any] in
      [
        "name": field.name, "type": Labels.fieldType(field.type), "description": field.description_p,
        "sensitivity": Labels.sensitivity(field.sensitivity), "masking": Labels.masking(field.masking),
        "personal": field.sensitivity == .sensitive || field.sensitivity == .highlySensitive, "required": field.required,
      ]
    }
    let sample = resource.sample.map { row -> [String: Any] in
      ["values": row.values.map { ["text": Self.text(of: $0)] }, "masked": row.masked]
    }
    let manual = resource.manual
    var context: [String: Any] = [
      "code": resource.code, "name": resource.name, "summary": resource.summary, "theme": resource.theme,
      "type": Labels.type(resource.type), "sharing": Labels.sharing(resource.sharingClass), "org": resource.responsibleOrgCode,
      "system": resource.publishingSystem, "cycle": resource.updateCycle, "updated": Labels.time(resource.updatedMs),
      "rows": resource.rowCount, "views": resource.views, "follows": resource.follows, "subscriptions": resource.subscriptions,
      "forms": resource.exchangeForms.joined(separator: "、"), "fields": fields, "hasFields": !fields.isEmpty,
      "sample": sample, "hasSample": !sample.isEmpty, "sampleColumns": resource.fields.map { ["name": $0.name] },
      "followed": resource.followed, "retired": resource.retired,
      "mayApply": resource.sharingClass != .notShared && !resource.retired && caller.holdsAnywhere(.shareRequest),
      "encoded": FormCoding.encode(resource.code),
    ]
    if !manual.function.isEmpty || !manual.curlExample.isEmpty {
      context["manual"] = [
        "function": manual.function, "protocol": manual.protocol, "method": manual.method, "curl": manual.curlExample,
        "requestExample": manual.requestExample, "responseExample": manual.responseExample,
        "requestFields": manual.requestFields.map { ["name": $0.name, "type": $0.type, "required": $0.required, "description": $0.description_p] },
        "responseFields": manual.responseFields.map { ["name": $0.name, "type": $0.type, "description": $0.description_p] },
        "statuses": manual.statuses.map { ["code": $0.code, "meaning": $0.meaning] },
      ] as [String: Any]
    }
    return view.page("resource", title: resource.name, section: "catalog", visit: visit, context: context)
  }

  /// POST /catalog/{code}/follow: follow or stop following (`on` = 1 or 0).
  func follow(_ visit: Visit, code: String) async throws -> HTTPResponse {
    let caller = try visit.signedIn
    let on = visit.field("on") == "1"
    let catalog = node.catalog
    let peer = visit.peer
    _ = try await node.identity.store.blocking { try catalog.follow(code, on, caller: caller, peer: peer) }
    return ConsoleView.redirect(
      "/catalog/" + FormCoding.encode(code) + "?" + visit.notice(on ? "已关注" : "已取消关注"), cookies: visit.cookies)
  }

  /// GET /followed: what the caller follows.
  func followedList(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    let followed = try node.catalog.listFollowed(caller: caller).resources.map { resource -> [String: Any] in
      [
        "name": resource.name, "code": resource.code, "href": "/catalog/" + FormCoding.encode(resource.code),
        "updated": Labels.day(resource.updatedMs), "sharing": Labels.sharing(resource.sharingClass),
      ]
    }
    return view.page("followed", title: "我的关注", section: "catalog", visit: visit, context: ["resources": followed, "empty": followed.isEmpty])
  }

  /// A sample value as text.
  static func text(of value: Eduhub_Catalog_V1_Value) -> String {
    switch value.kind {
    case .text(let text)?: text
    case .integer(let number)?: String(number)
    case .decimal(let text)?: text
    case .date(let text)?: text
    case .timestampMs(let ms)?: Labels.time(ms)
    case .boolean(let flag)?: flag ? "是" : "否"
    case .null?, nil: "—"
    }
  }

  static let catalogTemplates: [String: String] = [
    "catalog": """
      <form method="get" action="/catalog" class="search" role="search">
      <input id="q" name="q" type="search" aria-label="搜索数据资源" value="{{q}}" placeholder="输入资源名称、字段或关键词，如“学籍”" maxlength="200">
      <button type="submit" id="search">搜索</button>
      <a href="/followed">我的关注</a>
      </form>
      <div class="results-layout">
      {{#hasFacets}}
      <aside class="facets" aria-label="筛选">
      {{#facets}}
      <section><h2>{{name}}</h2><ul>
      {{#values}}<li><a href="{{href}}"{{#selected}} class="selected" aria-current="true"{{/selected}}>{{label}} <span class="count">{{count}}</span></a></li>{{/values}}
      </ul></section>
      {{/facets}}
      {{#clear}}<p><a href="{{clear}}">清除全部筛选</a></p>{{/clear}}
      </aside>
      {{/hasFacets}}
      <section class="results" aria-label="搜索结果">
      <p class="total" id="total">共 {{total}} 个资源</p>
      {{#empty}}<p class="muted">没有找到符合条件的资源。换个关键词试试，或清除筛选。</p>{{/empty}}
      <ol class="resources">
      {{#resources}}
      <li class="resource">
      <h2><a href="{{href}}">{{name}}</a></h2>
      <p class="meta"><span class="tag">{{type}}</span> <span class="tag">{{sharing}}</span> {{theme}} · 责任单位 {{org}} · 更新于 {{updated}} · 关注 {{follows}}</p>
      <p>{{summary}}</p>
      <p class="code">{{code}}</p>
      </li>
      {{/resources}}
      </ol>
      {{#next}}<p><a href="{{next}}" rel="next" id="next-page">下一页</a></p>{{/next}}
      </section>
      </div>
      """,
    "resource": """
      <p class="meta"><span class="tag">{{type}}</span> <span class="tag">{{sharing}}</span> {{#retired}}<span class="tag warn">已下线</span>{{/retired}}
      编码 <code>{{code}}</code> · 责任单位 {{org}} · {{system}} · 更新周期 {{cycle}} · 更新于 {{updated}}</p>
      <p>{{summary}}</p>
      <p class="meta">浏览 {{views}} · 关注 {{follows}} · 订阅 {{subscriptions}}{{#rows}} · {{rows}} 行{{/rows}}{{#forms}} · 交换方式：{{forms}}{{/forms}}</p>
      <div class="actions">
      <form method="post" action="/catalog/{{encoded}}/follow">
      <input type="hidden" name="_csrf" value="{{csrf}}">
      {{#followed}}<input type="hidden" name="on" value="0"><button type="submit" id="follow">取消关注</button>{{/followed}}
      {{^followed}}<input type="hidden" name="on" value="1"><button type="submit" id="follow">关注</button>{{/followed}}
      </form>
      {{#mayApply}}<a class="button primary" href="/catalog/{{encoded}}/apply" id="apply">申请使用</a>{{/mayApply}}
      </div>
      {{#hasFields}}
      <h2>字段与分级</h2>
      <table><caption class="visually-hidden">字段</caption>
      <thead><tr><th scope="col">字段</th><th scope="col">类型</th><th scope="col">说明</th><th scope="col">分级</th><th scope="col">脱敏方式</th></tr></thead>
      <tbody>
      {{#fields}}<tr><td><code>{{name}}</code>{{#required}} <span class="muted">必填</span>{{/required}}</td><td>{{type}}</td><td>{{description}}</td><td>{{#personal}}<span class="tag warn">{{sensitivity}}</span>{{/personal}}{{^personal}}{{sensitivity}}{{/personal}}</td><td>{{masking}}</td></tr>{{/fields}}
      </tbody></table>
      {{/hasFields}}
      {{#hasSample}}
      <h2>样例数据 <span class="muted">（按你的权限脱敏）</span></h2>
      <div class="scroll"><table id="sample"><caption class="visually-hidden">样例数据</caption>
      <thead><tr>{{#sampleColumns}}<th scope="col">{{name}}</th>{{/sampleColumns}}</tr></thead>
      <tbody>{{#sample}}<tr>{{#values}}<td>{{text}}</td>{{/values}}</tr>{{/sample}}</tbody>
      </table></div>
      {{/hasSample}}
      {{#manual}}
      <h2>接口说明</h2>
      <p>{{function}}</p>
      <p class="meta">协议 {{protocol}} · 方法 {{method}}</p>
      <h3>请求参数</h3>
      <ul>{{#requestFields}}<li><code>{{name}}</code> {{type}}{{#required}}（必填）{{/required}} {{description}}</li>{{/requestFields}}</ul>
      <h3>返回字段</h3>
      <ul>{{#responseFields}}<li><code>{{name}}</code> {{type}} {{description}}</li>{{/responseFields}}</ul>
      {{#curl}}<h3>调用示例</h3>
      <pre id="curl"><code>{{curl}}</code></pre>{{/curl}}
      {{#requestExample}}<h3>请求示例</h3><pre><code>{{requestExample}}</code></pre>{{/requestExample}}
      {{#responseExample}}<h3>返回示例</h3><pre><code>{{responseExample}}</code></pre>{{/responseExample}}
      <h3>状态码</h3>
      <ul>{{#statuses}}<li><code>{{code}}</code> {{meaning}}</li>{{/statuses}}</ul>
      {{/manual}}
      """,
    "followed": """
      {{#empty}}<p class="muted">还没有关注任何资源。在资源详情页点“关注”。</p>{{/empty}}
      <ul class="plain">{{#resources}}<li><a href="{{href}}">{{name}}</a> <span class="muted">{{code}} · {{sharing}} · 更新于 {{updated}}</span></li>{{/resources}}</ul>
      """,
  ]
}
