import EduHubAPI
import EduHubRPC
import EduHubReplication
import EduHubStorage
import GRDB
import SwiftProtobuf

extension IdentityService {
  static func bindingID(guardian: String, child: String) -> String { guardian + ":" + child }

  /// Checks a binding's two people and returns the child's org path. One answer, PERMISSION_DENIED,
  /// for a person who is absent, outside the caller's reach or of the wrong kind, until the caller
  /// is known to bind the child and read the guardian: ids do not tell who exists elsewhere, nor
  /// who is a pupil.
  func checkBinding(guardianID: String, childID: String, caller: Caller, in db: Database) throws -> String {
    let refused = RPCError(
      .permissionDenied, "\(guardianID) and \(childID) are not a guardian and a pupil this caller binds, or do not exist")
    guard let guardian = try store.live(IdentityCollections.person, guardianID, in: db),
      let child = try store.live(IdentityCollections.person, childID, in: db),
      caller.can(.guardiansBind, at: child.scope), caller.can(.peopleRead, at: guardian.scope)
    else { throw refused }
    guard try IdentityCollections.person.decode(guardian).kind == .guardian else {
      throw RPCError(.failedPrecondition, "person \(guardianID) is not a guardian")
    }
    guard try IdentityCollections.person.decode(child).kind == .student else {
      throw RPCError(.failedPrecondition, "person \(childID) is not a student")
    }
    return child.scope
  }

  /// Binds a guardian to a child, or confirms a binding another person made. A binding gives the
  /// guardian the child's data only once a second person holding guardians.bind on the child's
  /// school confirms it: one administrator cannot create a guardian with their own phone and bind
  /// it to any child. (The node's operator, at its console, binds and confirms at once.)
  public func bindGuardian(_ request: Eduhub_Identity_V1_BindGuardianRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_GuardianBinding
  {
    var binding = request.binding
    try Validate.identifier(binding.guardianID, "guardian_id")
    try Validate.identifier(binding.childID, "child_id")
    try Validate.text(binding.relation, "relation", maxLength: 16)
    let action = "identity.BindGuardian"
    let stored = try store.transaction { db -> Eduhub_Identity_V1_GuardianBinding in
      let path: String
      do { path = try checkBinding(guardianID: binding.guardianID, childID: binding.childID, caller: caller, in: db) } catch let error as RPCError where error.code == .permissionDenied {
        throw denied(caller, action, target: binding.childID, peer: peer, error.message)
      }
      let id = Self.bindingID(guardian: binding.guardianID, child: binding.childID)
      if let record = try store.live(IdentityCollections.guardianship, id, in: db) {
        var existing = try IdentityCollections.guardianship.decode(record)
        guard existing.confirmedBy.isEmpty else {
          throw RPCError(.alreadyExists, "\(binding.guardianID) is already bound to \(binding.childID)")
        }
        guard existing.boundBy != caller.accountID else {
          throw RPCError(
            .failedPrecondition,
            "the binding waits for a second person holding guardians.bind on the child's school to confirm it; its binder cannot")
        }
        existing.confirmedBy = caller.accountID
        try store.put(IdentityCollections.guardianship, id, scope: path, existing, in: db)
        try audit.append(.init(actor: caller.actor, action: action, target: id, detail: "confirmed", peer: peer, timeMs: nowMs()), in: db)
        return existing
      }
      binding.boundBy = caller.accountID
      binding.confirmedBy = Self.isOperator(caller) ? caller.accountID : ""
      try store.put(IdentityCollections.guardianship, id, scope: path, binding, in: db)
      try audit.append(
        .init(actor: caller.actor, action: action, target: id, detail: binding.confirmedBy.isEmpty ? "bound, to be confirmed" : "bound", peer: peer, timeMs: nowMs()),
        in: db)
      return binding
    }
    invalidateCallers()
    return stored
  }

  /// Whether a binding gives its guardian the child's data: confirmed by a second person, or made
  /// by a node's operator or its seeded roster ("system").
  static func isConfirmed(_ binding: Eduhub_Identity_V1_GuardianBinding) -> Bool {
    guard !binding.confirmedBy.isEmpty, !binding.boundBy.isEmpty else { return false }
    return binding.confirmedBy != binding.boundBy || binding.boundBy.hasPrefix("operator:") || binding.boundBy == "system"
  }

  /// Whether `caller` is the node's operator at its console.
  static func isOperator(_ caller: Caller) -> Bool { caller.accountID.hasPrefix("operator:") }

  public func unbindGuardian(_ request: Eduhub_Identity_V1_UnbindGuardianRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_GuardianBinding
  {
    try Validate.identifier(request.guardianID, "guardian_id")
    try Validate.identifier(request.childID, "child_id")
    let action = "identity.UnbindGuardian"
    let id = Self.bindingID(guardian: request.guardianID, child: request.childID)
    let binding = try store.transaction { db in
      // One answer for "not bound" and "not yours": whether two people are linked is not told.
      guard let record = try store.live(IdentityCollections.guardianship, id, in: db), caller.can(.guardiansBind, at: record.scope) else {
        throw denied(caller, action, target: request.childID, peer: peer, "\(request.guardianID) is not bound to \(request.childID) where this caller binds")
      }
      try store.delete(record, in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: id, peer: peer, timeMs: nowMs()), in: db)
      return try IdentityCollections.guardianship.decode(record)
    }
    invalidateCallers()
    return binding
  }

  public func listGuardianships(_ request: Eduhub_Identity_V1_ListGuardianshipsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_ListGuardianshipsResponse
  {
    guard request.childID.isEmpty != request.guardianID.isEmpty else {
      throw Validate.invalid("give exactly one of child_id and guardian_id")
    }
    let byChild = !request.childID.isEmpty
    let personID = byChild ? request.childID : request.guardianID
    try Validate.identifier(personID, byChild ? "child_id" : "guardian_id")
    return try store.read { db in
      guard let person = try store.live(IdentityCollections.person, personID, in: db), mayRead(person, caller) else {
        throw denied(caller, "identity.ListGuardianships", target: personID, peer: peer, "person \(personID) is not readable by this caller, or does not exist")
      }
      var response = Eduhub_Identity_V1_ListGuardianshipsResponse()
      let records = try store.records.find(
        IdentityCollections.guardianship, index: byChild ? "child" : "guardian", key: personID, limit: 1000, in: db)
      // A guardian's bindings stop at the children the caller may read: a teacher reading a parent
      // of their school does not learn that parent's children at other schools.
      response.bindings = try records.compactMap { record in
        let binding = try IdentityCollections.guardianship.decode(record)
        guard !byChild else { return binding }
        guard let child = try store.live(IdentityCollections.person, binding.childID, in: db), mayRead(child, caller) else { return nil }
        return binding
      }
      return response
    }
  }
}
