import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Testing

/// The ways out of a node besides the main read paths: shared-API aggregates and parameters, row
/// keys and cursors, catalog samples, quotas and grant field lists. Each test is one leak a review
/// found, shut.
@Suite("Egress: aggregates, parameters, keys, samples and quotas leak no child's value")
struct EgressTests {
  /// An aggregate API over the roster.
  static func aggregateApi(
    _ code: String, _ function: Eduhub_Catalog_V1_AggregateFunction, field: String = "", parameter: (String, String, Eduhub_Catalog_V1_ApiOperator)? = nil,
    minGroupSize: Int32 = 0
  ) -> Eduhub_Catalog_V1_Resource {
    var api = SharingFixture.resource(code, .unconditional, type: .api)
    api.api.datasetCode = SharingFixture.roster
    api.api.groupBy = ["class_name"]
    var aggregate = Eduhub_Catalog_V1_ApiAggregate()
    aggregate.function = function
    aggregate.field = field
    api.api.aggregates = [aggregate]
    api.api.minGroupSize = minGroupSize
    if let (name, bound, operation) = parameter {
      var parameter = Eduhub_Catalog_V1_ApiParameter()
      parameter.name = name
      parameter.field = bound
      parameter.operator = operation
      api.api.parameters = [parameter]
    }
    return api
  }

  /// Requests `code` for the bureau and takes it through whatever chain it needs.
  static func grant(_ fixture: SharingFixture, _ code: String, masking: Eduhub_Sharing_V1_MaskingLevel = .masked) async throws
    -> Eduhub_Sharing_V1_AccessRequest
  {
    let asked = try await fixture.sharing.requestAccess(
      SharingFixture.terms(code, masking: masking), options: try await fixture.world.options("bureau"))
    var decided = asked
    if decided.state == .pendingSteward { decided = try await fixture.decide(asked.id, .approve, as: "steward") }
    if decided.state == .pendingSecurity { decided = try await fixture.decide(asked.id, .approve, as: "officer") }
    #expect(decided.state == .approved)
    return asked
  }

