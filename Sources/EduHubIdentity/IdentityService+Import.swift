import EduHubAPI
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB

extension IdentityService {
  /// Rows written per transaction.
  static let importBatch = 500

  /// Imports a stream of rows: every valid row is written with its guardian bindings (and pending
  /// account), every invalid one reported by position; a row is never half-written.
  public func importPeople(
    _ rows: some AsyncSequence<Eduhub_Identity_V1_ImportPeopleRequest, any Error>, caller: Caller, peer: String
  ) async throws -> Eduhub_Identity_V1_ImportPeopleResponse {
    var response = Eduhub_Identity_V1_ImportPeopleResponse()
    var batch: [(row: Int64, request: Eduhub_Identity_V1_ImportPeopleRequest)] = []
    func fail(_ row: Int64, _ id: String, _ message: String) {
      response.failed += 1
      if response.errors.count < 1000 {
        var error = Eduhub_Identity_V1_ImportError()
        error.row = row
        error.personID = id
        error.message = message
        response.errors.append(error)
      }
    }
    func flush() throws {
      guard !batch.isEmpty else { return }
      let outcomes = try importBatch(batch.map(\.request), caller: caller, peer: peer)
      for (entry, outcome) in zip(batch, outcomes) {
        if let message = outcome { fail(entry.row, entry.request.person.id, message) } else { response.imported += 1 }
      }
      batch.removeAll(keepingCapacity: true)
    }
    for try await row in rows {
      response.rows += 1
      batch.append((response.rows, row))
      if batch.count == Self.importBatch { try flush() }
    }
    try flush()
    audit.record(
      .init(
        actor: caller.actor, action: "identity.ImportPeople", target: "\(response.imported) imported",
        outcome: response.failed == 0 ? "ok" : "partial", detail: "\(response.failed) failed", peer: peer, timeMs: nowMs()))
    return response
  }

  /// Writes the valid rows of one batch in one transaction; returns each row's error (nil: written).
  /// A row's checks see the rows before it, so a guardian imported earlier in the stream binds.
  func importBatch(_ rows: [Eduhub_Identity_V1_ImportPeopleRequest], caller: Caller, peer: String) throws -> [String?] {
    try store.transaction { db in
      var outcomes: [String?] = []
      var paths: [String: String] = [:]
      for row in rows {
        do {
          try db.inSavepoint {
            try importRow(row, caller: caller, peer: peer, paths: &paths, in: db)
            return .commit
          }
          outcomes.append(nil)
        } catch let error as RPCError {
          outcomes.append(error.message)
        }
      }
      return outcomes
    }
  }

  private func importRow(
    _ row: Eduhub_Identity_V1_ImportPeopleRequest, caller: Caller, peer: String, paths: inout [String: String],
    in db: Database
  ) throws {
    var person = Self.normalized(row.person)
    if person.id.isEmpty { person.id = Self.newID("P") }
    try Validate.identifier(person.id, "id")
    try Validate.personID(person.id)
    try Validate.person(person)
    let path: String
    if let known = paths[person.orgCode], person.kind != .student {
      path = known
    } else {
      path = try placement(of: person, in: db)
      paths[person.orgCode] = path
    }
    guard caller.can(.peopleWrite, at: path) else {
      throw RPCError(.permissionDenied, "people.write is needed on \(person.orgCode)")
    }
    if try store.records.get(IdentityCollections.person, person.id, in: db) != nil {
      throw RPCError(.alreadyExists, "person \(person.id) already exists")
    }
    try checkUnique(person, in: db)
    try store.put(IdentityCollections.person, person.id, scope: path, person, in: db)
    if !row.guardianIds.isEmpty, !caller.can(.guardiansBind, at: path) {
      throw RPCError(.permissionDenied, "guardians.bind is needed on \(person.orgCode) to bind guardians")
    }
    for guardianID in row.guardianIds {
      try Validate.identifier(guardianID, "guardian_ids")
      _ = try checkBinding(guardianID: guardianID, childID: person.id, caller: caller, in: db)
      // Imported bindings wait for a second person's confirmation, like BindGuardian's.
      var binding = Eduhub_Identity_V1_GuardianBinding()
      binding.guardianID = guardianID
      binding.childID = person.id
      binding.boundBy = caller.accountID
      binding.confirmedBy = Self.isOperator(caller) ? caller.accountID : ""
      try store.put(IdentityCollections.guardianship, Self.bindingID(guardian: guardianID, child: person.id), scope: path, binding, in: db)
    }
    if !row.username.isEmpty {
      try createPendingAccount(person: person, path: path, username: row.username, in: db)
    }
  }
}
