import EduHubAPI
import EduHubCore
import EduHubRPC
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// Who may originate writes of Identity's collections, checked as the RPCs that write them check
/// them (`createOrg`, `createPerson`/`updatePerson`, `bindGuardian`, `createAccount` and the login
/// flows, `grantRole`/`revokeRole`), with the pushing node's authority as the caller.
extension IdentityService {
  func registerWriteRules() {
    declare(IdentityCollections.org, writes: .fromBelow(Self.checkOrg))
    declare(IdentityCollections.person, writes: .fromBelow(Self.checkPerson))
    declare(IdentityCollections.guardianship, writes: .fromBelow(Self.checkGuardianship))
    declare(IdentityCollections.account, writes: .fromBelow(Self.checkAccount))
    declare(IdentityCollections.session, writes: .fromBelow(Self.checkSession))
    declare(unclassified: IdentityCollections.roleGrant, writes: .fromBelow(Self.checkRoleGrant))
    // A node's signing key is published by that node to its own store and reaches others from
    // above; one pushed up would let the pusher choose which key verifies whose tokens.
    declare(unclassified: IdentityCollections.nodeKey, writes: .downOnly)
  }

  /// The org path of `code` as the push would leave it; nil when no such org exists.
  package static func orgPath(_ code: String, _ view: PushView) throws -> String? {
    guard !code.isEmpty else { return nil }
    return try view.live(IdentityCollections.org.name, code)?.scope
  }

  /// PushRefusal unless `node`'s authority holds `permission` on `path`.
  package static func requireAuthority(_ permission: Permission, at path: String, _ node: PushingNode, _ what: String) throws {
    guard node.authority.can(permission, at: path) else {
      throw PushRefusal("\(what): node \(node.id) could not have written it (\(permission.rawValue) is needed on \(path.isEmpty ? "the root" : path))")
    }
  }

  /// PushRefusal unless `actor` could act on the pushing node: a user of its scope, its own
  /// console, or the system of the node or of one below it.
  package static func checkActor(_ actor: String, _ node: PushingNode, _ view: PushView, _ what: String) throws {
    if actor.hasPrefix("system:") {
      guard node.mayCarry(String(actor.dropFirst("system:".count))) else {
        throw PushRefusal("\(what): node \(node.id) cannot act as \(actor.prefix(60))")
      }
      return
    }
    if actor.hasPrefix("operator:") { return }
    guard let account = try view.live(IdentityCollections.account.name, actor), !account.scope.isEmpty,
      RecordStore.inScope(account.scope, node.scope)
    else { throw PushRefusal("\(what): its actor is not a user of node \(node.id)'s scope") }
  }

  /// PushRefusal unless `node`'s authority holds `permission` where the version replaced was and
  /// where the new one is (a move needs both; a deletion is judged by what it deletes). `at` maps a
  /// record's scope to the path the permission is checked on (an org's parent).
  package static func requireWhereWritten(
    _ permission: Permission, _ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ what: String,
    at path: (String) -> String = { $0 }
  ) throws {
    for version in [existing, judged(record, existing)].compactMap({ $0 }) {
      try requireAuthority(permission, at: path(version.scope), node, what)
    }
  }

  /// The body to judge: a deletion is judged by the version it deletes.
  package static func judged(_ record: StoredRecord, _ existing: StoredRecord?) -> StoredRecord {
    guard record.deleted, let existing else { return record }
    var judged = existing
    judged.deleted = true
    return judged
  }

  /// The record's body as `M`, read one way only: a body in which a field holding one value comes
  /// twice is refused (a decoder keeps the last, a raw walk such as a view's kind test or a
  /// masker's age may stop at the first, and a pupil could pass every rule as one thing and be
  /// served as another).
  package static func decode<M: Message>(_ type: M.Type, _ record: StoredRecord) throws -> M {
    let message: M
    do { message = try M(serializedBytes: record.body) } catch {
      throw PushRefusal("\(record.collection)/\(record.id.prefix(64)) does not decode")
    }
    guard let canonical = try? message.serializedBytes() as [UInt8], let given = occurrences(record.body),
      given == occurrences(canonical)
    else { throw PushRefusal("\(record.collection)/\(record.id.prefix(64)) repeats a field that holds one value") }
    return message
  }