  @Test("MIN of a birth date is classified as the birth date, hidden from a masked grant, and needs the steward and the security officer")
  func minOfPersonalField() async throws {
    try await withSharing { fixture in
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...12).map { SharingFixture.student($0) })
      let published = try await fixture.publish(Self.aggregateApi("roster.youngest", .max, field: "birth_date"))
      let column = try #require(published.fields.first { $0.name == "max_birth_date" })
      #expect(column.sensitivity == .sensitive && column.masking == .birthDate)
      // Below the minimum group size over a personal field: refused.
      await expectStatus(.invalidArgument) {
        try await fixture.publish(Self.aggregateApi("roster.small", .count, parameter: ("born", "birth_date", .atLeast), minGroupSize: 2))
      }
      // Shared unconditionally, yet it reads minors' birth dates: both approvers decide.
      let asked = try await Self.grant(fixture, "roster.youngest")
      #expect(asked.state == .pendingSteward && asked.needsSecurityOfficer)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.youngest"
      let answer = try await fixture.sharing.callApi(call, options: try await fixture.world.options("bureau"))
      #expect(answer.rows.count == 1 && answer.rows[0].masked)
      #expect(answer.rows[0].values[1].null, "a masked grant got one pupil's birth date: \(answer.rows[0].values[1])")
    }
  }

  @Test("a masked grant may not filter on an ID number: the prefix oracle is refused; suppressed groups are not counted under filters")
  func noFilterOnMaskedField() async throws {
    try await withSharing { fixture in
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...12).map { SharingFixture.student($0) })
      _ = try await fixture.publish(Self.aggregateApi("roster.id-count", .count, parameter: ("id_prefix", "national_id", .prefix)))
      _ = try await Self.grant(fixture, "roster.id-count")
      let bureau = try await fixture.world.options("bureau")
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.id-count"
      // The whole table: counted, with nothing narrowed by the ID number.
      #expect(try await fixture.sharing.callApi(call, options: bureau).rows.first?.values[1].integer == 12)
      call.parameters = ["id_prefix": "5117022014050100"]
      let message = await expectStatus(.permissionDenied) { try await fixture.sharing.callApi(call, options: bureau) }
      #expect(message.contains("national_id") && !message.contains("5117022014"))
      try fixture.world.node.audit.flush()
      #expect(try fixture.world.auditCount(action: "sharing.CallApi", outcome: "denied") >= 1)
    }
  }

  @Test("row keys that are ID numbers go out as per-consumer pseudonyms, stable per consumer; cursors do not carry them")
  func personalKeys() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      try await SharingFixture.publishRosterByID(fixture)
      try await world.account("bureau2", role: .dataConsumer, org: "511722")
      func grant(_ user: String, _ org: String) async throws {
        let asked = try await fixture.sharing.requestAccess(
          SharingFixture.terms("roster.by-id", org: org, fields: ["student_id", "class_name"]), options: try await world.options(user))
        #expect(try await fixture.decide(asked.id, .approve, as: "steward").state == .approved)
      }
      try await grant("bureau", SharingFixture.county)
      try await grant("bureau2", "511722")
      func keys(_ user: String, batch: Int32 = 0) async throws -> (keys: [String], cursors: [String]) {
        let messages = try await fixture.subscribe("roster.by-id", options: try await world.options(user), batch: batch) {
          $0.last?.snapshotDone == true
        }
        return (messages.flatMap(\.changes).map(\.key), messages.map(\.cursor))
      }
      let first = try await keys("bureau", batch: 1)
      let again = try await keys("bureau")
      let other = try await keys("bureau2")
      let ids = (1...3).map { SharingFixture.student($0)[2] }
      #expect(first.keys.count == 3 && first.keys.allSatisfy { $0.hasPrefix("K-") })
      #expect(Set(first.keys) == Set(again.keys) && Set(first.keys).isDisjoint(with: other.keys))
      for text in first.keys + first.cursors + other.keys {
        #expect(!ids.contains { text.contains($0) || text.contains(String($0.prefix(10))) }, "\(text)")
      }
      // A cursor taken mid-snapshot resumes (the key inside is sealed, not lost) and nothing repeats.
      let resumed = try await fixture.subscribe("roster.by-id", cursor: first.cursors[1], options: try await world.options("bureau")) {
        $0.last?.snapshotDone == true
      }.flatMap(\.changes).map(\.key)
      #expect(resumed == Array(first.keys.dropFirst(1)) || resumed == Array(first.keys.dropFirst(2)))
      // An altered cursor is refused.
      var altered = Array(first.cursors[1])
      altered[altered.count - 3] = altered[altered.count - 3] == "A" ? "B" : "A"
      await expectStatus(.invalidArgument) {
        try await fixture.subscribe("roster.by-id", cursor: String(altered), options: try await world.options("bureau")) { _ in true }
      }
    }
  }

  @Test("a table keyed by ID numbers: staff who see them masked read pseudonym keys, search no prefix and page without them; a masked node receives none of its rows; a deleted row reaches it masked")
  func personalKeysAtRest() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      try await SharingFixture.publishRosterByID(fixture)
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...2).map { SharingFixture.student($0) })
      // A masked county, synced before a row is deleted (a first snapshot sends no tombstones).
      let county = try await CountyNode.enroll(in: world, clearance: .masked)
      try await county.client.syncOnce()
      _ = try await fixture.catalog.ingestRows(options: try await world.options("steward")) { writer in
        var message = Eduhub_Catalog_V1_IngestRowsRequest()
        message.resourceCode = SharingFixture.roster
        message.columns = ["student_id"]
        var gone = Eduhub_Catalog_V1_IngestRow()
        gone.values = [SharingFixture.value("S0002")]
        gone.delete = true
        message.rows = [gone]
        try await writer.write(message)
      }
      let ids = (1...3).map { SharingFixture.student($0)[2] }
      // A city administrator reads the school's people masked.
      let official = try await world.options("cityadmin")
      var read = Eduhub_Catalog_V1_ReadRowsRequest()
      read.code = "roster.by-id"
      read.page.pageSize = 2
      let first = try await fixture.catalog.readRows(read, options: official)
      read.page.pageToken = first.page.nextPageToken
      let second = try await fixture.catalog.readRows(read, options: official)
      let keys = (first.rows + second.rows).map(\.key)
      #expect(keys.count == 3 && Set(keys).count == 3 && keys.allSatisfy { $0.hasPrefix("K-") }, "\(keys)")
      for text in keys + [first.page.nextPageToken] {
        #expect(!ids.contains { text.contains($0) || text.contains(String($0.prefix(10))) }, "\(text)")
      }
      read.page.pageToken = ""
      read.keyPrefix = "5117"
      await expectStatus(.permissionDenied) { try await fixture.catalog.readRows(read, options: official) }
      // A masked county's replica: the roster's rows, none of the table keyed by ID numbers, and
      // the deleted row's last body masked.
      try await county.client.syncOnce()
      let store = county.node.identity.store.records
      let (byID, roster) = try store.database.read { db in
        (
          try store.withPrefix(DatasetSchema.rowCollection, idPrefix: "roster.by-id|", limit: 10, in: db),
          try store.withPrefix(DatasetSchema.rowCollection, idPrefix: SharingFixture.roster + "|", limit: 10, in: db)
        )
      }
      #expect(byID.isEmpty && roster.count == 1)
      let tombstone = try #require(try store.get(DatasetSchema.rowCollection, SharingFixture.roster + "|S0002"))
      #expect(tombstone.deleted)
      #expect(!String(decoding: tombstone.body, as: UTF8.self).contains("王小2") && !String(decoding: tombstone.body, as: UTF8.self).contains(ids[1]))
      // Where a row is named (a conflict's record, a sync-conflict order, a refused push), a row
      // keyed by ID number is named by its table alone for whoever reads the key masked.
      // The rows' ids hold a keyed hash of the ID number, never the number (nor its order).
      let byIDRows = try world.identity.store.records.database.read { db in
        try world.identity.store.records.withPrefix(DatasetSchema.rowCollection, idPrefix: "roster.by-id|", limit: 10, in: db)
      }
      #expect(byIDRows.count == 3 && byIDRows.allSatisfy { row in !ids.contains { row.id.contains(String($0.prefix(10))) } })
      let row = try #require(byIDRows.first)
      var maskers = RecordMaskers(identity: world.identity)
      let today = world.identity.today
      #expect(try maskers.shownID(row, for: .staff(subject: "county", grants: []), on: today) == "roster.by-id|（已隐藏）")
      #expect(try maskers.shownID(row, for: .node(id: "clear", clearScope: ""), on: today) == row.id)
      // A pushed row may still carry a number in its id (and be refused for it): the refusal names it not.
      let forged = "roster.by-id|" + ids[0]
      let reason = world.identity.scrubbingCarriedIDs("row \(forged): refused", of: [(row.collection, forged)])
      #expect(!reason.contains(ids[0]) && reason.contains("roster.by-id"), "\(reason)")
      await county.close()
    }
  }

  @Test("a grant asked without a field list is fixed to the fields the table has when it is asked; a field added later is not granted")
  func fieldListFixed() async throws {
    try await withSharing { fixture in
      let grant = try await fixture.granted(count: 2, fields: [])
      var get = Eduhub_Sharing_V1_GetRequestRequest()
      get.requestID = grant
      let request = try await fixture.sharing.getRequest(get, options: try await fixture.world.options("bureau"))
      #expect(request.terms.fields == SharingFixture.rosterResource().fields.map(\.name))
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = SharingFixture.rosterResource()
      update.resource.fields.append(SharingFixture.field("phone", .string, .sensitive, .phone))
      _ = try await fixture.catalog.updateResource(update, options: try await fixture.world.options("steward"))
      let messages = try await fixture.subscribe(options: try await fixture.world.options("bureau")) { $0.last?.snapshotDone == true }
      #expect(messages.first?.columns == SharingFixture.rosterResource().fields.map(\.name))
    }
  }
}

