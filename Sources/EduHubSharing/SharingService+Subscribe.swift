import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Where a subscription stands: first the rows that existed at sequence `sequence` in key order
/// (after `key`), then every change after `sequence`, in sequence order.
///
/// A row written after the snapshot's sequence is skipped by the snapshot and delivered by the
/// changes that follow it, so a consumer resuming from any cursor gets each change once.
struct SubscriptionCursor: Equatable {
  var snapshot: Bool
  var sequence: Int64
  /// The last key the snapshot delivered (or passed).
  var key: String

  /// The cursor as the consumer carries it: the snapshot's last key sealed for this node (a row
  /// key may be an ID number or a person id the consumer is shown only as a pseudonym).
  func encoded(code: String, identity: IdentityService) throws -> String {
    let sealed = key.isEmpty ? "" : try identity.sealForSelf(Array(key.utf8), context: "subscription-cursor:\(code)")
    return PageToken.make(["s2", code, snapshot ? "r" : "c", String(sequence), sealed])
  }

  static func parse(_ text: String, code: String, identity: IdentityService) throws -> SubscriptionCursor? {
    guard !text.isEmpty else { return nil }
    let invalid = RPCError(.invalidArgument, "cursor is not a cursor of this resource's subscription")
    guard text.utf8.count <= 1024, let parts = try? PageToken.parse(text, parts: 5), parts[0] == "s2" else { throw invalid }
    guard parts[1] == code, ["r", "c"].contains(parts[2]), let sequence = Int64(parts[3]), sequence >= 0 else { throw invalid }
    var key = ""
    if !parts[4].isEmpty {
      guard let opened = identity.openForSelf(parts[4], context: "subscription-cursor:\(code)") else { throw invalid }
      key = String(decoding: opened, as: UTF8.self)
    }
    return SubscriptionCursor(snapshot: parts[2] == "r", sequence: sequence, key: key)
  }
}

extension SharingService {
  /// Streams a table resource's rows, then its changes, as `grant` shows them: `send` gets each
  /// SubscribeResponse encoded. Checks the grant
  /// before every message: a grant suspended, revoked or expired meanwhile ends the stream with
  /// PERMISSION_DENIED. `send` suspends while the consumer is slow (flow control), which holds the
  /// reading too: a slow consumer costs one batch of memory.
  public func subscribe(
    _ request: Eduhub_Sharing_V1_SubscribeRequest, caller: Caller, peer: String,
    send: ([UInt8]) async throws -> Int
  ) async throws {
    let action = "sharing.Subscribe"
    let batch = request.batchSize == 0 ? 500 : Int(request.batchSize)
    guard (1...5000).contains(batch) else { throw Validate.invalid("batch_size is 1 to 5,000") }
    // Taken before the resource is read: a change in between is seen on the first pass.
    var catalogAt = try catalogSequence().sequence
    let (record, resource, viewPath) = try store.read { db -> (StoredRecord, Eduhub_Catalog_V1_Resource, String?) in
      let (record, resource) = try self.resource(request.resourceCode, caller: caller, in: db)
      var viewPath: String?
      if case .view(let view) = resource.dataset.source { viewPath = try identity.orgPath(view.orgCode, in: db) }
      return (record, resource, viewPath)
    }
    guard resource.type == .table, resource.dataset.source != nil else {
      throw RPCError(.failedPrecondition, "resource \(resource.code) has no rows to subscribe to (an API is called: CallApi)")
    }
    guard !resource.retired else { throw RPCError(.failedPrecondition, "resource \(resource.code) is retired") }
    var grant = try self.grant(for: resource.code, caller: caller, consumerID: request.consumerID, action: action, peer: peer)
    var cursor =
      try SubscriptionCursor.parse(request.cursor, code: resource.code, identity: identity)
      ?? SubscriptionCursor(snapshot: true, sequence: try store.read { db in try store.records.lastSequence(in: db) }, key: "")
    let rows = GrantedRows(
      resource: resource,
      fields: try requestedFields(request.fields, grant, of: resource, caller: caller, action: action, peer: peer),
      reader: Self.reader(for: grant), identity: identity, viewPath: viewPath)
    let columns = rows.fields.map(\.name)
    let started = ContinuousClock.now
    var sent: (rows: Int64, bytes: Int64) = (0, 0)
    var status = 0
    defer {
      log(
        grant, resource: resource.code, scope: record.scope, kind: "stream", fingerprint: "", rows: sent.rows, bytes: sent.bytes,
        status: status, since: started)
    }
    let signal = store.records.changed
    // The definition the rows are shaped and masked by: a change to it (a column raised to personal,
    // a view turned to pupils, the class, retirement) ends the stream, to be judged again.
    let definition = CatalogService.withoutCounters(resource)
    // One message's bytes and the row buffers, reused.
    var message: [UInt8] = []
    var scratch = GrantedRows.Scratch()
    do {
      while true {
        try Task.checkCancellation()
        // The grant as it stands now, before every message.
        try book.refresh()
        grant = book.grant(grant.id) ?? grant
        if let reason = Self.unusable(grant, now: identity.nowMs()) {
          throw identity.denied(caller, action, target: resource.code, peer: peer, reason)
        }
        let latest = try catalogSequence().sequence
        if latest != catalogAt {
          catalogAt = latest
          let now = try store.read { db in try catalog.stored(resource.code, in: db)?.1 }
          guard let now, CatalogService.withoutCounters(now) == definition else {
            throw RPCError(.aborted, "resource \(resource.code) changed since the subscription began: subscribe again from the last cursor")
          }
        }
        guard try approvalHolds(grant) else { throw identity.denied(caller, action, target: resource.code, peer: peer, Self.outgrown(grant)) }
        let generation = signal.generation
        message.removeAll(keepingCapacity: true)
        var changes = 0
        var snapshotDone = false
        var clearMinors = 0
        if cursor.snapshot {
          let page = try store.read { db in try snapshotPage(rows, after: cursor.key, limit: batch, in: db) }
          for row in page {
            cursor.key = snapshotKey(rows, row.record)
            // Written after the snapshot began: delivered with the changes instead.
            guard row.record.sequence <= cursor.sequence, rows.includes(row) else { continue }
            if try rows.appendChange(row, to: &message, scratch: &scratch) { clearMinors += 1 }
            changes += 1
          }
          if page.count < batch {
            cursor = SubscriptionCursor(snapshot: false, sequence: cursor.sequence, key: "")
            snapshotDone = true
          }
        } else {
          let (page, through) = try store.read { db -> ([SourceRow], Int64) in
            let head = try store.records.lastSequence(in: db)
            if let scope = rows.scope {
              // A view also loses the people who left its subtree (moved to another org): deletions.
              let (people, through) = try identity.peopleChanges(
                inScope: scope, after: cursor.sequence, through: head, limit: batch, for: rows.reader, on: rows.today, in: db)
              return (people.map(SourceRow.init), through)
            }
            let page = try store.records.changes(
              of: DatasetSchema.rowCollection, after: cursor.sequence, through: head, idPrefix: rows.idPrefix, limit: batch, in: db)
            // Everything up to the head was read when the page was not full.
            return (page.map(SourceRow.init), page.count < batch ? max(cursor.sequence, head) : page.last?.sequence ?? cursor.sequence)
          }
          for row in page where rows.includes(row) {
            if try rows.appendChange(row, to: &message, scratch: &scratch) { clearMinors += 1 }
            changes += 1
          }
          cursor.sequence = through
          if changes == 0 {
            if page.count < batch { await signal.wait(after: generation, timeout: .seconds(1)) }
            continue
          }
        }
        if changes == 0 && !snapshotDone { continue }
        // The rest of the message after its changes (protobuf fields may come in any order).
        for column in columns { RowWire.appendField(1, column, to: &message) }
        RowWire.appendField(3, try cursor.encoded(code: resource.code, identity: identity), to: &message)
        if snapshotDone { RowWire.appendVarintField(4, 1, to: &message) }
        RowWire.appendField(5, grant.id, to: &message)
        auditClearReads(clearMinors, grant: grant, target: resource.code, actor: caller.actor, peer: peer)
        sent.bytes += Int64(try await send(message))
        sent.rows += Int64(changes)
      }
    } catch {
      status = Int(RPCError.from(error).code.rawValue)
      throw error
    }
  }

