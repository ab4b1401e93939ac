import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Testing

@Suite("People: create, get, update, list, search, import, guardians")
struct PeopleTests {
  static func newStudent(_ id: String, nationalID: String = "511702201503070020") -> Eduhub_Identity_V1_Person {
    var person = Eduhub_Identity_V1_Person()
    person.id = id
    person.kind = .student
    person.name = "王芳"
    person.gender = .female
    person.birthDate = "2015-03-07"
    person.nationalID = nationalID
    person.phone = "13812345663"
    person.address = "四川省达州市通川区朝阳街12号"
    person.orgCode = IdentityWorld.school
    person.grade = 5
    person.className = "2班"
    return person
  }

  @Test("a school admin creates, reads, updates and lists a student of its school")
  func happyPath() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      var create = Eduhub_Identity_V1_CreatePersonRequest()
      create.person = Self.newStudent("S-new-1")
      let created = try await world.client.createPerson(create, options: options)
      #expect(created.orgPath.hasSuffix("/" + IdentityWorld.school))

      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = "S-new-1"
      let read = try await world.client.getPerson(get, options: options)
      #expect(read.name == "王芳" && read.nationalID == "511702201503070020" && !read.masked)

      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = "S-new-1"
      update.person.phone = "13900001111"
      update.updateMask = ["phone"]
      let updated = try await world.client.updatePerson(update, options: options)
      #expect(updated.phone == "13900001111" && updated.name == "王芳")

