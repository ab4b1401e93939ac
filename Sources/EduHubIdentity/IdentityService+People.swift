import Foundation
import SwiftProtobuf
import EduHubAPI
import EduHubCrypto
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB

extension IdentityService {
  /// The fields of Person an update may change, by proto name.
  static let updatableFields: Set<String> = [
    "name", "gender", "birth_date", "national_id", "ethnicity", "phone", "address", "email", "org_code", "grade",
    "class_name", "title", "subjects",
  ]

  /// The Person fields the privacy policy classifies, by proto name.
  static let classifiedFieldNames = Set(Eduhub_Identity_V1_Person.classifiedFields.filter { $0.masking != .none }.map(\.name))

  package static func newID(_ prefix: String) -> String {
    prefix + Base64URL.encode(Random.bytes(9)).replacingOccurrences(of: "_", with: "0").replacingOccurrences(of: "-", with: "1")
  }

  package var today: CivilDate { CivilDate(chinaTimeAt: nowSeconds) }

  /// Whether `caller` may read `record` (a person) at all: staff with people.read on its org, the
  /// person themself, a bound guardian.
  package func mayRead(_ record: StoredRecord, _ caller: Caller) -> Bool {
    caller.can(.peopleRead, at: record.scope) || (!caller.personID.isEmpty && record.id == caller.personID)
      || caller.children.contains(record.id)
  }

  /// The person as `caller` may see them: masked per field by the privacy policy; clear reads of a
  /// minor's sensitive fields are audited.
  /// - Parameter reader: who the person is shown to (nil: the caller as their roles make them).
  package func view(_ record: StoredRecord, for caller: Caller, as reader: Reader? = nil, peer: String, on today: CivilDate) throws
    -> Eduhub_Identity_V1_Person
  {
    try Eduhub_Identity_V1_Person(serializedBytes: viewBytes(record, for: caller, as: reader, peer: peer, on: today))
  }

  /// `view` as protobuf bytes: the masked stored body with `org_path` and `masked` appended (a
  /// field that comes again later in a message replaces the earlier one, so a stale stored value
  /// cannot win).
  func viewBytes(_ record: StoredRecord, for caller: Caller, as reader: Reader? = nil, peer: String, on today: CivilDate) throws -> [UInt8] {
    var body: [UInt8]
    var changed = false
    if configuration.maskingEnabled {
      let result: RecordMasker.Result
      do {
        result = try personMasker.mask(record.body, personID: record.id, scope: record.scope, for: reader ?? caller.reader(for: record.id), on: today)
      } catch {
        throw RPCError(.dataLoss, "person \(record.id) cannot be read")
      }
      body = result.body
      changed = result.changed
      if !result.auditedFields.isEmpty {
        audit.record(
          .init(
            actor: caller.actor, action: "privacy.clear-read", target: record.id,
            detail: result.auditedFields.map(\.name).joined(separator: ","), peer: peer, timeMs: nowMs()))
      }
    } else {
      body = record.body
    }
    let path = Array(record.scope.utf8)
    body.reserveCapacity(body.count + path.count + 8)
    WireFields.appendVarint(12 << 3 | 2, to: &body)
    WireFields.appendVarint(UInt64(path.count), to: &body)
    body += path
    if changed {
      WireFields.appendVarint(17 << 3, to: &body)
      body.append(1)
    }
    return body
  }

  /// Checks that the org can hold this kind of person and returns its path.
  func placement(of person: Eduhub_Identity_V1_Person, in db: Database) throws -> String {
    guard let org = try store.live(IdentityCollections.org, person.orgCode, in: db) else {
      throw RPCError(.notFound, "no org \(person.orgCode)")
    }
    if person.kind == .student, (try IdentityCollections.org.decode(org)).kind != .school {
      throw Validate.invalid("a student belongs to a school")
    }
    return org.scope
  }

  /// Refuses a national ID another person already has.
  func checkUnique(_ person: Eduhub_Identity_V1_Person, in db: Database) throws {
    guard !person.nationalID.isEmpty else { return }
    let holders = try store.records.find(IdentityCollections.person, index: "national_id", key: person.nationalID, limit: 2, in: db)
    if holders.contains(where: { $0.id != person.id }) {
      throw RPCError(.alreadyExists, "another person has this national_id")
    }
  }

  static func normalized(_ person: Eduhub_Identity_V1_Person) -> Eduhub_Identity_V1_Person {
    var person = person
    person.nationalID = person.nationalID.uppercased()
    person.orgPath = ""
    person.masked = false
    return person
  }

