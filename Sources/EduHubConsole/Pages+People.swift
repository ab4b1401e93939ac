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
  /// GET /people?q=: look a person up; each shown exactly as `GetPerson` shows this reader.
  func peopleSearch(_ visit: Visit) throws -> HTTPResponse {
    let caller = try visit.signedIn
    let query = String(visit.query("q").prefix(64))
    var people: [[String: Any]] = []
    // The query is tried as a person id first (GetPerson: the same policy; it refuses a query
    // that is no id, and a person the reader may not open is not found either way); names
    // otherwise.
    if !query.isEmpty {
      var request = Eduhub_Identity_V1_GetPersonRequest()
      request.id = query
      if let person = try? node.identity.getPerson(request, caller: caller, peer: visit.peer) { people = [Self.personRow(person)] }
    }
    if !query.isEmpty, people.isEmpty {
      var request = Eduhub_Identity_V1_SearchPeopleRequest()
      request.query = query
      request.orgCode = String(visit.query("org").prefix(32))
      request.limit = 50
      people = try node.identity.searchPeople(request, caller: caller, peer: visit.peer).people.map(Self.personRow)
    }
    return view.page(
      "people", title: "人员查询", section: "people", visit: visit,
      context: ["q": query, "org": visit.query("org"), "people": people, "searched": !query.isEmpty, "empty": !query.isEmpty && people.isEmpty])
  }

  static func personRow(_ person: Eduhub_Identity_V1_Person) -> [String: Any] {
    [
      "id": person.id, "href": "/people/" + FormCoding.encode(person.id), "name": person.name, "kind": Labels.personKind(person.kind),
      "org": person.orgCode, "className": person.className, "masked": person.masked,
    ]
  }

  /// GET /people/{id}: `GetPerson` for this reader (masked or clear, as the policy decides).
  func person(_ visit: Visit, id: String) throws -> HTTPResponse {
    let caller = try visit.signedIn
    var request = Eduhub_Identity_V1_GetPersonRequest()
    request.id = id
    let person = try node.identity.getPerson(request, caller: caller, peer: visit.peer)
    let gender: String =
      switch person.gender {
      case .male: "男"
      case .female: "女"
      default: ""
      }
    let rows: [(String, String)] = [
      ("编号", person.id), ("类别", Labels.personKind(person.kind)), ("姓名", person.name), ("性别", gender), ("出生日期", person.birthDate),
      ("身份证号", person.nationalID), ("民族", person.ethnicity), ("电话", person.phone), ("地址", person.address), ("邮箱", person.email),
      ("单位", person.orgCode), ("年级", person.grade > 0 ? String(person.grade) : ""), ("班级", person.className), ("职务", person.title),
      ("任教科目", person.subjects.joined(separator: "、")),
    ]
    let context: [String: Any] = [
      "masked": person.masked, "rows": rows.filter { !$0.1.isEmpty }.map { ["label": $0.0, "value": $0.1] },
    ]
    return view.page("person", title: person.name.isEmpty ? person.id : person.name, section: "people", visit: visit, context: context)
  }

  static let peopleTemplates: [String: String] = [
    "people": """
      <form method="get" action="/people" class="search" role="search">
      <input id="q" name="q" type="search" aria-label="姓名或编号" value="{{q}}" placeholder="姓名或编号" maxlength="64" required>
      <input id="org" name="org" value="{{org}}" aria-label="单位代码" placeholder="单位代码（可选）" maxlength="32">
      <button type="submit" id="search-people">查询</button>
      </form>
      {{#empty}}<p class="muted">没有找到你有权查看的人员。</p>{{/empty}}
      {{#searched}}
      <ul class="plain" id="people">{{#people}}<li><a href="{{href}}">{{name}}</a> <span class="muted">{{id}} · {{kind}} · {{org}}{{#className}} · {{className}}{{/className}}{{#masked}} · 已脱敏{{/masked}}</span></li>{{/people}}</ul>
      {{/searched}}
      """,
    "person": """
      {{#masked}}<p class="notice" id="masked-notice">按你的权限，本页个人信息已脱敏。</p>{{/masked}}
      <dl class="record" id="person">{{#rows}}<dt>{{label}}</dt><dd>{{value}}</dd>{{/rows}}</dl>
      """,
  ]
}