  /// How many times each top-level field number occurs in `body`; nil if it is not protobuf.
  static func occurrences(_ body: [UInt8]) -> [Int: Int]? {
    var counts: [Int: Int] = [:]
    var index = 0
    while index < body.count {
      guard let field = try? WireFields.nextField(body, &index) else { return nil }
      counts[field.number, default: 0] += 1
    }
    return counts
  }

  /// The parent path of an org path ("" for a top-level org).
  static func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "" }
    return String(path[..<slash])
  }

  static func checkOrg(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "org \(record.id.prefix(40))"
    // CreateOrg and MoveOrg: org.write on the parent, old and new.
    try requireWhereWritten(.orgWrite, record, existing, node, what, at: parent(of:))
    guard !record.deleted else { return }
    let org = try decode(Eduhub_Identity_V1_Org.self, record)
    let parentPath = parent(of: record.scope)
    guard org.code == record.id, record.scope.hasSuffix(org.code),
      parentPath.isEmpty ? org.parentCode.isEmpty : (parentPath.hasSuffix("/" + org.parentCode) || parentPath == org.parentCode)
    else { throw PushRefusal("\(what): its code, parent and path disagree") }
    if !parentPath.isEmpty {
      guard try orgPath(org.parentCode, view) == parentPath else { throw PushRefusal("\(what): its parent \(org.parentCode.prefix(40)) is not at \(parentPath)") }
    }
  }

  static func checkPerson(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "person \(record.id.prefix(40))"
    try requireWhereWritten(.peopleWrite, record, existing, node, what)
    guard !record.deleted else { return }
    let person = try decode(Eduhub_Identity_V1_Person.self, record)
    guard person.id == record.id, let org = try view.live(IdentityCollections.org.name, person.orgCode), org.scope == record.scope else {
      throw PushRefusal("\(what): its org does not match the scope it is stored under")
    }
    // CreatePerson and UpdatePerson: a valid person, stored normalised, a student in a school, and
    // an ID number nobody else has.
    do {
      if existing == nil {
        try Validate.identifier(person.id, "id")
        try Validate.personID(person.id)
      }
      try Validate.person(person)
    } catch let error as RPCError {
      throw PushRefusal("\(what): CreatePerson would refuse it: \(error.message)")
    }
    guard normalized(person) == person else { throw PushRefusal("\(what): it is not stored as CreatePerson stores it") }
    // UpdatePerson never changes a kind: a pupil made a teacher would leave the rules (and the
    // views) that protect pupils.
    // A tombstone keeps its last body: a revival keeps its kind too.
    if let existing, try decode(Eduhub_Identity_V1_Person.self, existing).kind != person.kind {
      throw PushRefusal("\(what): a person's kind does not change")
    }
    if person.kind == .student, try decode(Eduhub_Identity_V1_Org.self, org).kind != .school {
      throw PushRefusal("\(what): a student belongs to a school")
    }
    if !person.nationalID.isEmpty {
      let holders = try view.ids(IdentityCollections.person.name, index: "national_id", key: person.nationalID)
      guard holders.subtracting([record.id]).isEmpty else { throw PushRefusal("\(what): another person has this national_id") }
    }
  }

  static func checkGuardianship(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "guardianship \(record.id.prefix(80))"
    // BindGuardian: guardians.bind on the child's path (the binding lives there).
    try requireWhereWritten(.guardiansBind, record, existing, node, what)
    guard !record.deleted else { return }
    let binding = try decode(Eduhub_Identity_V1_GuardianBinding.self, record)
    guard !binding.boundBy.isEmpty, binding.boundBy != "system", binding.confirmedBy.isEmpty || isConfirmed(binding) else {
      throw PushRefusal("\(what): a binding names who bound it, and is confirmed by someone else")
    }
    guard record.id == binding.guardianID + ":" + binding.childID else { throw PushRefusal("\(what): its id does not name its guardian and child") }
    guard let child = try view.live(IdentityCollections.person.name, binding.childID), child.scope == record.scope,
      try decode(Eduhub_Identity_V1_Person.self, child).kind == .student
    else { throw PushRefusal("\(what): the child is not a student stored at the binding's scope") }
    guard let guardian = try view.live(IdentityCollections.person.name, binding.guardianID),
      try decode(Eduhub_Identity_V1_Person.self, guardian).kind == .guardian
    else { throw PushRefusal("\(what): the guardian is not a guardian known here") }
  }

  static func checkAccount(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "account \(record.id.prefix(40))"
    // CreateAccount, resets and ending sessions: accounts.manage on the account's path. (Logins and
    // activations at the node write the same fields; whoever owns the node holds that anyway.)
    try requireWhereWritten(.accountsManage, record, existing, node, what)
    guard !record.deleted else { return }
    let account = try decode(Eduhub_Identity_V1_AccountRecord.self, record)
    guard account.id == record.id else { throw PushRefusal("\(what): its id disagrees") }
    if !account.personID.isEmpty {
      guard let person = try view.live(IdentityCollections.person.name, account.personID), person.scope == record.scope else {
        throw PushRefusal("\(what): its person is not stored at the account's scope")
      }
    } else {
      guard try orgPath(account.orgCode, view) == record.scope else { throw PushRefusal("\(what): its org does not match its scope") }
    }
    // Logins stay unique across replicas: a pushed account never takes over another's name or phone.
    let username = account.username.lowercased()
    guard !username.isEmpty else { throw PushRefusal("\(what): it has no username") }
    let sameName = try view.ids(IdentityCollections.account.name, index: "username", key: username)
    guard sameName.subtracting([record.id]).isEmpty else {
      throw PushRefusal("\(what): the username is already another account's")
    }
    if !account.phone.isEmpty {
      let samePhone = try view.ids(IdentityCollections.account.name, index: "phone", key: account.phone)
      guard samePhone.subtracting([record.id]).isEmpty else {
        throw PushRefusal("\(what): the phone number is already another account's")
      }
    }
  }

  static func checkSession(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "session \(record.id.prefix(40))"
    let session = try decode(Eduhub_Identity_V1_SessionRecord.self, judged(record, existing))
    // A session is opened by its account's login: it lives with the account, inside the node's
    // scope. One naming an account above the node (the city's administrator) is a forgery.
    guard session.id == record.id, let account = try view.live(IdentityCollections.account.name, session.accountID),
      account.scope == record.scope, !account.scope.isEmpty, RecordStore.inScope(account.scope, node.scope)
    else { throw PushRefusal("\(what): its account is not an account of node \(node.id)'s scope") }
    if let existing {
      let old = try decode(Eduhub_Identity_V1_SessionRecord.self, existing)
      guard old.accountID == session.accountID else { throw PushRefusal("\(what): a session cannot change account") }
    }
  }

  static func checkRoleGrant(_ record: StoredRecord, _ existing: StoredRecord?, _ node: PushingNode, _ view: PushView) throws {
    let what = "role grant \(record.id.prefix(40))"
    for version in [existing, judged(record, existing)].compactMap({ $0 }) {
      let grant = try decode(Eduhub_Identity_V1_RoleGrant.self, version)
      guard grant.role != .node, grant.role != .unspecified, Roles.name(of: grant.role) != "unspecified" else {
        throw PushRefusal("\(what): that role is not granted through the API")
      }
      // GrantRole and RevokeRole: roles.grant and every permission of the role, on its path.
      try requireAuthority(.rolesGrant, at: version.scope, node, what)
      for permission in Permission.allCases where Roles.permissions(of: grant.role).contains(permission) {
        try requireAuthority(permission, at: version.scope, node, "\(what) (\(Roles.name(of: grant.role)))")
      }
    }
    guard !record.deleted else { return }
    let grant = try decode(Eduhub_Identity_V1_RoleGrant.self, record)
    guard grant.id == record.id, try orgPath(grant.orgCode, view) == record.scope else {
      throw PushRefusal("\(what): its org does not match the scope it is stored under")
    }
    guard try view.live(IdentityCollections.account.name, grant.accountID) != nil else {
      throw PushRefusal("\(what): no account \(grant.accountID.prefix(40))")
    }
  }
}

