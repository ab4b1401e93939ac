import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Testing

@Suite("Data catalog: datasets (ingest, views), masked samples, manuals, search paging and matching")
struct CatalogDatasetTests {
  func catalog(_ world: IdentityWorld) -> Eduhub_Catalog_V1_CatalogService.Client { .init(world.rpc) }

  func ingest(
    _ world: IdentityWorld, _ rows: [Eduhub_Catalog_V1_IngestRow], code: String = "school.roster", columns: [String] = CatalogFixture.columns,
    options: CallOptions, perMessage: Int = 3
  ) async throws -> Eduhub_Catalog_V1_IngestRowsResponse {
    try await catalog(world).ingestRows(options: options) { writer in
      var first = true
      for start in stride(from: 0, to: max(rows.count, 1), by: perMessage) {
        var message = Eduhub_Catalog_V1_IngestRowsRequest()
        if first {
          message.resourceCode = code
          message.columns = columns
          first = false
        }
        message.rows = Array(rows[start..<min(rows.count, start + perMessage)])
        try await writer.write(message)
      }
    }
  }

  @Test("ingest: bad rows in the middle are reported by position and the rest written; upsert, delete, row count")
  func ingestWithBadRows() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: IdentityWorld.school)
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      let steward = try await world.options("steward")
      _ = try await catalog(world).publishResource(CatalogFixture.roster(), options: steward)
      var integer = Eduhub_Catalog_V1_Value()
      integer.integer = 20_140_501
      var rows: [Eduhub_Catalog_V1_IngestRow] = []
      for index in 1...10 {
        let id = String(format: "S%02d", index)
        var values = [CatalogFixture.text(id), CatalogFixture.text("王芳\(index)"), CatalogFixture.text("2014-05-0\(index % 9 + 1)"), CatalogFixture.text("9\(index).5"), CatalogFixture.text("true")]
        switch index {
        case 3: values[2] = integer  // an integer where a date belongs
        case 5: values[0] = CatalogFixture.text("")  // no key
        case 7: values[1] = CatalogFixture.text(String(repeating: "长", count: 21))  // longer than max_length 20
        case 9: values.removeLast()  // one value short
        default: break
        }
        rows.append(CatalogFixture.row(values))
      }
      let response = try await ingest(world, rows, options: steward)
      #expect(response.received == 10 && response.upserted == 6 && response.rejected == 4 && response.rowCount == 6)
      #expect(response.errors.map(\.row) == [3, 5, 7, 9])
      #expect(response.errors[0].message.contains("birth_date") && response.errors[1].message.contains("key"))
      #expect(response.errors[2].message.contains("longer than 20") && response.errors[3].message.contains("values"))
      // No message carries a value (they may be personal).
      #expect(!response.errors.contains { $0.message.contains("长长") || $0.message.contains("王芳") })

      let teacher = try await world.options("teacher1")
      var read = Eduhub_Catalog_V1_ReadRowsRequest()
      read.code = "school.roster"
      var page = try await catalog(world).readRows(read, options: teacher)
      #expect(page.columns == CatalogFixture.columns)
      #expect(page.rows.map(\.key) == ["S01", "S02", "S04", "S06", "S08", "S10"])
      #expect(page.rows[0].values[1].text == "王芳1" && page.rows[0].values[2].date == "2014-05-02")
      #expect(page.rows[0].values[3].decimal == "91.5" && page.rows[0].values[4].boolean && !page.rows[0].masked)

      // Upsert of some columns keeps the others; delete by key; a delete of a missing key is reported.
      let second = try await ingest(
        world,
        [
          CatalogFixture.row([CatalogFixture.text("S01"), CatalogFixture.text("80")]), CatalogFixture.row([CatalogFixture.text("S02")], delete: true),
          CatalogFixture.row([CatalogFixture.text("S99")], delete: true), CatalogFixture.row([CatalogFixture.text("S11"), CatalogFixture.text("70")]),
        ], columns: ["student_id", "score"], options: steward)
      #expect(second.upserted == 2 && second.deleted == 1 && second.rejected == 1 && second.rowCount == 6)
      #expect(second.errors.map(\.row) == [3])
      read.keyPrefix = "S0"
      read.page.pageSize = 2
      page = try await catalog(world).readRows(read, options: teacher)
      #expect(page.rows.map(\.key) == ["S01", "S04"])
      #expect(page.rows[0].values[1].text == "王芳1" && page.rows[0].values[3].decimal == "80")
      read.page.pageToken = page.page.nextPageToken
      page = try await catalog(world).readRows(read, options: teacher)
      #expect(page.rows.map(\.key) == ["S06", "S08"])

      // A schema change that would misread the stored rows is refused.
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = CatalogFixture.roster().resource
      update.resource.fields.removeLast()
      await expectStatus(.failedPrecondition) { try await catalog(world).updateResource(update, options: steward) }
      update.resource = CatalogFixture.roster().resource
      update.resource.fields.append(CatalogFixture.field("class_name", .string))
      let updated = try await catalog(world).updateResource(update, options: steward)
      #expect(updated.fields.map(\.column) == [1, 2, 3, 4, 5, 6] && updated.rowCount == 6)

      // The stream's own mistakes: an unknown column, no key column, another org's steward.
      await expectStatus(.invalidArgument) { try await ingest(world, [], columns: ["nope"], options: steward) }
      await expectStatus(.invalidArgument) { try await ingest(world, [], columns: ["name"], options: steward) }
      try await world.account("other", role: .dataSteward, org: IdentityWorld.otherSchool)
      await expectStatus(.permissionDenied) { try await ingest(world, [], options: try await world.options("other")) }
      #expect(try world.auditEvents(action: "catalog.IngestRows").contains { $0.outcome == "partial" })
    }
  }

  @Test("the sample of minors' rows is de-identified for a reader who does not read them and clear for the owner; the manual")
  func maskedSampleAndManual() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: IdentityWorld.school)
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      try await world.account("outsider", role: .dataSteward, org: "511703")
      let steward = try await world.options("steward")
      _ = try await catalog(world).publishResource(CatalogFixture.roster(), options: steward)
      _ = try await ingest(
        world, [CatalogFixture.row([CatalogFixture.text("S01"), CatalogFixture.text("王芳"), CatalogFixture.text("2014-05-01"), CatalogFixture.text("88"), CatalogFixture.text("1")])],
        options: steward)
      var get = Eduhub_Catalog_V1_GetResourceRequest()
      get.code = "school.roster"
      let owner = try await catalog(world).getResource(get, options: try await world.options("teacher1"))
      #expect(owner.sample.count == 1 && owner.sample[0].values[1].text == "王芳" && !owner.sample[0].masked)
      let outsider = try await catalog(world).getResource(get, options: try await world.options("outsider"))
      // Someone who does not read these pupils gets a de-identified sample: no name at all (not
      // even a surname), no birth date, no key.
      #expect(outsider.sample.count == 1 && outsider.sample[0].masked && outsider.sample[0].key.isEmpty)
      #expect(!outsider.sample[0].values[1].text.contains("王") && outsider.sample[0].values[2].date.isEmpty)
      #expect(outsider.sample[0].values[3].decimal == "88")
      // Rows themselves are for the org's readers: the outsider asks through sharing.
      var read = Eduhub_Catalog_V1_ReadRowsRequest()
      read.code = "school.roster"
      await expectStatus(.permissionDenied) { try await catalog(world).readRows(read, options: try await world.options("outsider")) }
      #expect(try world.auditEvents(action: "privacy.clear-read").contains { $0.target == "school.roster|S01" })

      let manual = owner.manual
      #expect(manual.method == "/eduhub.catalog.v1.CatalogService/ReadRows" && manual.function.contains("学生花名册"))
      #expect(manual.requestFields.contains { $0.name == "code" && $0.required })
      #expect(manual.responseFields.contains { $0.name.contains("(birth_date)") && $0.type.hasPrefix("date") })
      #expect(Set(manual.statuses.map(\.code)).isSuperset(of: ["OK", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"]))
      let example = try Eduhub_Catalog_V1_ReadRowsRequest(jsonString: manual.requestExample)
      #expect(example.code == "school.roster")
      let response = try Eduhub_Catalog_V1_ReadRowsResponse(jsonString: manual.responseExample)
      #expect(response.columns == CatalogFixture.columns && response.rows.first?.values.count == 5)
    }
  }

  @Test("a view over people: typed and classified from the .proto, counted, paged, masked per reader")
  func viewOverPeople() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: IdentityWorld.school)
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      var request = Eduhub_Catalog_V1_PublishResourceRequest()
      request.resource = CatalogFixture.roster().resource
      request.resource.code = "school.students"
      request.resource.dataset.view.collection = "person"
      request.resource.dataset.view.personKind = "student"
      // The publisher asks for fields by name; a lower classification is not taken.
      var name = CatalogFixture.field("name", .string, .public, .none)
      name.description_p = "姓名"
      request.resource.fields = [name, CatalogFixture.field("birth_date", .string), CatalogFixture.field("grade", .string)]
      let steward = try await world.options("steward")
      let published = try await catalog(world).publishResource(request, options: steward)
      #expect(published.fields.map(\.type) == [.string, .date, .integer])
      #expect(published.fields[0].sensitivity == .sensitive && published.fields[0].masking == .name)
      let schoolPath = try #require(try world.identity.store.records.get("org", IdentityWorld.school)).scope
      let students = try world.identity.store.records.inScope("person", scope: schoolPath, limit: 100_000)
        .filter { (try? Eduhub_Identity_V1_Person(serializedBytes: $0.body))?.kind == .student }
      #expect(published.rowCount == Int64(students.count) && students.count > 10)

      var read = Eduhub_Catalog_V1_ReadRowsRequest()
      read.code = "school.students"
      read.page.pageSize = 7
      var keys: [String] = []
      let teacher = try await world.options("teacher1")
      repeat {
        let page = try await catalog(world).readRows(read, options: teacher)
        keys += page.rows.map(\.key)
        #expect(page.rows.allSatisfy { !$0.masked && !$0.values[0].text.contains("*") })
        read.page.pageToken = page.page.nextPageToken
      } while !read.page.pageToken.isEmpty
      #expect(Set(keys) == Set(students.map(\.id)) && keys.count == students.count)

      // A new pupil: a detail read recounts the view in the background (at most hourly).
      var pupil = Eduhub_Identity_V1_CreatePersonRequest()
      pupil.person.kind = .student
      pupil.person.name = "新同学"
      pupil.person.orgCode = IdentityWorld.school
      pupil.person.grade = 1
      pupil.person.className = "1班"
      _ = try world.identity.createPerson(pupil, caller: .operator(name: "test"), peer: "test")
      var get = Eduhub_Catalog_V1_GetResourceRequest()
      get.code = "school.students"
      var counted: Int64 = 0
      // The view's row count follows the write asynchronously: wait for it, however busy the machine.
      let deadline = ContinuousClock.now + .seconds(60)
      while ContinuousClock.now < deadline {
        counted = try await catalog(world).getResource(get, options: teacher).rowCount
        if counted == Int64(students.count + 1) { break }
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(counted == Int64(students.count + 1))

      var bad = request
      bad.resource.code = "bad.view"
      bad.resource.fields = [CatalogFixture.field("password_hash", .string)]
      await expectStatus(.invalidArgument) { try await catalog(world).publishResource(bad, options: steward) }
      bad.resource.fields = []
      bad.resource.dataset.view.orgCode = IdentityWorld.otherSchool
      await expectStatus(.invalidArgument) { try await catalog(world).publishResource(bad, options: steward) }
    }
  }

  @Test("page tokens keep their order while resources are published and changed")
  func pagingWhileWriting() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: "511702")
      let steward = try await world.options("steward")
      for index in 0..<25 {
        var request = CatalogTests.resource("page-\(index)", "分页资源\(index)", org: "511702")
        request.resource.type = .file
        request.resource.clearDataset()
        _ = try await catalog(world).publishResource(request, options: steward)
      }
      var search = Eduhub_Catalog_V1_SearchResourcesRequest()
      search.query = "分页"
      search.sort = .updated
      search.page.pageSize = 10
      var seen: [String] = []
      var page = try await catalog(world).searchResources(search, options: steward)
      seen += page.resources.map(\.code)
      var writes = 0
      while !page.page.nextPageToken.isEmpty {
        // Between pages: new resources (that sort first by update time) and changes of listed ones.
        for _ in 0..<3 {
          var request = CatalogTests.resource("page-new-\(writes)", "分页资源新\(writes)", org: "511702")
          request.resource.type = .file
          request.resource.clearDataset()
          _ = try await catalog(world).publishResource(request, options: steward)
          var update = Eduhub_Catalog_V1_UpdateResourceRequest()
          update.resource = request.resource
          update.resource.code = "page-\(writes)"
          update.resource.name = "分页资源\(writes)改"
          _ = try await catalog(world).updateResource(update, options: steward)
          writes += 1
        }
        search.page.pageToken = page.page.nextPageToken
        page = try await catalog(world).searchResources(search, options: steward)
        seen += page.resources.map(\.code)
      }
      #expect(seen.count == 25 && Set(seen) == Set((0..<25).map { "page-\($0)" }))
      // A token belongs to its request.
      search.query = "别的"
      await expectStatus(.invalidArgument) {
        var other = search
        other.page.pageToken = "!!"
        return try await catalog(world).searchResources(other, options: steward)
      }
    }
  }

  @Test("matching: exact vs fuzzy, mixed Chinese and ASCII, single characters; facets count the other filters")
  func matching() async throws {
    try await withWorld { world in
      try await world.account("steward", role: .dataSteward, org: "511702")
      let steward = try await world.options("steward")
      var health = CatalogTests.resource("health", "学生体质健康监测", org: "511702", theme: "student", summary: "GPA 与 成绩 汇总")
      health.resource.type = .file
      health.resource.clearDataset()
      _ = try await catalog(world).publishResource(health, options: steward)
      var teachers = CatalogTests.resource("teachers", "教师名录", org: "511702", theme: "teacher", system: "人事系统")
      teachers.resource.type = .file
      teachers.resource.clearDataset()
      _ = try await catalog(world).publishResource(teachers, options: steward)
      func codes(_ query: String, exact: Bool = false, theme: String = "") async throws -> [String] {
        var search = Eduhub_Catalog_V1_SearchResourcesRequest()
        search.query = query
        search.exact = exact
        search.theme = theme
        return try await catalog(world).searchResources(search, options: steward).resources.map(\.code)
      }
      #expect(try await codes("体质监测") == ["health"])  // fuzzy: two of its three character pairs
      #expect(try await codes("体质监测", exact: true).isEmpty)
      #expect(try await codes("体质健康", exact: true) == ["health"])
      #expect(try await codes("GPA成绩") == ["health"])  // mixed scripts split into runs
      #expect(try await codes("gpa 教师").isEmpty)  // every word must match
      #expect(try await codes("师") == ["teachers"])
      #expect(try await codes("hxaltx").isEmpty)  // two edits: too far
      #expect(try await codes("healtth") == ["health"])  // a letter too many
      #expect(try await codes("haelth") == ["health"])  // two letters swapped
      // Facets: choosing theme=teacher still shows how many the other themes would give.
      var search = Eduhub_Catalog_V1_SearchResourcesRequest()
      search.theme = "teacher"
      let found = try await catalog(world).searchResources(search, options: steward)
      #expect(found.resources.map(\.code) == ["teachers"])
      #expect(found.facets.first { $0.filter == "theme" }?.counts == ["student": 1, "teacher": 1])
      #expect(found.facets.first { $0.filter == "publishing_system" }?.counts == ["人事系统": 1])
    }
  }
}
