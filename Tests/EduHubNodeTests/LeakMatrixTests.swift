import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import EduHubWorkOrders
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

/// The leak matrix: every way data leaves a node × every kind of reader × every classified field of
/// a person × children at the age boundaries. For each cell the test knows, independently of the
/// code under test, whether the reader is entitled to the child's data in clear, and searches the
/// bytes that left (a response, an error message, a node's whole replica after a pull) for the
/// child's clear values. The fields come from the classification metadata, so a field added to
/// `Person` with a privacy annotation fails here until the matrix knows how to look for it.
@Suite("Leak matrix: egress paths × readers × classified fields × boundary ages")
struct LeakMatrixTests {
  /// A child of the school with distinctive values in every classified field.
  struct Child {
    let label: String
    let person: Eduhub_Identity_V1_Person
    let under14: Bool
  }

  /// Children born so that on `today` they are 13 years 364 days, 14, 17 years 364 days and 18 old,
  /// and one born on 29 February.
  static func children(today: CivilDate) -> [Child] {
    func shifted(years: Int, days: Int) -> CivilDate {
      var calendar = Calendar(identifier: .gregorian)
      calendar.timeZone = TimeZone(identifier: "Asia/Shanghai") ?? .current
      let start = calendar.date(from: DateComponents(year: today.year, month: today.month, day: today.day)) ?? Date()
      let date = calendar.date(byAdding: DateComponents(year: -years, day: days), to: start) ?? start
      let parts = calendar.dateComponents([.year, .month, .day], from: date)
      return CivilDate(year: parts.year ?? 2000, month: parts.month ?? 1, day: parts.day ?? 1) ?? today
    }
    let births: [(String, CivilDate, Bool)] = [
      ("13y364d", shifted(years: 14, days: 1), true),
      ("14y", shifted(years: 14, days: 0), false),
      ("17y364d", shifted(years: 18, days: 1), false),
      ("18y", shifted(years: 18, days: 0), false),
      ("29feb", CivilDate(year: 2012, month: 2, day: 29) ?? today, false),
    ]
    let given = ["龘鑫", "燚垚", "淼犇", "骉羴", "麤猋"]
    let ethnicities = ["裕固族", "赫哲族", "塔塔尔族", "珞巴族", "门巴族"]
    let streets = ["龙须沟巷", "琉璃厂胡同", "烟袋斜街", "鼓楼东巷", "棉花胡同"]
    return births.enumerated().map { index, birth in
      let (label, date, under14) = birth
      let born = String(format: "%04d%02d%02d", date.year, date.month, date.day)
      let body = "511702" + born + String(format: "%03d", 731 + index)
      let check = NationalID.checkCharacter(body.compactMap(\.wholeNumberValue))
      var person = Eduhub_Identity_V1_Person()
      person.id = "LEAK-\(index)"
      person.kind = .student
      person.name = "欧" + given[index]
      person.birthDate = date.description
      person.nationalID = body + String(UnicodeScalar(check))
      person.ethnicity = ethnicities[index]
      person.phone = "1397731\(String(format: "%04d", 4821 + index * 1111))"
      person.address = "四川省达州市通川区\(streets[index])\(index + 7)号院"
      person.email = "leak.probe.\(index)@example.cn"
      person.orgCode = IdentityWorld.school
      person.className = "九班"
      return Child(label: label, person: person, under14: under14 || (date.years(until: today) < 14))
    }
  }

  /// What must not appear in the bytes a reader without clear rights receives, per classified
  /// field (by its masking kind): the clear value or any part that is only ever the clear value.
  static func probes(_ child: Child, _ field: ClassifiedField) -> [String]? {
    let person = child.person
    switch field.masking {
    case .name: return [String(person.name.dropFirst())]  // the given name (the surname may show)
    case .birthDate: return [person.birthDate]  // the year may show
    case .nationalID: return [String(person.nationalID.suffix(8)), String(person.nationalID.dropFirst(6).prefix(8))]
    case .phone:
      // Clear never; for a child under 14 not even the masked form (removed entirely).
      let masked = String(person.phone.prefix(3)) + "****" + String(person.phone.suffix(4))
      return [person.phone] + (child.under14 ? [masked] : [])
    case .address: return [String(person.address.dropFirst("四川省达州市通川区".count))]
    case .email: return [String(person.email.prefix { $0 != "@" })]
    case .redact, .freeText: return [person.ethnicity]
    case .none, .unspecified, .UNRECOGNIZED: return nil
    }
  }

