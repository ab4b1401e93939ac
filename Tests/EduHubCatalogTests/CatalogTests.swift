import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Foundation
import Testing

@Suite("Data catalog: publish, search with facets and Chinese text, detail, follow, visibility")
struct CatalogTests {
  static func resource(
    _ code: String, _ name: String, org: String, theme: String = "student", type: Eduhub_Catalog_V1_ResourceType = .table,
    system: String = "学籍系统", sharing: Eduhub_Catalog_V1_SharingClass = .conditional, summary: String = ""
  ) -> Eduhub_Catalog_V1_PublishResourceRequest {
    var request = Eduhub_Catalog_V1_PublishResourceRequest()
    request.resource.code = code
    request.resource.name = name
    request.resource.summary = summary
    request.resource.theme = theme
    request.resource.type = type
    request.resource.publishingSystem = system
    request.resource.responsibleOrgCode = org
    request.resource.exchangeForms = ["接口"]
    request.resource.sharingClass = sharing
    request.resource.openingClass = .notOpen
    request.resource.updateCycle = "每日"
    var field = Eduhub_Catalog_V1_SchemaField()
    field.name = "student_name"
    field.type = .string
    field.description_p = "学生姓名"
    field.sensitivity = .sensitive
    field.masking = .name
    var key = Eduhub_Catalog_V1_SchemaField()
    key.name = "student_id"
    key.type = .string
    key.description_p = "学生编号"
    key.sensitivity = .internal
    key.masking = .none
    request.resource.fields = [key, field]
    if type == .table { request.resource.dataset.ingested.keyFields = ["student_id"] }
    return request
  }

  func catalog(_ world: IdentityWorld) -> Eduhub_Catalog_V1_CatalogService.Client { .init(world.rpc) }

