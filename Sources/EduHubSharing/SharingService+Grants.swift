import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

extension SharingService {
  func loadGrant(_ id: String, in db: Database) throws -> (StoredRecord, Eduhub_Sharing_V1_Grant)? {
    guard let record = try store.live(SharingCollections.grant, id, in: db) else { return nil }
    var grant = try SharingCollections.grant.decode(record)
    grant.resourceOrgPath = record.scope
    return (record, grant)
  }

  /// A grant as its reader sees it: an active grant past its expiry shows as expired.
  func shown(_ grant: Eduhub_Sharing_V1_Grant) -> Eduhub_Sharing_V1_Grant {
    var shown = grant
    if grant.state == .active, grant.terms.expiresMs <= identity.nowMs() { shown.state = .expired }
    return shown
  }

  /// The resource's steward renews, suspends, resumes or revokes a grant. Open streams and calls
  /// see the change on their next message: the grant book catches up from the commit's signal.
  public func changeGrant(_ change: Eduhub_Sharing_V1_ChangeGrantRequest, caller: Caller, peer: String) throws -> Eduhub_Sharing_V1_Grant {
    let action = "sharing.ChangeGrant"
    guard change.action != .unspecified else { throw Validate.invalid("action is required") }
    try Validate.text(change.reason, "reason", maxLength: 500, required: change.action == .suspend || change.action == .revoke, multiline: true)
    return try store.transaction { db in
      guard let (record, stored) = try loadGrant(change.grantID, in: db) else { throw RPCError(.notFound, "no grant \(change.grantID.prefix(64))") }
      guard caller.can(.catalogPublish, at: record.scope) else {
        if Self.actsFor(caller, stored.terms.consumer, path: stored.consumerPath) {
          throw identity.denied(caller, action, target: stored.id, peer: peer, "the data steward of the resource's org changes its grants")
        }
        throw RPCError(.notFound, "no grant \(change.grantID.prefix(64))")
      }
      var grant = stored
      let now = identity.nowMs()
      switch change.action {
      case .renew:
        guard grant.state != .revoked else { throw RPCError(.failedPrecondition, "grant \(grant.id) was revoked: ask for access again") }
        try Self.checkExpiry(change.expiresMs, now: now)
        grant.terms.expiresMs = change.expiresMs
      case .suspend:
        guard grant.state == .active else { throw RPCError(.failedPrecondition, "grant \(grant.id) is not active") }
        grant.state = .suspended
      case .resume:
        guard grant.state == .suspended else { throw RPCError(.failedPrecondition, "grant \(grant.id) is not suspended") }
        grant.state = .active
      case .revoke:
        guard grant.state != .revoked else { throw RPCError(.failedPrecondition, "grant \(grant.id) is already revoked") }
        grant.state = .revoked
      case .unspecified, .UNRECOGNIZED:
        throw Validate.invalid("action is required")
      }
      if !change.reason.isEmpty { grant.reason = change.reason }
      grant.version += 1
      grant.updatedMs = now
      var written = grant
      written.resourceOrgPath = ""
      try store.put(SharingCollections.grant, grant.id, scope: record.scope, written, in: db)
      try recountSubscriptions(grant.terms.resourceCode, in: db)
      try identity.audit.append(
        .init(actor: caller.actor, action: action, target: grant.id, detail: Self.actionName(change.action), peer: peer, timeMs: now), in: db)
      return shown(grant)
    }
  }

  public func listGrants(_ list: Eduhub_Sharing_V1_ListGrantsRequest, caller: Caller) throws -> Eduhub_Sharing_V1_ListGrantsResponse {
    let size = try Validate.pageSize(list.page.pageSize, default: 50, maximum: 500)
    let after = try PageToken.parse(list.page.pageToken, parts: 1)?[0]
    try book.refresh()
    return try store.read { db in
      var grants: [Eduhub_Sharing_V1_Grant] = []
      let records: [StoredRecord]
      if !list.resourceCode.isEmpty {
        records = try store.records.find(SharingCollections.grant, index: "resource", key: list.resourceCode, limit: 100_000, in: db)
      } else if list.mine {
        records = try Self.consumerIDs(of: caller).ids.flatMap { id in
          try store.records.find(SharingCollections.grant, index: "consumer", key: id, limit: 100_000, in: db)
        }
      } else {
        records = try caller.scopes(for: .catalogPublish).flatMap { scope in
          try subtree(SharingCollections.grant.name, scope, limit: 100_000, in: db)
        }
      }
      var seen = Set<String>()
      for record in records where !record.deleted && seen.insert(record.id).inserted {
        var grant = try SharingCollections.grant.decode(record)
        grant.resourceOrgPath = record.scope
        let consumer = Self.actsFor(caller, grant.terms.consumer, path: grant.consumerPath)
        guard list.mine ? consumer : caller.can(.catalogPublish, at: record.scope) else { continue }
        grants.append(shown(grant))
      }
      var response = Eduhub_Sharing_V1_ListGrantsResponse()
      (response.grants, response.page) = Self.newestFirst(grants, id: \.id, after: after, size: size)
      return response
    }
  }

  /// One page of `items` newest first (ids are time-ordered), after the id `after`, with the next
  /// page's token.
  static func newestFirst<Item>(_ items: [Item], id: (Item) -> String, after: String?, size: Int)
    -> ([Item], Eduhub_Common_V1_PageResponse)
  {
    let ordered = items.sorted { id($0) > id($1) }
    let page = Array(ordered.filter { after == nil || id($0) < after! }.prefix(size))
    var next = Eduhub_Common_V1_PageResponse()
    if page.count == size, let last = page.last, let end = ordered.last, id(end) != id(last) { next.nextPageToken = PageToken.make([id(last)]) }
    return (page, next)
  }

  static func actionName(_ action: Eduhub_Sharing_V1_GrantAction) -> String {
    switch action {
    case .renew: "renewed"
    case .suspend: "suspended"
    case .resume: "resumed"
    case .revoke: "revoked"
    case .unspecified, .UNRECOGNIZED: "unspecified"
    }
  }
}