  /// A kind of reader and whether it is entitled to a child's data in clear (the policy, stated
  /// here on its own: staff of the child's school with clear reads, the child's confirmed guardian,
  /// a node cleared for the child's county; never anyone else). Roles are held on orgs and a class
  /// is not one: a teacher of another class of the same school is staff of the child's school.
  struct ReaderKind {
    let name: String
    let token: String
    let clear: (Child) -> Bool
    /// An external consumer: de-identified, so not even staff-masked forms (the surname, the
    /// region's pseudonym of an ID number, which links to every other masked read) may reach it.
    var deidentified = false
  }

  /// The staff-masked forms of a child's values that a de-identified reader must not get either.
  static func maskedForms(_ child: Child, regionKey: SecretBytes) throws -> [String] {
    [Masking.name(child.person.name), try Masking.nationalID(child.person.nationalID, key: regionKey)]
  }

  /// One way out: returns the bytes that left for a reader (an error's message counts).
  struct Path {
    let name: String
    let call: (String) async throws -> [UInt8]
  }

  @Test("no reader receives a clear value it is not entitled to, on any path, for any classified field or boundary age")
  func matrix() async throws {
    let log = CapturedLog()
    try await withSharing(log: log) { fixture in
      let world = fixture.world
      let children = Self.children(today: world.identity.today)
      for child in children {
        var create = Eduhub_Identity_V1_CreatePersonRequest()
        create.person = child.person
        _ = try world.identity.createPerson(create, caller: .operator(name: "test"), peer: "test")
      }
      // Every classified field has a value in the fixture and a probe: a new one fails here.
      let classified = Eduhub_Identity_V1_Person.classifiedFields.filter { $0.masking != .none }
      for field in classified {
        #expect(Self.probes(children[0], field) != nil, "the matrix has no probe for \(field.name)")
        #expect(try children.allSatisfy { child in
          try WireFields(parsing: child.person.serializedBytes()).text(field.number)?.isEmpty == false
        }, "the fixture's children leave \(field.name) empty")
      }

      // The guardian of the first child only (bound by the operator: confirmed).
      var guardian = Eduhub_Identity_V1_Person()
      guardian.id = "LEAK-G"
      guardian.kind = .guardian
      guardian.name = "欧阳靖"
      guardian.phone = "13977300001"
      guardian.orgCode = IdentityWorld.school
      var createGuardian = Eduhub_Identity_V1_CreatePersonRequest()
      createGuardian.person = guardian
      _ = try world.identity.createPerson(createGuardian, caller: .operator(name: "test"), peer: "test")
      var bind = Eduhub_Identity_V1_BindGuardianRequest()
      bind.binding.guardianID = guardian.id
      bind.binding.childID = children[0].person.id
      _ = try world.identity.bindGuardian(bind, caller: .operator(name: "test"), peer: "test")

      try await world.account("county", role: .countyAdmin, org: "511702")
      try await world.account("teacher", role: .teacher, org: IdentityWorld.school)
      try await world.account("otherteacher", role: .teacher, org: IdentityWorld.otherSchool)
      try await world.account("classteacher", role: .teacher, org: IdentityWorld.school)
      try await world.account("guardian", org: IdentityWorld.school, person: guardian.id)

      // A table of the children's personal data, a view over the school's pupils, an API.
      var table = SharingFixture.resource("leak.roster", .conditional)
      table.fields = [
        SharingFixture.field("student_id", .string), SharingFixture.field("name", .string, .sensitive, .name),
        SharingFixture.field("national_id", .string, .highlySensitive, .nationalID),
        SharingFixture.field("birth_date", .date, .sensitive, .birthDate), SharingFixture.field("phone", .string, .sensitive, .phone),
        SharingFixture.field("address", .string, .sensitive, .address),
      ]
      table.dataset.ingested.keyFields = ["student_id"]
      _ = try await fixture.publish(table)
      let steward = try await world.options("steward")
      _ = try await fixture.catalog.ingestRows(options: steward) { writer in
        var message = Eduhub_Catalog_V1_IngestRowsRequest()
        message.resourceCode = "leak.roster"
        message.columns = table.fields.map(\.name)
        for child in children {
          var row = Eduhub_Catalog_V1_IngestRow()
          let person = child.person
          row.values = [person.id, person.name, person.nationalID, person.birthDate, person.phone, person.address].map(SharingFixture.value)
          message.rows.append(row)
        }
        // Younger classmates, so that an aggregate's group is large enough to answer (and its MIN
        // is one of the children's birth dates).
        for index in 0..<6 {
          var row = Eduhub_Catalog_V1_IngestRow()
          row.values = ["FILL-\(index)", "", "", "2016-0\(index + 1)-01", "", ""].map(SharingFixture.value)
          message.rows.append(row)
        }
        try await writer.write(message)
      }
      var view = SharingFixture.resource("leak.view", .conditional)
      view.dataset.view.collection = "person"
      view.dataset.view.personKind = "student"
      view.fields = classified.map { SharingFixture.field($0.name, .string) } + [SharingFixture.field("class_name", .string)]
      _ = try await fixture.publish(view)
      var lookup = SharingFixture.resource("leak.lookup", .conditional, type: .api)
      lookup.api.datasetCode = "leak.roster"
      var id = Eduhub_Catalog_V1_ApiParameter()
      id.name = "id"
      id.field = "student_id"
      lookup.api.parameters = [id]
      _ = try await fixture.publish(lookup)
      var oldest = EgressTests.aggregateApi("leak.oldest", .min, field: "birth_date", minGroupSize: 10)
      oldest.code = "leak.oldest"
      oldest.sharingClass = .conditional
      oldest.api.datasetCode = "leak.roster"
      oldest.api.groupBy = []
      _ = try await fixture.publish(oldest)