  public func createPerson(_ request: Eduhub_Identity_V1_CreatePersonRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Person
  {
    var person = Self.normalized(request.person)
    if person.id.isEmpty { person.id = Self.newID("P") }
    try Validate.identifier(person.id, "id")
    try Validate.personID(person.id)
    try Validate.person(person)
    let action = "identity.CreatePerson"
    let path = try store.transaction { db -> String in
      let path = try placement(of: person, in: db)
      try require(.peopleWrite, at: path, caller, action, target: person.orgCode, peer: peer)
      if try store.records.get(IdentityCollections.person, person.id, in: db) != nil {
        throw RPCError(.alreadyExists, "person \(person.id) already exists")
      }
      try checkUnique(person, in: db)
      try store.put(IdentityCollections.person, person.id, scope: path, person, in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: person.id, peer: peer, timeMs: nowMs()), in: db)
      return path
    }
    person.orgPath = path
    return person
  }

  public func getPerson(_ request: Eduhub_Identity_V1_GetPersonRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Person
  {
    try Eduhub_Identity_V1_Person(serializedBytes: getPersonBytes(request, caller: caller, peer: peer))
  }

  /// GetPerson as protobuf bytes (what the RPC sends).
  public func getPersonBytes(_ request: Eduhub_Identity_V1_GetPersonRequest, caller: Caller, peer: String) throws
    -> [UInt8]
  {
    try Validate.identifier(request.id, "id")
    let record: StoredRecord?
    do { record = try store.records.pointGet(IdentityCollections.person, request.id) } catch { throw RPCError(.internalError, "storage failed") }
    // The same answer for "absent" and "not yours": ids do not reveal who exists elsewhere.
    guard let record, !record.deleted, mayRead(record, caller) else {
      if let record, !record.deleted {
        audit.record(.init(actor: caller.actor, action: "identity.GetPerson", target: request.id, outcome: "denied", peer: peer, timeMs: nowMs()))
      }
      throw RPCError(.permissionDenied, "person \(request.id) is not readable by this caller, or does not exist")
    }
    return try viewBytes(record, for: caller, peer: peer, on: today)
  }

  public func updatePerson(_ request: Eduhub_Identity_V1_UpdatePersonRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Person
  {
    try Validate.identifier(request.person.id, "id")
    var mask = request.updateMask.isEmpty ? Self.updatableFields : Set(request.updateMask)
    if let unknown = mask.first(where: { !Self.updatableFields.contains($0) }) {
      throw Validate.invalid("update_mask names \(unknown.prefix(40)), which cannot be updated")
    }
    let action = "identity.UpdatePerson"
    let (person, path) = try store.transaction { db -> (Eduhub_Identity_V1_Person, String) in
      // One answer for "absent" and "not yours", as GetPerson gives.
      guard let record = try store.live(IdentityCollections.person, request.person.id, in: db), caller.can(.peopleWrite, at: record.scope) else {
        throw denied(caller, action, target: request.person.id, peer: peer, "person \(request.person.id) is not one this caller may change, or does not exist")
      }
      if !caller.can(.peopleReadClear, at: record.scope) {
        // Someone who reads this person masked writes no field they see masked unless they name
        // it (a whole record sent back would store the masked values), and never the birth date or
        // ID number: each is checked against the other, so a refusal would tell the hidden one.
        if request.updateMask.isEmpty { mask.subtract(Self.classifiedFieldNames) }
        if let hidden = mask.first(where: { $0 == "birth_date" || $0 == "national_id" }) {
          throw denied(caller, action, target: record.id, peer: peer, "\(hidden) is written by someone who reads this person in clear")
        }
      }
      var person = try IdentityCollections.person.decode(record)
      let new = Self.normalized(request.person)
      for field in mask {
        switch field {
        case "name": person.name = new.name
        case "gender": person.gender = new.gender
        case "birth_date": person.birthDate = new.birthDate
        case "national_id": person.nationalID = new.nationalID
        case "ethnicity": person.ethnicity = new.ethnicity
        case "phone": person.phone = new.phone
        case "address": person.address = new.address
        case "email": person.email = new.email
        case "org_code": person.orgCode = new.orgCode
        case "grade": person.grade = new.grade
        case "class_name": person.className = new.className
        case "title": person.title = new.title
        case "subjects": person.subjects = new.subjects
        default: break
        }
      }
      try Validate.person(person)
      let path = try placement(of: person, in: db)
      if path != record.scope {
        try require(.peopleWrite, at: path, caller, action, target: person.orgCode, peer: peer)
      }
      // Only a changed number is checked: an update of other fields never trips over old data.
      if person.nationalID != (try IdentityCollections.person.decode(record)).nationalID {
        try checkUnique(person, in: db)
      }
      try store.put(IdentityCollections.person, person.id, scope: path, person, in: db)
      if path != record.scope {
        // The person's account and their bindings as a child follow them to the new org.
        let followers =
          try store.records.find(IdentityCollections.account, index: "person", key: person.id, in: db)
          + store.records.find(IdentityCollections.guardianship, index: "child", key: person.id, in: db)
        try replica.write(
          followers.map { .init(collection: $0.collection, id: $0.id, scope: path, body: $0.body) }, in: db)
      }
      try audit.append(
        .init(actor: caller.actor, action: action, target: person.id, detail: mask.sorted().joined(separator: ","), peer: peer, timeMs: nowMs()),
        in: db)
      return (person, path)
    }
    invalidateCallers()
    // The answer is the person as the caller may read it: writing a field (people.write) is not
    // reading the others in clear, and an update of nothing must not be a way to read.
    let written = StoredRecord(collection: IdentityCollections.person.name, id: person.id, scope: path, body: try person.serializedBytes())
    return try view(written, for: caller, peer: peer, on: today)
  }

  public func listPeople(_ request: Eduhub_Identity_V1_ListPeopleRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_ListPeopleResponse
  {
    try Validate.identifier(request.orgCode, "org_code", maxLength: 32)
    let size = try Validate.pageSize(request.page.pageSize, default: 100, maximum: 1000)
    if case .UNRECOGNIZED = request.sort { throw Validate.invalid("sort is not a known value") }
    let action = "identity.ListPeople"
    let today = self.today
    return try store.read { db in
      let path = try orgPath(request.orgCode, in: db)
      try require(.peopleRead, at: path, caller, action, target: request.orgCode, peer: peer)
      // Filtering or sorting by a field the caller sees masked would reveal it: refused.
      let reader = Reader.staff(subject: caller.accountID, grants: caller.grants)
      var queried: [String] = []
      if !request.nationalID.isEmpty { queried.append("national_id") }
      if !request.phone.isEmpty { queried.append("phone") }
      switch request.sort {
      case .name: queried.append("name")
      case .birthDate: queried.append("birth_date")
      default: break
      }
      for name in queried {
        guard let field = Eduhub_Identity_V1_Person.classifiedFields.first(where: { $0.name == name }).flatMap(FieldPolicy.init)
        else { continue }
        if !personMasker.policy.allowsQuery(by: field, for: reader, over: path) {
          throw denied(caller, action, target: request.orgCode, peer: peer, "filtering or sorting by \(name) is not allowed: you see it masked")
        }
      }
      func matches(_ person: Eduhub_Identity_V1_Person) -> Bool {
        (request.kind == .unspecified || person.kind == request.kind) && (request.grade == 0 || person.grade == request.grade)
          && (request.className.isEmpty || person.className == request.className)
          && (request.nationalID.isEmpty || person.nationalID == request.nationalID.uppercased())
          && (request.phone.isEmpty || person.phone == request.phone)
      }
      var response = Eduhub_Identity_V1_ListPeopleResponse()
      // An exact filter on an indexed field: look it up instead of scanning.
      if !request.nationalID.isEmpty || !request.phone.isEmpty {
        let found =
          !request.nationalID.isEmpty
          ? try store.records.find(IdentityCollections.person, index: "national_id", key: request.nationalID.uppercased(), limit: 1000, in: db)
          : try store.records.find(IdentityCollections.person, index: "phone", key: request.phone, limit: 1000, in: db)
        for record in found where Caller.covers(path, record.scope) {
          let person = try IdentityCollections.person.decode(record)
          if matches(person) { response.people.append(try view(record, for: caller, peer: peer, on: today)) }
        }
        return response
      }
      if request.sort != .default {
        return try sortedPage(request, path: path, size: size, caller: caller, peer: peer, matches: matches, in: db)
      }
      var after: StoredRecord?
      if let parts = try PageToken.parse(request.page.pageToken, parts: 2) {
        after = StoredRecord(collection: IdentityCollections.person.name, id: parts[1], scope: parts[0], body: [])
      }
      var scanned = 0
      let filtered = request.kind != .unspecified || request.grade != 0 || !request.className.isEmpty
      scan: while response.people.count < size, scanned < 50_000 {
        let page = try store.records.inScope(IdentityCollections.person, scope: path, after: after, limit: min(1000, size + 1), in: db)
        guard !page.isEmpty else {
          after = nil
          break
        }
        for record in page {
          if response.people.count == size { break scan }
          scanned += 1
          after = record
          if filtered {
            guard matches(try IdentityCollections.person.decode(record)) else { continue }
          }
          response.people.append(try view(record, for: caller, peer: peer, on: today))
        }
      }
      if let after { response.page.nextPageToken = PageToken.make([after.scope, after.id]) }
      return response
    }
  }

  /// A page of people sorted by name or birth date: the subtree (at most 100,000 people) is read and
  /// sorted, and pages are offsets into that order.
  private func sortedPage(
    _ request: Eduhub_Identity_V1_ListPeopleRequest, path: String, size: Int, caller: Caller, peer: String,
    matches: (Eduhub_Identity_V1_Person) -> Bool, in db: Database
  ) throws -> Eduhub_Identity_V1_ListPeopleResponse {
    let limit = 100_000
    let offset = Int(try PageToken.parse(request.page.pageToken, parts: 1)?[0] ?? "0") ?? -1
    guard offset >= 0 else { throw Validate.invalid("page_token is not valid") }
    var all: [(key: String, record: StoredRecord)] = []
    var after: StoredRecord?
    while true {
      let page = try store.records.inScope(IdentityCollections.person, scope: path, after: after, limit: 1000, in: db)
      guard let last = page.last else { break }
      after = last
      for record in page {
        let person = try IdentityCollections.person.decode(record)
        guard matches(person) else { continue }
        all.append((request.sort == .name ? person.name : person.birthDate, record))
      }
      guard all.count <= limit else {
        throw RPCError(.failedPrecondition, "sorting is limited to \(limit) people; narrow the org or filters")
      }
    }
    all.sort { ($0.key, $0.record.id) < ($1.key, $1.record.id) }
    var response = Eduhub_Identity_V1_ListPeopleResponse()
    for entry in all.dropFirst(offset).prefix(size) {
      response.people.append(try view(entry.record, for: caller, peer: peer, on: today))
    }
    if offset + size < all.count { response.page.nextPageToken = PageToken.make(["\(offset + size)"]) }
    return response
  }

  public func searchPeople(_ request: Eduhub_Identity_V1_SearchPeopleRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_SearchPeopleResponse
  {
    try Validate.text(request.query, "query", maxLength: 64, required: true)
    guard request.limit >= 0 else { throw Validate.invalid("limit may not be negative") }
    let limit = request.limit == 0 ? 20 : min(Int(request.limit), 200)
    let action = "identity.SearchPeople"
    let today = self.today
    return try store.read { db in
      let scopes: [String]
      if request.orgCode.isEmpty {
        scopes = caller.scopes(for: .peopleRead)
      } else {
        try Validate.identifier(request.orgCode, "org_code", maxLength: 32)
        scopes = [try orgPath(request.orgCode, in: db)]
      }
      guard !scopes.isEmpty else {
        throw denied(caller, action, target: request.orgCode, peer: peer, "people.read is needed to search people")
      }
      let nameField = Eduhub_Identity_V1_Person.classifiedFields.first { $0.name == "name" }.flatMap(FieldPolicy.init)
      let reader = Reader.staff(subject: caller.accountID, grants: caller.grants)
      for scope in scopes {
        try require(.peopleRead, at: scope, caller, action, target: request.orgCode, peer: peer)
        // Searching names one sees masked would reveal them.
        if let nameField, !personMasker.policy.allowsQuery(by: nameField, for: reader, over: scope) {
          throw denied(caller, action, target: request.orgCode, peer: peer, "searching by name is not allowed: you see names masked there")
        }
      }
      var response = Eduhub_Identity_V1_SearchPeopleResponse()
      let found: [StoredRecord]
      do { found = try store.records.search(IdentityCollections.person, query: request.query, limit: limit * 50, in: db) } catch {
        throw RPCError(.internalError, "search failed")
      }
      for record in found where scopes.contains(where: { Caller.covers($0, record.scope) }) {
        response.people.append(try view(record, for: caller, peer: peer, on: today))
        if response.people.count == limit { break }
      }
      return response
    }
  }
}