@Suite("Aggregates of personal values")
struct AggregateDifferencingTests {
  @Test("a masked grant calls an aggregate of personal values with one EQUALS parameter at most: two ranges differing by one pupil would give that pupil's value")
  func noDifferencing() async throws {
    try await withSharing { fixture in
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...12).map { SharingFixture.student($0) })
      _ = try await fixture.publish(EgressTests.aggregateApi("roster.born-count", .max, field: "birth_date", parameter: ("from", "score", .atLeast)))
      _ = try await EgressTests.grant(fixture, "roster.born-count")
      let bureau = try await fixture.world.options("bureau")
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.born-count"
      // Without its parameter it would be the whole of which the calls with it are parts.
      let whole = await expectStatus(.permissionDenied) { try await fixture.sharing.callApi(call, options: bureau) }
      #expect(whole.contains("over one parameter at most, bound by EQUALS"), "\(whole)")
      call.parameters = ["from": "80"]
      let message = await expectStatus(.permissionDenied) { try await fixture.sharing.callApi(call, options: bureau) }
      #expect(message.contains("over one parameter at most, bound by EQUALS"), "\(message)")
    }
  }
}

@Suite("A guardian's bindings")
struct GuardianBindingListTests {
  @Test("a teacher reading a guardian of their school sees only the bindings to children they may read")
  func bindingsStopAtReadableChildren() async throws {
    try await withWorld { world in
      let guardian = "G\(IdentityWorld.school)-0001a"
      var bind = Eduhub_Identity_V1_BindGuardianRequest()
      bind.binding.guardianID = guardian
      bind.binding.childID = IdentityWorld.otherStudent
      bind.binding.relation = "父亲"
      _ = try world.identity.bindGuardian(bind, caller: .operator(name: "test"), peer: "test")
      try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      var list = Eduhub_Identity_V1_ListGuardianshipsRequest()
      list.guardianID = guardian
      let seen = try await world.client.listGuardianships(list, options: try await world.options("teacher1")).bindings.map(\.childID)
      let all = try world.identity.listGuardianships(list, caller: .operator(name: "test"), peer: "test").bindings.map(\.childID)
      #expect(all.contains(IdentityWorld.otherStudent) && !seen.isEmpty && !seen.contains(IdentityWorld.otherStudent), "\(seen) of \(all)")
    }
  }
}

