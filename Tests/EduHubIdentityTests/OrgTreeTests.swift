import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Testing

@Suite("Org tree: create, get, list, move — with scope checks")
struct OrgTreeTests {
  func org(_ code: String, _ name: String, _ kind: Eduhub_Identity_V1_OrgKind, parent: String) -> Eduhub_Identity_V1_CreateOrgRequest {
    var request = Eduhub_Identity_V1_CreateOrgRequest()
    request.org.code = code
    request.org.name = name
    request.org.kind = kind
    request.org.parentCode = parent
    return request
  }

  @Test("a county admin creates a town and a school in its county; GetOrg and ListOrgs show them")
  func createGetList() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let options = try await world.options("tongchuan")
      let town = try await world.client.createOrg(org("511702099", "新城街道", .town, parent: "511702"), options: options)
      #expect(town.path == "511700/511702/511702099")
      let school = try await world.client.createOrg(org("5117029999", "新城小学", .school, parent: "511702099"), options: options)
      #expect(school.path == "511700/511702/511702099/5117029999")

      var get = Eduhub_Identity_V1_GetOrgRequest()
      get.code = "5117029999"
      #expect(try await world.client.getOrg(get, options: options).name == "新城小学")

      var children = Eduhub_Identity_V1_ListOrgsRequest()
      children.code = "511702"
      let towns = try await world.client.listOrgs(children, options: options).orgs.map(\.code)
      #expect(towns.contains("511702099") && towns.contains("511702001"))
      #expect(!towns.contains("5117029999"))

      var subtree = Eduhub_Identity_V1_ListOrgsRequest()
      subtree.code = "511702"
      subtree.subtree = true
      subtree.kinds = [.school]
      subtree.page.pageSize = 1
      var seen: [String] = []
      while true {
        let page = try await world.client.listOrgs(subtree, options: options)
        #expect(page.orgs.count <= 1)
        seen += page.orgs.map(\.code)
        if page.page.nextPageToken.isEmpty { break }
        subtree.page.pageToken = page.page.nextPageToken
      }
      #expect(Set(seen) == ["5117020001", "5117029999"])
      #expect(try world.auditEvents(action: "identity.CreateOrg").count == 2)
    }
  }

  @Test("bad codes, unknown parents and duplicates are refused and nothing is written")
  func badInput() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      let options = try await world.options("city")
      await expectStatus(.invalidArgument) { try await world.client.createOrg(org("12345", "x", .county, parent: "511700"), options: options) }
      await expectStatus(.invalidArgument) { try await world.client.createOrg(org("51170200X1", "x", .school, parent: "511702001"), options: options) }
      await expectStatus(.invalidArgument) {
        try await world.client.createOrg(org("5117020077", String(repeating: "长", count: 101), .school, parent: "511702001"), options: options)
      }
      await expectStatus(.notFound) { try await world.client.createOrg(org("5117020077", "x", .school, parent: "511799001"), options: options) }
      await expectStatus(.alreadyExists) { try await world.client.createOrg(org("5117020001", "x", .school, parent: "511702001"), options: options) }
      // A second root needs rights over the whole tree, which only the operator has.
      await expectStatus(.permissionDenied) { try await world.client.createOrg(org("511800", "y", .city, parent: ""), options: options) }
      await expectStatus(.alreadyExists) {
        try world.identity.createOrg(org("511800", "y", .city, parent: ""), caller: .operator(name: "test"), peer: "test")
      }
      var get = Eduhub_Identity_V1_GetOrgRequest()
      get.code = "5117020077"
      await expectStatus(.notFound) { try await world.client.getOrg(get, options: options) }
      #expect(try world.auditEvents(action: "identity.CreateOrg").allSatisfy { $0.outcome == "denied" })
    }
  }

  @Test("a county admin moves a school between its towns; the school's people follow")
  func moveInsideCounty() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let options = try await world.options("tongchuan")
      var move = Eduhub_Identity_V1_MoveOrgRequest()
      move.code = IdentityWorld.school
      move.newParentCode = "511702002"
      let moved = try await world.client.moveOrg(move, options: options)
      #expect(moved.path == "511700/511702/511702002/5117020001")
      #expect(moved.parentCode == "511702002")
      let student = try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student)
      #expect(student?.scope == "511700/511702/511702002/5117020001")
    }
  }

  @Test("a county admin cannot move a school out of its county, nor a city; the attempt is audited")
  func moveOutOfCountyDenied() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let options = try await world.options("tongchuan")
      var move = Eduhub_Identity_V1_MoveOrgRequest()
      move.code = IdentityWorld.school
      move.newParentCode = "511703001"
      await expectStatus(.permissionDenied) { try await world.client.moveOrg(move, options: options) }
      move.code = "511703"
      move.newParentCode = "511702"
      await expectStatus(.permissionDenied) { try await world.client.moveOrg(move, options: options) }
      let denials = try world.auditEvents(action: "identity.MoveOrg")
      #expect(denials.count == 2 && denials.allSatisfy { $0.outcome == "denied" })
      #expect(try world.identity.store.records.get(IdentityCollections.org, IdentityWorld.school)?.scope == "511700/511702/511702001/5117020001")
    }
  }

  @Test("an org cannot move under itself")
  func moveUnderItself() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      var move = Eduhub_Identity_V1_MoveOrgRequest()
      move.code = "511702"
      move.newParentCode = "511702001"
      await expectStatus(.failedPrecondition) { try await world.client.moveOrg(move, options: try await world.options("city")) }
    }
  }
}