      // The bureau holds masked grants; an external application de-identified ones.
      let admin = try await world.options("cityadmin")
      var register = Eduhub_Sharing_V1_RegisterAppRequest()
      register.name = "外部应用"
      register.orgCode = CitySeeder.cityCode
      let app = try await fixture.sharing.registerApp(register, options: admin)
      var exchange = Eduhub_Sharing_V1_ExchangeTokenRequest()
      exchange.clientID = app.app.clientID
      exchange.clientSecret = app.clientSecret
      let appToken = try await fixture.sharing.exchangeToken(exchange).accessToken
      let bureauToken = try await world.login("bureau").accessToken
      for code in ["leak.roster", "leak.view", "leak.lookup", "leak.oldest"] {
        for (token, terms) in [
          (bureauToken, SharingFixture.terms(code)),
          (appToken, SharingFixture.terms(code, org: app.app.clientID, masking: .deidentified, kind: .app)),
        ] {
          let asked = try await fixture.sharing.requestAccess(terms, options: world.bearer(token))
          var decided = asked
          if decided.state == .pendingSteward { decided = try await fixture.decide(asked.id, .approve, as: "steward") }
          if decided.state == .pendingSecurity { decided = try await fixture.decide(asked.id, .approve, as: "officer") }
          #expect(decided.state == .approved, "\(code)")
        }
      }

      // Two county nodes, one masked and one clear; each pulls its county.
      let maskedNode = try await CountyNode.enroll(in: world, id: "county-masked", clearance: .masked)
      let clearNode = try await CountyNode.enroll(in: world, id: "county-clear", clearance: .clear)
      try await maskedNode.client.syncOnce()
      try await clearNode.client.syncOnce()
      // A pupil's address edited at central and at the clear node at once: the losing value (which
      // still holds the street the probe looks for) is kept in a conflict log.
      let original = children[1].person.address
      try edit(clearNode.node.replica, children[1].person.id) { $0.address = original + "西" }
      try edit(world.identity.replica, children[1].person.id) { $0.address = original + "东" }
      try await clearNode.client.syncOnce()
      try await clearNode.client.syncOnce()
      try await maskedNode.client.syncOnce()
      // Central's sweep files the conflict as a work order: its description names both values.
      #expect(try world.node.workOrders.sweep().conflictOrders > 0, "the conflict was filed as no work order")
      let orderIDs = try await Eduhub_Workorder_V1_WorkOrderService.Client(world.rpc)
        .listOrders(Eduhub_Workorder_V1_ListOrdersRequest(), options: try await world.options("cityadmin")).orders.map(\.id)
      let maskedNodeToken = try await maskedNode.client.authenticate()
      let clearNodeToken = try await clearNode.client.authenticate()

      let readers = [
        ReaderKind(name: "masked staff (county admin)", token: try await world.login("county").accessToken) { _ in false },
        ReaderKind(name: "clear staff (teacher of the school)", token: try await world.login("teacher").accessToken) { _ in true },
        ReaderKind(name: "teacher of another school", token: try await world.login("otherteacher").accessToken) { _ in false },
        ReaderKind(name: "teacher of another class of the school", token: try await world.login("classteacher").accessToken) { _ in true },
        ReaderKind(name: "guardian of the first child", token: try await world.login("guardian").accessToken) {
          $0.person.id == children[0].person.id
        },
        ReaderKind(name: "bureau with masked grants", token: bureauToken) { _ in false },
        ReaderKind(name: "external application, de-identified grants", token: appToken, clear: { _ in false }, deidentified: true),
        ReaderKind(name: "masked county node", token: maskedNodeToken) { _ in false },
        ReaderKind(name: "clear county node", token: clearNodeToken) { _ in true },
      ]