@Suite("A table's key under stored rows")
struct PersonalKeyChangeTests {
  @Test("a key field raised to personal under stored rows is refused: the rows are stored by their key, a personal one by its hash")
  func personalKeyStays() async throws {
    try await withSharing { fixture in
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...2).map { SharingFixture.student($0) })
      let steward = try await fixture.world.options("steward")
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = try await fixture.catalog.getResource(.with { $0.code = SharingFixture.roster }, options: steward)
      if let index = update.resource.fields.firstIndex(where: { $0.name == "student_id" }) {
        update.resource.fields[index].sensitivity = .sensitive
        update.resource.fields[index].masking = .redact
      }
      let message = await expectStatus(.failedPrecondition) { try await fixture.catalog.updateResource(update, options: steward) }
      #expect(message.contains("whether its key is personal cannot change"), "\(message)")
    }
  }
}

@Suite("A row's masked flag")
struct MaskedFlagTests {
  @Test("a grant of non-personal fields gets rows that say nothing about the personal fields it does not show")
  func onlyShownFields() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 3, fields: ["student_id", "class_name", "score"])
      let rows = try await fixture.subscribe(options: try await fixture.world.options("bureau")) { $0.last?.snapshotDone == true }
        .flatMap(\.changes)
      #expect(rows.count == 3 && rows.allSatisfy { !$0.row.masked }, "\(rows.map(\.row.masked))")
    }
  }

  @Test("a shown field the policy hides flags every row, whether or not the row holds a value there")
  func sameForEmptyValues() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 2, fields: ["student_id", "national_id", "score"])
      var noID = SharingFixture.student(3)
      noID[2] = ""
      try await fixture.ingest([noID])
      let rows = try await fixture.subscribe(options: try await fixture.world.options("bureau")) { $0.last?.snapshotDone == true }
        .flatMap(\.changes)
      #expect(rows.count == 3 && rows.allSatisfy { $0.row.masked }, "\(rows.map(\.row.masked))")
    }
  }
}