      var list = Eduhub_Identity_V1_ListPeopleRequest()
      list.orgCode = IdentityWorld.school
      list.grade = 5
      list.className = "2班"
      let listed = try await world.client.listPeople(list, options: options).people
      #expect(listed.contains { $0.id == "S-new-1" })
      #expect(listed.allSatisfy { $0.grade == 5 && $0.className == "2班" })
    }
  }

  @Test("ListPeople pages through a county without repeating or losing anyone")
  func paging() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let options = try await world.options("tongchuan")
      var list = Eduhub_Identity_V1_ListPeopleRequest()
      list.orgCode = "511702"
      list.kind = .student
      list.page.pageSize = 37
      var ids: [String] = []
      while true {
        let page = try await world.client.listPeople(list, options: options)
        ids += page.people.map(\.id)
        #expect(page.people.allSatisfy { $0.kind == .student && $0.masked })
        if page.page.nextPageToken.isEmpty { break }
        list.page.pageToken = page.page.nextPageToken
      }
      let expected = try world.identity.store.records.inScope(IdentityCollections.person, scope: "511700/511702", limit: 100_000)
        .filter { $0.id.hasPrefix("S") }.map(\.id)
      #expect(ids.count == Set(ids).count)
      #expect(Set(ids) == Set(expected))
      list.page.pageToken = "!!not-a-token"
      await expectStatus(.invalidArgument) { try await world.client.listPeople(list, options: options) }
    }
  }

  @Test("bad national IDs, duplicates, unknown orgs and oversized fields write nothing")
  func badInput() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      func create(_ person: Eduhub_Identity_V1_Person) async throws -> Eduhub_Identity_V1_Person {
        var request = Eduhub_Identity_V1_CreatePersonRequest()
        request.person = person
        return try await world.client.createPerson(request, options: options)
      }
      let message = await expectStatus(.invalidArgument) { try await create(Self.newStudent("S-bad-1", nationalID: "511702201503070028")) }
      #expect(message.contains("check digit") && !message.contains("511702201503070028"))
      var wrongBirth = Self.newStudent("S-bad-2")
      wrongBirth.birthDate = "2015-03-08"
      await expectStatus(.invalidArgument) { try await create(wrongBirth) }
      var long = Self.newStudent("S-bad-3")
      long.address = String(repeating: "街", count: 201)
      await expectStatus(.invalidArgument) { try await create(long) }
      var noOrg = Self.newStudent("S-bad-4")
      noOrg.orgCode = "5117029998"
      await expectStatus(.notFound) { try await create(noOrg) }
      _ = try await create(Self.newStudent("S-ok-1"))
      await expectStatus(.alreadyExists) { try await create(Self.newStudent("S-ok-2")) }
      await expectStatus(.alreadyExists) { try await create(Self.newStudent("S-ok-1", nationalID: "")) }
      for id in ["S-bad-1", "S-bad-2", "S-bad-3", "S-bad-4", "S-ok-2"] {
        #expect(try world.identity.store.records.get(IdentityCollections.person, id) == nil)
      }
    }
  }

  @Test("a school admin cannot read, list or write another school; each attempt is audited")
  func otherSchoolDenied() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.otherStudent
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: options) }
      var list = Eduhub_Identity_V1_ListPeopleRequest()
      list.orgCode = IdentityWorld.otherSchool
      await expectStatus(.permissionDenied) { try await world.client.listPeople(list, options: options) }
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = IdentityWorld.otherStudent
      update.person.phone = "13900001111"
      update.updateMask = ["phone"]
      await expectStatus(.permissionDenied) { try await world.client.updatePerson(update, options: options) }
      // Moving one's own student into another school is writing there too.
      update.person.id = IdentityWorld.student
      update.person.orgCode = IdentityWorld.otherSchool
      update.updateMask = ["org_code"]
      await expectStatus(.permissionDenied) { try await world.client.updatePerson(update, options: options) }
      try world.node.audit.flush()
      for action in ["identity.GetPerson", "identity.ListPeople", "identity.UpdatePerson"] {
        #expect(try world.auditEvents(action: action).contains { $0.outcome == "denied" }, "\(action)")
      }
    }
  }

  @Test("SearchPeople finds a two-character Chinese name within the caller's school")
  func search() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      var create = Eduhub_Identity_V1_CreatePersonRequest()
      create.person = Self.newStudent("S-search-1")
      create.person.name = "龚雪"
      _ = try await world.client.createPerson(create, options: options)
      var search = Eduhub_Identity_V1_SearchPeopleRequest()
      search.query = "龚雪"
      let found = try await world.client.searchPeople(search, options: options).people
      #expect(found.map(\.id).contains("S-search-1"))
      #expect(found.allSatisfy { $0.orgPath.hasSuffix("/" + IdentityWorld.school) })
    }
  }

  @Test("ImportPeople writes good rows, reports bad rows in the middle by position, and binds guardians")
  func bulkImport() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      var rows: [Eduhub_Identity_V1_ImportPeopleRequest] = []
      var guardian = Eduhub_Identity_V1_ImportPeopleRequest()
      guardian.person.id = "G-imp-1"
      guardian.person.kind = .guardian
      guardian.person.name = "王建国"
      guardian.person.phone = "13811112222"
      guardian.person.orgCode = IdentityWorld.school
      rows.append(guardian)
      for index in 0..<1200 {
        var row = Eduhub_Identity_V1_ImportPeopleRequest()
        row.person = Self.newStudent("S-imp-\(index)", nationalID: "")
        if index == 500 { row.person.nationalID = "51170220150307002Y" }  // bad check character
        if index == 501 { row.person.orgCode = "5117029998" }  // unknown org
        if index == 502 { row.guardianIds = ["G-missing"] }  // unknown guardian: the student is not written either
        if index == 3 { row.guardianIds = ["G-imp-1"] }
        if index == 4 { row.username = "imported.student" }
        rows.append(row)
      }
      let response = try await world.client.importPeople(options: options) { writer in
        try await writer.write(contentsOf: rows)
      }
      #expect(response.rows == 1201)
      #expect(response.imported == 1198)
      #expect(response.failed == 3)
      #expect(response.errors.map(\.row) == [502, 503, 504])
      #expect(response.errors.map(\.personID) == ["S-imp-500", "S-imp-501", "S-imp-502"])
      #expect(try world.identity.store.records.get(IdentityCollections.person, "S-imp-502") == nil)
      #expect(try world.identity.store.records.get(IdentityCollections.person, "S-imp-1199") != nil)
      var bindings = Eduhub_Identity_V1_ListGuardianshipsRequest()
      bindings.childID = "S-imp-3"
      #expect(try await world.client.listGuardianships(bindings, options: options).bindings.map(\.guardianID) == ["G-imp-1"])
      #expect(try world.identity.accountID(username: "imported.student") != nil)
    }
  }

  @Test("guardians: bind, confirmed by a second person of the school, list, see the child in clear, not another child; unbind; a county admin cannot bind")
  func guardians() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let options = try await world.options("principal")
      // The seeded guardian of the first student, with an account.
      let guardianID = "G5117020001-0001a"
      try await world.account("parent1", org: IdentityWorld.school, person: guardianID)
      let parent = try await world.options("parent1")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let child = try await world.client.getPerson(get, options: parent)
      #expect(!child.masked && !child.nationalID.hasPrefix("ID-"))
      get.id = "S5117020001-0005"
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: parent) }

      // A second child bound to the same guardian (one phone, several children).
      var bind = Eduhub_Identity_V1_BindGuardianRequest()
      bind.binding.guardianID = guardianID
      bind.binding.childID = "S5117020001-0005"
      bind.binding.relation = "父亲"
      let bound = try await world.client.bindGuardian(bind, options: options)
      #expect(bound.confirmedBy.isEmpty && !bound.boundBy.isEmpty)
      // Not yet: a binding gives the child's data only once a second person confirms it, and its
      // binder cannot be that person.
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: parent) }
      await expectStatus(.failedPrecondition) { try await world.client.bindGuardian(bind, options: options) }
      // A county administrator (who reads children masked) can neither bind nor confirm.
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      await expectStatus(.permissionDenied) { try await world.client.bindGuardian(bind, options: try await world.options("tongchuan")) }
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let confirmed = try await world.client.bindGuardian(bind, options: try await world.options("teacher1"))
      #expect(!confirmed.confirmedBy.isEmpty && confirmed.confirmedBy != confirmed.boundBy)
      await expectStatus(.alreadyExists) { try await world.client.bindGuardian(bind, options: options) }
      let second = try await world.client.getPerson(get, options: parent)
      #expect(!second.masked)
      try world.node.audit.flush()
      #expect(try world.auditEvents(action: "identity.BindGuardian").map(\.detail).contains("confirmed"))
      var list = Eduhub_Identity_V1_ListGuardianshipsRequest()
      list.guardianID = guardianID
      let children = try await world.client.listGuardianships(list, options: parent).bindings.map(\.childID)
      #expect(Set(children).isSuperset(of: [IdentityWorld.student, "S5117020001-0005"]))

      var unbind = Eduhub_Identity_V1_UnbindGuardianRequest()
      unbind.guardianID = guardianID
      unbind.childID = "S5117020001-0005"
      _ = try await world.client.unbindGuardian(unbind, options: options)
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: parent) }
      // A guardian binding to a teacher is refused.
      bind.binding.childID = IdentityWorld.teacher
      await expectStatus(.failedPrecondition) { try await world.client.bindGuardian(bind, options: options) }
    }
  }

  @Test("a masked reader may not filter by ID or phone, sort by birth date or search names; an owner may")
  func inferenceRefused() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let county = try await world.options("tongchuan")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let principal = try await world.options("principal")
      let clear = try await world.client.getPerson(get, options: principal)

      var byID = Eduhub_Identity_V1_ListPeopleRequest()
      byID.orgCode = "511702"
      byID.nationalID = clear.nationalID
      await expectStatus(.permissionDenied) { try await world.client.listPeople(byID, options: county) }
      var byPhone = Eduhub_Identity_V1_ListPeopleRequest()
      byPhone.orgCode = "511702"
      byPhone.phone = "13812345663"
      await expectStatus(.permissionDenied) { try await world.client.listPeople(byPhone, options: county) }
      var byBirth = Eduhub_Identity_V1_ListPeopleRequest()
      byBirth.orgCode = "511702"
      byBirth.sort = .birthDate
      await expectStatus(.permissionDenied) { try await world.client.listPeople(byBirth, options: county) }
      var search = Eduhub_Identity_V1_SearchPeopleRequest()
      search.query = String(clear.name.prefix(2))
      await expectStatus(.permissionDenied) { try await world.client.searchPeople(search, options: county) }
      try world.node.audit.flush()
      #expect(try world.auditEvents(action: "identity.ListPeople").filter { $0.outcome == "denied" }.count == 3)

      // The child's own school sees these fields in clear, so it may query by them.
      byID.orgCode = IdentityWorld.school
      #expect(try await world.client.listPeople(byID, options: principal).people.map(\.id) == [IdentityWorld.student])
      byBirth.orgCode = IdentityWorld.school
      byBirth.page.pageSize = 1000
      let sorted = try await world.client.listPeople(byBirth, options: principal).people.map(\.birthDate)
      #expect(sorted == sorted.sorted() && !sorted.isEmpty)
    }
  }

  @Test("a clear read of a minor's sensitive fields is audited: who, whose, which fields")
  func clearReadAudited() async throws {
    try await withWorld { world in
      let teacher = try await world.account("teacher1", role: .teacher, org: IdentityWorld.school, person: IdentityWorld.teacher)
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      _ = try await world.client.getPerson(get, options: try await world.options("teacher1"))
      _ = try await world.client.getPerson(get, options: try await world.options("tongchuan"))
      let reads = try world.auditEvents(action: "privacy.clear-read")
      #expect(reads.count == 1)
      #expect(reads.first?.actor == teacher && reads.first?.target == IdentityWorld.student)
      #expect(reads.first?.detail.contains("national_id") == true && reads.first?.detail.contains("name") == true)
      // An adult teacher read by a colleague is not audited as a minor's data.
      get.id = "T5117020001-002"
      _ = try await world.client.getPerson(get, options: try await world.options("teacher1"))
      #expect(try world.auditEvents(action: "privacy.clear-read").count == 1)
    }
  }
}