      let identity = world.client
      let catalog = fixture.catalog
      let sharing = fixture.sharing
      func bytes(_ message: some SwiftProtobuf.Message) throws -> [UInt8] { try message.serializedBytes() }
      var paths: [Path] = []
      for child in children {
        paths.append(Path(name: "GetPerson \(child.label)") { token in
          var get = Eduhub_Identity_V1_GetPersonRequest()
          get.id = child.person.id
          return try bytes(try await identity.getPerson(get, options: world.bearer(token)))
        })
        paths.append(Path(name: "CallApi \(child.label)") { token in
          var call = Eduhub_Sharing_V1_CallApiRequest()
          call.apiCode = "leak.lookup"
          call.parameters = ["id": child.person.id]
          return try bytes(try await sharing.callApi(call, options: world.bearer(token)))
        })
        paths.append(Path(name: "UpdatePerson \(child.label) (its class name as it was)") { token in
          var update = Eduhub_Identity_V1_UpdatePersonRequest()
          update.person.id = child.person.id
          update.person.className = child.person.className
          update.updateMask = ["class_name"]
          return try bytes(try await identity.updatePerson(update, options: world.bearer(token)))
        })
        paths.append(Path(name: "ListGuardianships \(child.label)") { token in
          var list = Eduhub_Identity_V1_ListGuardianshipsRequest()
          list.childID = child.person.id
          return try bytes(try await identity.listGuardianships(list, options: world.bearer(token)))
        })
      }
      paths.append(Path(name: "ListPeople") { token in
        var list = Eduhub_Identity_V1_ListPeopleRequest()
        list.orgCode = IdentityWorld.school
        list.page.pageSize = 1000
        return try bytes(try await identity.listPeople(list, options: world.bearer(token)))
      })
      paths.append(Path(name: "SearchPeople") { token in
        var search = Eduhub_Identity_V1_SearchPeopleRequest()
        search.query = "欧"
        return try bytes(try await identity.searchPeople(search, options: world.bearer(token)))
      })
      for code in ["leak.roster", "leak.view", "leak.lookup"] {
        paths.append(Path(name: "GetResource \(code) (sample)") { token in
          var get = Eduhub_Catalog_V1_GetResourceRequest()
          get.code = code
          return try bytes(try await catalog.getResource(get, options: world.bearer(token)))
        })
      }
      for code in ["leak.roster", "leak.view"] {
        paths.append(Path(name: "ReadRows \(code)") { token in
          var read = Eduhub_Catalog_V1_ReadRowsRequest()
          read.code = code
          read.page.pageSize = 1000
          return try bytes(try await catalog.readRows(read, options: world.bearer(token)))
        })
        paths.append(Path(name: "Subscribe \(code)") { token in
          let messages = try await fixture.subscribe(code, options: world.bearer(token)) { $0.last?.snapshotDone == true }
          var out: [UInt8] = []
          for message in messages { out += try message.serializedBytes() as [UInt8] }
          return out
        })
      }
      paths.append(Path(name: "CallApi (all rows)") { token in
        var call = Eduhub_Sharing_V1_CallApiRequest()
        call.apiCode = "leak.lookup"
        return try bytes(try await sharing.callApi(call, options: world.bearer(token)))
      })
      paths.append(Path(name: "CallApi filtered by a personal field") { token in
        var call = Eduhub_Sharing_V1_CallApiRequest()
        call.apiCode = "leak.lookup"
        call.parameters = ["id": children[0].person.nationalID]
        return try bytes(try await sharing.callApi(call, options: world.bearer(token)))
      })
      paths.append(Path(name: "CallApi as JSON over HTTP/1.1") { token in
        let (_, output) = try await ChildProcess.run(
          "/usr/bin/curl",
          ["-sS", "--http1.1", "http://127.0.0.1:\(world.port)/v1/apis/leak.lookup", "-H", "authorization: Bearer \(token)",
           "-H", "content-type: application/json", "-d", "{}"])
        return Array(output.utf8)
      })
      paths.append(Path(name: "CallApi aggregate (MIN of birth dates)") { token in
        var call = Eduhub_Sharing_V1_CallApiRequest()
        call.apiCode = "leak.oldest"
        return try bytes(try await sharing.callApi(call, options: world.bearer(token)))
      })
      paths.append(Path(name: "ListConflicts") { token in
        var list = Eduhub_Sync_V1_ListConflictsRequest()
        list.orgCode = "511702"
        return try bytes(try await Eduhub_Sync_V1_SyncService.Client(world.rpc).listConflicts(list, options: world.bearer(token)))
      })
      paths.append(Path(name: "ListOrders and GetStats") { token in
        let orders = Eduhub_Workorder_V1_WorkOrderService.Client(world.rpc)
        var out = try bytes(try await orders.listOrders(Eduhub_Workorder_V1_ListOrdersRequest(), options: world.bearer(token)))
        out += try bytes(try await orders.getStats(Eduhub_Workorder_V1_StatsRequest(), options: world.bearer(token)))
        return out
      })
      for id in orderIDs {
        paths.append(Path(name: "GetOrder \(id)") { token in
          var get = Eduhub_Workorder_V1_GetOrderRequest()
          get.id = id
          return try bytes(try await Eduhub_Workorder_V1_WorkOrderService.Client(world.rpc).getOrder(get, options: world.bearer(token)))
        })
      }
      paths.append(Path(name: "Watch from the start") { token in
        var request = Eduhub_Workorder_V1_WatchRequest()
        request.cursor = "0"
        // Watch runs until its deadline: what a second of it brings from the start of the store.
        var options = world.bearer(token)
        options.timeout = .seconds(1)
        var received: [UInt8] = []
        do {
          try await Eduhub_Workorder_V1_WorkOrderService.Client(world.rpc).watch(request, options: options) { stream in
            for try await change in stream { received += try change.serializedBytes() as [UInt8] }
          }
        } catch let error as RPCError where error.code == .deadlineExceeded {}
        return received
      })
      paths.append(Path(name: "GetCallStats") { token in
        try bytes(try await sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: world.bearer(token)))
      })

      #expect(try !world.identity.store.records.conflicts().isEmpty || !clearNode.store.conflicts().isEmpty, "the fixture made no conflict")
      var leaks: [String] = []
      var clearSeen: [String: Int] = [:]
      let regionKey = world.identity.regionPseudonymKey
      func judge(_ reader: ReaderKind, _ path: String, _ out: [UInt8]) throws {
        let text = String(decoding: out, as: UTF8.self)
        for child in children {
          if reader.deidentified {
            for form in try Self.maskedForms(child, regionKey: regionKey) where text.contains(form) {
              leaks.append("\(reader.name) × \(path): a staff-masked form of the child aged \(child.label): found \(form)")
            }
            // The view has no id column: a person id there is a row key, the same for every
            // consumer, which would link their rows.
            if path.contains("leak.view"), text.contains(child.person.id) {
              leaks.append("\(reader.name) × \(path): the person id of the child aged \(child.label)")
            }
          }
          for field in classified {
            for probe in Self.probes(child, field) ?? [] where text.contains(probe) {
              if reader.clear(child) {
                clearSeen[reader.name, default: 0] += 1
              } else {
                leaks.append("\(reader.name) × \(path) × \(field.name) of the child aged \(child.label): found \(probe)")
              }
            }
          }
        }
      }
      var answered: Set<String> = []
      for reader in readers {
        for path in paths {
          let out: [UInt8]
          do {
            out = try await path.call(reader.token)
            if !out.isEmpty { answered.insert(path.name) }
          } catch let error as RPCError {
            out = Array(error.message.utf8)  // a refusal: its message must not leak either
          }
          try judge(reader, path.name, out)
        }
      }
      // Work orders' paths carried something: the conflict's order reached some reader.
      for name in ["Watch from the start"] + orderIDs.map({ "GetOrder \($0)" }) {
        #expect(answered.contains(name), "\(name) gave no reader anything")
      }
      // What a node holds after pulling is what left central for it: every record, whole.
      for (node, reader) in [(maskedNode, readers[7]), (clearNode, readers[8])] {
        let dump = try node.node.identity.store.records.changes(after: 0, limit: 1_000_000)
        try judge(reader, "Pull (the node's replica)", dump.flatMap { Array($0.id.utf8) + Array($0.scope.utf8) + $0.body })
      }
      // Central's log at trace level, every line of the run: no reader is entitled to anything in it.
      #expect(!log.text.isEmpty)
      try judge(readers[2], "central's log at trace level", Array(log.text.utf8))
      let report = leaks.prefix(40).joined(separator: "\n")
      #expect(leaks.isEmpty, "\(leaks.count) leaks:\n\(report)")
      // The matrix is not vacuous: the entitled readers did receive clear values.
      for name in ["clear staff (teacher of the school)", "guardian of the first child", "clear county node"] {
        #expect((clearSeen[name] ?? 0) > 0, "\(name) received no clear value at all")
      }
      await maskedNode.close()
      await clearNode.close()
    }
  }
}