@Suite("Answers that tell nothing about who exists elsewhere")
struct OracleTests {
  @Test("BindGuardian answers one PERMISSION_DENIED to a caller who does not bind the child, whether the ids exist or not; a child's account shows no phone")
  func bindingAndPhones() async throws {
    try await withWorld { world in
      try await world.account("otherteacher", role: .teacher, org: IdentityWorld.otherSchool)
      let other = try await world.options("otherteacher")
      var messages: [String] = []
      for (guardian, child) in [("G-none", "S-none"), ("G-none", IdentityWorld.student), (IdentityWorld.teacher, IdentityWorld.student)] {
        var bind = Eduhub_Identity_V1_BindGuardianRequest()
        bind.binding.guardianID = guardian
        bind.binding.childID = child
        let message = await expectStatus(.permissionDenied) { try await world.client.bindGuardian(bind, options: other) }
        messages.append(message.replacingOccurrences(of: guardian, with: "G").replacingOccurrences(of: child, with: "C"))
      }
      #expect(Set(messages).count == 1, "\(messages)")
      // A pupil of six: the code goes to the account's phone, which nobody is shown.
      try edit(world.identity.replica, IdentityWorld.student) { $0.phone = "13800005663" }
      try await world.account("countyadmin", role: .countyAdmin, org: "511702")
      var create = Eduhub_Identity_V1_CreateAccountRequest()
      create.personID = IdentityWorld.student
      create.username = "pupil-one"
      let created = try await world.client.createAccount(create, options: try await world.options("countyadmin"))
      #expect(created.deliveredTo.isEmpty && created.account.phone.isEmpty, "\(created.deliveredTo)")
      #expect(world.delivery.code(for: "13800005663") != nil, "the code was sent all the same")
    }
  }

  @Test("UpdatePerson by someone who reads the pupil masked: one answer for absent and not theirs, no birth date or ID number written (a refusal would tell the hidden one), a whole record sent back keeps the real values; ids hold no ID number")
  func updatesByMaskedStaff() async throws {
    try await withWorld { world in
      try await world.account("countyadmin", role: .countyAdmin, org: "511702")
      let admin = try await world.options("countyadmin")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let seen = try await world.client.getPerson(get, options: admin)
      #expect(seen.masked)
      var messages: [String] = []
      for id in ["P-none", IdentityWorld.otherStudent] {
        var update = Eduhub_Identity_V1_UpdatePersonRequest()
        update.person.id = id
        update.person.className = "x"
        update.updateMask = ["class_name"]
        messages.append(await expectStatus(.permissionDenied) { try await world.client.updatePerson(update, options: admin) }
          .replacingOccurrences(of: id, with: "X"))
      }
      #expect(Set(messages).count == 1, "\(messages)")
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person = seen
      update.person.birthDate = "2020-02-10"
      update.updateMask = ["birth_date"]
      await expectStatus(.permissionDenied) { try await world.client.updatePerson(update, options: admin) }
      // The whole record as read (masked), with a new class: only the class changes.
      update.person = seen
      update.person.className = "三年级二班"
      update.updateMask = []
      _ = try await world.client.updatePerson(update, options: admin)
      let stored = try Eduhub_Identity_V1_Person(serializedBytes: try #require(try world.identity.store.records.get(IdentityCollections.person, IdentityWorld.student)).body)
      #expect(stored.className == "三年级二班" && stored.name != seen.name && stored.nationalID != seen.nationalID)
      var create = Eduhub_Identity_V1_CreatePersonRequest()
      create.person = stored
      create.person.id = "S" + stored.nationalID
      create.person.nationalID = ""
      let refused = await expectStatus(.invalidArgument) { try await world.client.createPerson(create, options: admin) }
      #expect(refused.contains("must not contain an ID number"), "\(refused)")
      // Nor seventeen of its digits, nor the number split by separators.
      let number = stored.nationalID
      let split = "P\(number.prefix(6))-\(number.dropFirst(6).prefix(8))-\(number.suffix(4))"
      for id in ["P\(number.prefix(17))", split] {
        create.person.id = id
        await expectStatus(.invalidArgument) { try await world.client.createPerson(create, options: admin) }
      }
    }
  }
}
