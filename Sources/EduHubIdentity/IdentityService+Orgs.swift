import SwiftProtobuf
import EduHubReplication
import EduHubAPI
import EduHubRPC
import EduHubStorage
import GRDB

extension IdentityService {
  /// Every collection whose records carry an org path as their scope: moved along with their org.
  static let scopedCollections = [
    IdentityCollections.org.name, IdentityCollections.person.name, IdentityCollections.guardianship.name,
    IdentityCollections.account.name, IdentityCollections.session.name, IdentityCollections.roleGrant.name,
  ]

  func withPath(_ record: StoredRecord) throws -> Eduhub_Identity_V1_Org {
    var org = try IdentityCollections.org.decode(record)
    org.path = record.scope
    return org
  }

  public func createOrg(_ request: Eduhub_Identity_V1_CreateOrgRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Org
  {
    var org = request.org
    try Validate.orgCode(org.code, kind: org.kind)
    try Validate.text(org.name, "name", maxLength: 100, required: true)
    try Validate.text(org.address, "address", maxLength: 200)
    if !org.divisionCode.isEmpty {
      guard org.divisionCode.utf8.count == 6, org.divisionCode.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
        throw Validate.invalid("division_code has 6 digits")
      }
    }
    if case .UNRECOGNIZED = org.schoolLevel { throw Validate.invalid("school_level is not a known value") }
    let action = "identity.CreateOrg"
    return try store.transaction { db in
      let path: String
      if org.parentCode.isEmpty {
        guard org.kind == .city else { throw Validate.invalid("only the city has no parent_code") }
        // A root needs every-scope rights: only the operator has them.
        try require(.orgWrite, at: "", caller, action, target: org.code, peer: peer)
        guard try store.records.find(IdentityCollections.org, index: "parent", key: "", limit: 1, in: db).isEmpty else {
          throw RPCError(.alreadyExists, "the org tree already has a root")
        }
        path = org.code
      } else {
        let parentPath = try orgPath(org.parentCode, in: db)
        try require(.orgWrite, at: parentPath, caller, action, target: org.parentCode, peer: peer)
        path = parentPath + "/" + org.code
      }
      if try store.records.get(IdentityCollections.org, org.code, in: db) != nil {
        throw RPCError(.alreadyExists, "org \(org.code) already exists")
      }
      if org.divisionCode.isEmpty, org.kind == .city || org.kind == .county { org.divisionCode = org.code }
      org.path = ""
      try store.put(IdentityCollections.org, org.code, scope: path, org, in: db)
      try audit.append(.init(actor: caller.actor, action: action, target: org.code, peer: peer, timeMs: nowMs()), in: db)
      org.path = path
      return org
    }
  }

  public func getOrg(_ request: Eduhub_Identity_V1_GetOrgRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Org
  {
    try Validate.identifier(request.code, "code", maxLength: 32)
    let record = try store.read { db in try store.live(IdentityCollections.org, request.code, in: db) }
    guard let record else { throw RPCError(.notFound, "no org \(request.code)") }
    // Org names and codes are public inside the region: any signed-in caller may read the tree.
    return try withPath(record)
  }

  public func moveOrg(_ request: Eduhub_Identity_V1_MoveOrgRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_Org
  {
    try Validate.identifier(request.code, "code", maxLength: 32)
    try Validate.identifier(request.newParentCode, "new_parent_code", maxLength: 32)
    let action = "identity.MoveOrg"
    let moved = try store.transaction { db -> StoredRecord in
      guard let record = try store.live(IdentityCollections.org, request.code, in: db) else {
        throw RPCError(.notFound, "no org \(request.code)")
      }
      let oldPath = record.scope
      guard oldPath.contains("/") else { throw RPCError(.failedPrecondition, "the root cannot move") }
      let newParentPath = try orgPath(request.newParentCode, in: db)
      try require(.orgWrite, at: oldPath, caller, action, target: request.code, peer: peer)
      try require(.orgWrite, at: newParentPath, caller, action, target: request.newParentCode, peer: peer)
      guard newParentPath != oldPath, !newParentPath.hasPrefix(oldPath + "/") else {
        throw RPCError(.failedPrecondition, "an org cannot move under itself")
      }
      let newPath = newParentPath + "/" + request.code
      var org = try IdentityCollections.org.decode(record)
      org.parentCode = request.newParentCode
      try store.put(IdentityCollections.org, org.code, scope: newPath, org, in: db)
      // Everything in the subtree keeps its place relative to the org.
      for collection in Self.scopedCollections {
        var after: StoredRecord?
        while true {
          let page = try store.records.inScope(collection, scope: oldPath, after: after, limit: 500, in: db)
          guard let last = page.last else { break }
          after = last
          let writes = page.filter { !($0.collection == IdentityCollections.org.name && $0.id == org.code) }.map { record in
            Replica.Write(
              collection: record.collection, id: record.id, scope: newPath + record.scope.dropFirst(oldPath.count),
              body: record.body)
          }
          try replica.write(writes, in: db)
        }
      }
      try audit.append(
        .init(actor: caller.actor, action: action, target: request.code, detail: "to \(request.newParentCode)", peer: peer, timeMs: nowMs()),
        in: db)
      return try store.live(IdentityCollections.org, request.code, in: db)!
    }
    invalidateCallers()
    return try withPath(moved)
  }

  public func listOrgs(_ request: Eduhub_Identity_V1_ListOrgsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Identity_V1_ListOrgsResponse
  {
    try Validate.identifier(request.code, "code", maxLength: 32)
    let size = try Validate.pageSize(request.page.pageSize, default: 100, maximum: 1000)
    let kinds = Set(request.kinds)
    return try store.read { db in
      let path = try orgPath(request.code, in: db)
      var response = Eduhub_Identity_V1_ListOrgsResponse()
      if !request.subtree {
        let children = try store.records.find(IdentityCollections.org, index: "parent", key: request.code, limit: 100_000, in: db)
        let start = try PageToken.parse(request.page.pageToken, parts: 1)?[0] ?? ""
        let matching = children.filter { ($0.id > start) && (kinds.isEmpty || kinds.contains((try? IdentityCollections.org.decode($0).kind) ?? .unspecified)) }
        for record in matching.prefix(size) { response.orgs.append(try withPath(record)) }
        if matching.count > size, let last = response.orgs.last { response.page.nextPageToken = PageToken.make([last.code]) }
        return response
      }
      var after: StoredRecord?
      if let parts = try PageToken.parse(request.page.pageToken, parts: 2) {
        after = StoredRecord(collection: IdentityCollections.org.name, id: parts[1], scope: parts[0], body: [])
      }
      // The org itself is not part of its subtree listing.
      var scanned = 0
      while response.orgs.count < size, scanned < 20_000 {
        let page = try store.records.inScope(IdentityCollections.org, scope: path, after: after, limit: 500, in: db)
        guard !page.isEmpty else {
          after = nil
          break
        }
        for record in page {
          scanned += 1
          after = record
          guard record.scope != path else { continue }
          let org = try withPath(record)
          if kinds.isEmpty || kinds.contains(org.kind) { response.orgs.append(org) }
          if response.orgs.count == size { break }
        }
      }
      if let after, response.orgs.count == size || scanned >= 20_000 {
        response.page.nextPageToken = PageToken.make([after.scope, after.id])
      }
      return response
    }
  }
}