  /// The next page of the snapshot after `key`: people masked for the grant's reader by Identity,
  /// or a table's records.
  func snapshotPage(_ rows: GrantedRows, after key: String, limit: Int, in db: Database) throws -> [SourceRow] {
    if let scope = rows.scope {
      // A view is read by (scope, id).
      return try identity.people(inScope: scope, after: PersonView.cursor(key), limit: limit, for: rows.reader, on: rows.today, in: db)
        .map(SourceRow.init)
    }
    return try store.records.withPrefix(
      DatasetSchema.rowCollection, idPrefix: rows.idPrefix, after: key.isEmpty ? nil : rows.idPrefix + key, limit: limit, in: db)
      .map(SourceRow.init)
  }

  func snapshotKey(_ rows: GrantedRows, _ record: StoredRecord) -> String {
    // Where the record stands in the store's order: its id after the table's prefix (the key
    // itself, or its hash for a personal key).
    rows.scope == nil ? DatasetSchema.key(ofRecordID: record.id, code: rows.code) : PersonView.position(of: record)
  }

  /// Records that `rows` rows with minors' sensitive fields went out in clear through `grant` (one
  /// audit event per message or call, not one per row).
  func auditClearReads(_ rows: Int, grant: Eduhub_Sharing_V1_Grant, target: String, actor: String, peer: String) {
    guard rows > 0 else { return }
    identity.audit.record(
      .init(
        actor: actor, action: "privacy.clear-read", target: target, detail: "grant \(grant.id): \(rows) rows with minors' sensitive fields",
        peer: peer, timeMs: identity.nowMs()))
  }

  /// Logs one call or session.
  func log(
    _ grant: Eduhub_Sharing_V1_Grant, resource: String, scope: String, kind: String, fingerprint: String, rows: Int64, bytes: Int64,
    status: Int, since started: ContinuousClock.Instant
  ) {
    let elapsed = ContinuousClock.now - started
    callLog.record(
      .init(
        timeMs: identity.nowMs(), day: identity.today.description, resource: resource, resourceScope: scope,
        consumer: grant.terms.consumer.id, consumerPath: grant.consumerPath, grant: grant.id, kind: kind, fingerprint: fingerprint,
        rows: rows, bytes: bytes, status: status,
        latencyMicros: elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
  }
}