  @Test("a steward publishes; readers find it by two- and one-character Chinese terms, read it, follow it")
  func publishSearchDetailFollow() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: "511702")
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let steward = try await world.options("steward")
      let published = try await catalog(world).publishResource(
        Self.resource("stu-basic", "学生基础数据", org: "511702", summary: "通川区学生学籍与成绩"), options: steward)
      #expect(published.responsibleOrgPath == "511700/511702" && published.updatedMs > 0)
      _ = try await catalog(world).publishResource(Self.resource("teacher-data", "教师数据", org: "511702", theme: "teacher"), options: steward)
      let teacher = try await world.options("teacher1")
      for query in ["学生", "成绩", "学", "stu-basic", "学生 基础"] {
        var search = Eduhub_Catalog_V1_SearchResourcesRequest()
        search.query = query
        let found = try await catalog(world).searchResources(search, options: teacher)
        #expect(found.resources.first?.code == "stu-basic", "\(query)")
      }
      var get = Eduhub_Catalog_V1_GetResourceRequest()
      get.code = "stu-basic"
      _ = try await catalog(world).getResource(get, options: teacher)
      let again = try await catalog(world).getResource(get, options: teacher)
      #expect(again.views == 1 && again.fields.last?.masking == .name)
      var follow = Eduhub_Catalog_V1_FollowRequest()
      follow.code = "stu-basic"
      #expect(try await catalog(world).follow(follow, options: teacher).follows == 1)
      #expect(try await catalog(world).follow(follow, options: teacher).follows == 1)
      #expect(try await catalog(world).getResource(get, options: teacher).followed)
      var mine = Eduhub_Catalog_V1_SearchResourcesRequest()
      mine.followedByMe = true
      #expect(try await catalog(world).searchResources(mine, options: teacher).resources.map(\.code) == ["stu-basic"])
      #expect(try await catalog(world).listFollowed(options: teacher).resources.map(\.code) == ["stu-basic"])
      #expect(try await catalog(world).unfollow(follow, options: teacher).follows == 0)
      #expect(try await catalog(world).listFollowed(options: teacher).resources.isEmpty)
    }
  }

  @Test("filters and facets; sorting; retired resources stay readable but leave default searches")
  func filtersFacetsRetire() async throws {
    try await withWorld { world in
      try await world.account("city-steward", role: .dataSteward, org: "511700")
      let steward = try await world.options("city-steward")
      for request in [
        Self.resource("a", "学生成绩", org: "511702", theme: "evaluation", system: "考试系统"),
        Self.resource("b", "学生安全", org: "511703", theme: "safety", type: .api, system: "安全系统"),
        Self.resource("c", "学生招生", org: "511703", theme: "enrollment", system: "考试系统"),
      ] {
        _ = try await catalog(world).publishResource(request, options: steward)
      }
      var search = Eduhub_Catalog_V1_SearchResourcesRequest()
      search.query = "学生"
      let all = try await catalog(world).searchResources(search, options: steward)
      #expect(all.total == 3)
      let systems = all.facets.first { $0.filter == "publishing_system" }?.counts ?? [:]
      #expect(systems == ["考试系统": 2, "安全系统": 1])
      #expect(all.facets.first { $0.filter == "org_code" }?.counts == ["511702": 1, "511703": 2])
      search.publishingSystem = "考试系统"
      #expect(Set(try await catalog(world).searchResources(search, options: steward).resources.map(\.code)) == ["a", "c"])
      search.publishingSystem = ""
      search.orgCode = "511703"
      search.type = .api
      #expect(try await catalog(world).searchResources(search, options: steward).resources.map(\.code) == ["b"])
      search = Eduhub_Catalog_V1_SearchResourcesRequest()
      search.page.pageSize = 2
      let first = try await catalog(world).searchResources(search, options: steward)
      search.page.pageToken = first.page.nextPageToken
      let second = try await catalog(world).searchResources(search, options: steward)
      #expect(first.resources.count == 2 && second.resources.count == 1 && second.page.nextPageToken.isEmpty)
      search.page.pageToken = "bogus"
      await expectStatus(.invalidArgument) { try await catalog(world).searchResources(search, options: steward) }

      var retire = Eduhub_Catalog_V1_RetireResourceRequest()
      retire.code = "c"
      #expect(try await catalog(world).retireResource(retire, options: steward).retired)
      var plain = Eduhub_Catalog_V1_SearchResourcesRequest()
      plain.query = "招生"
      #expect(try await catalog(world).searchResources(plain, options: steward).resources.isEmpty)
      plain.includeRetired = true
      #expect(try await catalog(world).searchResources(plain, options: steward).resources.map(\.code) == ["c"])
    }
  }

  @Test("not-shared resources are invisible outside their subtree (NOT_FOUND); other orgs' stewards cannot change them")
  func visibilityAndStewardship() async throws {
    try await withWorld { world in
      try await world.account("dachuan-steward", role: .dataSteward, org: "511703")
      try await world.account("tongchuan-steward", role: .dataSteward, org: "511702")
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let dachuan = try await world.options("dachuan-steward")
      _ = try await catalog(world).publishResource(Self.resource("secret", "内部学生名单", org: "511703", sharing: .notShared), options: dachuan)
      _ = try await catalog(world).publishResource(Self.resource("shared", "共享学生统计", org: "511703", sharing: .unconditional), options: dachuan)
      let teacher = try await world.options("teacher1")
      var get = Eduhub_Catalog_V1_GetResourceRequest()
      get.code = "secret"
      await expectStatus(.notFound) { try await catalog(world).getResource(get, options: teacher) }
      var search = Eduhub_Catalog_V1_SearchResourcesRequest()
      search.query = "学生"
      #expect(try await catalog(world).searchResources(search, options: teacher).resources.map(\.code) == ["shared"])
      #expect(try await catalog(world).searchResources(search, options: dachuan).total == 2)

      let tongchuan = try await world.options("tongchuan-steward")
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = Self.resource("shared", "改名", org: "511703").resource
      await expectStatus(.permissionDenied) { try await catalog(world).updateResource(update, options: tongchuan) }
      update.resource.code = "secret"
      await expectStatus(.notFound) { try await catalog(world).updateResource(update, options: tongchuan) }
      await expectStatus(.permissionDenied) {
        try await catalog(world).publishResource(Self.resource("x", "别人的", org: "511703"), options: tongchuan)
      }
      update.resource = Self.resource("shared", "共享学生统计（新）", org: "511702").resource
      let updated = try await catalog(world).updateResource(update, options: dachuan)
      #expect(updated.name == "共享学生统计（新）" && updated.responsibleOrgCode == "511703")
      #expect(try world.auditEvents(action: "catalog.UpdateResource").contains { $0.outcome == "denied" })
    }
  }

  @Test("bad definitions are refused with a clear message and nothing written")
  func badInput() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: "511702")
      let steward = try await world.options("steward")
      var noName = Self.resource("n1", "", org: "511702")
      await expectStatus(.invalidArgument) { try await catalog(world).publishResource(noName, options: steward) }
      noName = Self.resource("bad code!", "x", org: "511702")
      await expectStatus(.invalidArgument) { try await catalog(world).publishResource(noName, options: steward) }
      var unmasked = Self.resource("n2", "学生", org: "511702")
      unmasked.resource.fields[1].masking = .none
      let message = await expectStatus(.invalidArgument) { try await catalog(world).publishResource(unmasked, options: steward) }
      #expect(message.contains("masking"))
      await expectStatus(.notFound) { try await catalog(world).publishResource(Self.resource("n3", "x", org: "999999"), options: steward) }
      _ = try await catalog(world).publishResource(Self.resource("n4", "学生", org: "511702"), options: steward)
      await expectStatus(.alreadyExists) { try await catalog(world).publishResource(Self.resource("n4", "again", org: "511702"), options: steward) }
      for code in ["n1", "n2", "n3"] {
        #expect(try world.identity.store.records.get(CatalogCollections.resource, code) == nil)
      }
    }
  }

  @Test("search agrees with a plain reading of its rules: random resources, updates, follows and filter mixes; facets count the other filters")
  func searchOracle() async throws {
    try await withWorld { world in
      try await world.account("oracle-steward", role: .dataSteward, org: "511700")
      try await world.account("oracle-reader", role: .dataSteward, org: "511703")
      let steward = try await world.options("oracle-steward")
      let reader = try await world.options("oracle-reader")
      var random = SplitMix64(seed: 21)
      func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
      let orgs = ["511702", "511703", "511722", "511700"], themes = ["student", "teacher", "safety", ""]
      let systems = ["学籍系统", "考试系统", "安全平台"], words = ["学生", "教师", "食堂", "成绩"]
      var published: [String: Eduhub_Catalog_V1_Resource] = [:]
      func make(_ code: String) -> Eduhub_Catalog_V1_PublishResourceRequest {
        var request = Self.resource(
          code, "\(pick(words))\(pick(words))名册", org: pick(orgs), theme: pick(themes), type: pick([.table, .api, .file]),
          system: pick(systems), sharing: pick([.unconditional, .conditional, .notShared]), summary: "\(pick(words))汇总")
        request.resource.exchangeForms = pick([["接口"], ["数据库", "文件"], ["文件"], []])
        if request.resource.type != .table { request.resource.clearDataset() }
        return request
      }
      for index in 0..<300 {  // more than a quick (event-loop) search catches up: the first one is a task
        let request = make("r\(index)")
        published[request.resource.code] = try await catalog(world).publishResource(request, options: steward)
      }
      // Redefinitions move resources between facet values; some retire.
      for index in stride(from: 0, to: 300, by: 7) {
        var update = Eduhub_Catalog_V1_UpdateResourceRequest()
        update.resource = make("r\(index)").resource
        update.resource.responsibleOrgCode = published["r\(index)"]?.responsibleOrgCode ?? ""
        published["r\(index)"] = try await catalog(world).updateResource(update, options: steward)
      }
      for index in stride(from: 3, to: 300, by: 11) {
        var retire = Eduhub_Catalog_V1_RetireResourceRequest()
        retire.code = "r\(index)"
        published["r\(index)"] = try await catalog(world).retireResource(retire, options: steward)
      }
      var followed: Set<String> = []
      for index in stride(from: 1, to: 300, by: 5) where published["r\(index)"]?.sharingClass != .notShared {
        var follow = Eduhub_Catalog_V1_FollowRequest()
        follow.code = "r\(index)"
        _ = try await catalog(world).follow(follow, options: reader)
        followed.insert("r\(index)")
      }
      // The reader (a steward of 511703) sees shared resources and not-shared ones of its subtree.
      let paths = ["511702": "511700/511702", "511703": "511700/511703", "511722": "511700/511722", "511700": "511700"]
      func visible(_ r: Eduhub_Catalog_V1_Resource) -> Bool { r.sharingClass != .notShared || r.responsibleOrgCode == "511703" }
      for round in 0..<150 {
        var search = Eduhub_Catalog_V1_SearchResourcesRequest()
        search.page.pageSize = 200
        if random.next() % 2 == 0 { search.query = pick(words) }
        if random.next() % 3 == 0 { search.orgCode = pick(["511702", "511703", "511700"]) }
        if random.next() % 3 == 0 { search.publishingSystem = pick(systems + ["无此系统"]) }
        if random.next() % 3 == 0 { search.type = pick([.table, .api, .file]) }
        if random.next() % 3 == 0 { search.theme = pick(themes.filter { !$0.isEmpty }) }
        if random.next() % 3 == 0 { search.exchangeForm = pick(["接口", "文件", "数据库", "光盘"]) }
        if random.next() % 3 == 0 { search.sharingClass = pick([.unconditional, .conditional, .notShared]) }
        if random.next() % 5 == 0 { search.followedByMe = true }
        if random.next() % 4 == 0 { search.includeRetired = true }
        let filters: [(String, (Eduhub_Catalog_V1_Resource) -> Bool, (Eduhub_Catalog_V1_Resource) -> [String])] = [
          ("org_code", { search.orgCode.isEmpty || (paths[$0.responsibleOrgCode] ?? "").hasPrefix(paths[search.orgCode] ?? "-") }, { [$0.responsibleOrgCode] }),
          ("publishing_system", { search.publishingSystem.isEmpty || $0.publishingSystem == search.publishingSystem }, { [$0.publishingSystem] }),
          ("type", { search.type == .unspecified || $0.type == search.type }, { ["\($0.type)"] }),
          ("theme", { search.theme.isEmpty || $0.theme == search.theme }, { $0.theme.isEmpty ? [] : [$0.theme] }),
          ("exchange_form", { search.exchangeForm.isEmpty || $0.exchangeForms.contains(search.exchangeForm) }, { $0.exchangeForms }),
          ("sharing_class", { search.sharingClass == .unspecified || $0.sharingClass == search.sharingClass }, { ["\($0.sharingClass)"] }),
          ("followed_by_me", { !search.followedByMe || followed.contains($0.code) }, { followed.contains($0.code) ? ["true"] : [] }),
        ]
        let candidates = published.values.filter { r in
          visible(r) && (search.includeRetired || !r.retired)
            && (search.query.isEmpty
              || ([r.name, r.code, r.theme, r.publishingSystem, r.summary] + r.exchangeForms + r.fields.flatMap { [$0.name, $0.description_p] })
                .contains { $0.contains(search.query) })
        }
        let expected = Set(candidates.filter { r in filters.allSatisfy { $0.1(r) } }.map(\.code))
        var found = try await catalog(world).searchResources(search, options: reader)
        var next = found
        while !next.page.nextPageToken.isEmpty {  // more than a page of 200: the rest, in the same order
          var more = search
          more.page.pageToken = next.page.nextPageToken
          next = try await catalog(world).searchResources(more, options: reader)
          found.resources += next.resources
        }
        #expect(Set(found.resources.map(\.code)) == expected, "round \(round): \(search)")
        if !search.query.isEmpty {
          // Relevance: the heaviest text holding the term (name 10, code 8, labels 4, summary 3,
          // fields 2), doubled, 5 more for a name that starts with it; then by name and code.
          func score(_ r: Eduhub_Catalog_V1_Resource) -> Int {
            let texts = [
              r.name, r.code, ([r.theme, r.publishingSystem] + [r.exchangeForms.joined(separator: " ")]).joined(separator: " "), r.summary,
              r.fields.flatMap { [$0.name, $0.description_p] }.joined(separator: " "),
            ]
            guard let section = texts.firstIndex(where: { $0.contains(search.query) }) else { return 0 }
            return [10, 8, 4, 3, 2][section] * 2 + (section == 0 && r.name.hasPrefix(search.query) ? 5 : 0)
          }
          let ranked = published.values.filter { expected.contains($0.code) }.sorted {
            (-score($0), $0.name, $0.code) < (-score($1), $1.name, $1.code)
          }
          #expect(found.resources.map(\.code) == ranked.map(\.code), "round \(round): \(search)")
        }
        #expect(found.total == Int64(expected.count))
        for (name, _, values) in filters {
          var counts: [String: Int64] = [:]
          for r in candidates where filters.allSatisfy({ $0.0 == name || $0.1(r) }) {
            for value in values(r) where !value.isEmpty { counts[value, default: 0] += 1 }
          }
          #expect((found.facets.first { $0.filter == name }?.counts ?? [:]) == counts, "round \(round), facet \(name): \(search)")
        }
      }
    }
  }
}
