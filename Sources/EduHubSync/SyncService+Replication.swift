import EduHubAPI
import EduHubCore
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Pushes a node refused from one downstream node (for `eduhub status`).
public struct RefusedPush: Sendable, Hashable {
  public var nodeID: String
  public var count: Int
  public var lastMs: Int64
  public var reason: String
}

extension SyncService {
  static let defaultBatchRecords = 1000
  static let defaultBatchBytes = 1 << 20

  /// The node a call comes from, which must be the node it names.
  func callingNode(_ caller: Caller, named nodeID: String, _ action: String, peer: String) throws -> String {
    try Validate.identifier(nodeID, "node_id")
    guard caller.accountID == Self.subject(nodeID), caller.roles.contains(where: { $0.role == .node }) else {
      // A node presenting another node's token, or a person calling a node's method.
      throw identity.denied(caller, action, target: nodeID, peer: peer, "only node \(nodeID) itself may call this for it")
    }
    return caller.homeScope
  }

  static func wire(_ record: StoredRecord) -> Eduhub_Sync_V1_SyncRecord {
    var out = Eduhub_Sync_V1_SyncRecord()
    out.collection = record.collection
    out.id = record.id
    out.scope = record.scope
    out.body = Data(record.body)
    out.version = Data(record.version)
    out.stamps = Data(record.stamps)
    out.deleted = record.deleted
    return out
  }

  static func stored(_ record: Eduhub_Sync_V1_SyncRecord) -> StoredRecord {
    StoredRecord(
      collection: record.collection, id: record.id, scope: record.scope, body: [UInt8](record.body),
      version: [UInt8](record.version), stamps: [UInt8](record.stamps), deleted: record.deleted)
  }

  // MARK: Pull

  public func pull(
    _ request: Eduhub_Sync_V1_PullRequest, caller: Caller, peer: String,
    send: (Eduhub_Sync_V1_PullBatch) async throws -> Void
  ) async throws {
    let action = "sync.Pull"
    let scope = try callingNode(caller, named: request.nodeID, action, peer: peer)
    guard !scope.isEmpty else { throw RPCError(.failedPrecondition, "a node of the whole region has no upstream to pull from") }
    guard request.maxRecords >= 0, request.maxBytes >= 0 else {
      throw RPCError(.invalidArgument, "max_records and max_bytes may not be negative")
    }
    let maxRecords = request.maxRecords == 0 ? Self.defaultBatchRecords : min(Int(request.maxRecords), 10_000)
    let maxBytes = request.maxBytes == 0 ? Self.defaultBatchBytes : min(Int(request.maxBytes), 4 << 20)
    var cursor = Eduhub_Sync_V1_PullCursor()
    if !request.cursor.isEmpty {
      do { cursor = try Eduhub_Sync_V1_PullCursor(serializedBytes: request.cursor) } catch {
        throw RPCError(.invalidArgument, "cursor is not one this node gave")
      }
    }
    let storeID = try storeID()
    let last = try store.read { db in try store.records.lastSequence(in: db) }
    if !request.cursor.isEmpty, cursor.sequence < 0 || cursor.snapshotSequence < 0 || cursor.snapshotPart < 0 {
      throw RPCError(.invalidArgument, "cursor is not one this node gave")
    }
    if !request.cursor.isEmpty, cursor.storeID != storeID || cursor.sequence > last || cursor.snapshotSequence > last {
      // The cursor is ahead of this store, or from another one: this node was restored from a
      // backup or re-created. What the puller pushed since may be gone here: it must push
      // everything again and start over, rather than diverge in silence.
      var resync = Eduhub_Sync_V1_PullBatch()
      resync.resync = true
      resync.upstreamRolledBack = true
      resync.caughtUp = true
      try await send(resync)
      identity.audit.record(
        .init(actor: caller.actor, action: action, target: request.nodeID, detail: "told to resync: cursor ahead of this store", peer: peer, timeMs: identity.nowMs()))
      return
    }
    if request.cursor.isEmpty || cursor.scope != scope {
      // A first sync, or the node's scope changed: walk the scope from the start.
      cursor = Eduhub_Sync_V1_PullCursor()
      cursor.scope = scope
      cursor.snapshotSequence = last
      cursor.storeID = storeID
    }
    if cursor.snapshotDone {
      // The node has applied everything through its cursor: what tombstones can be collected.
      try recordPulled(request.nodeID, through: cursor.sequence)
      if cursor.sequence < (try store.read { db in try gcHorizon(in: db) }) {
        // Deletions it never saw are gone: it must start again.
        var resync = Eduhub_Sync_V1_PullBatch()
        resync.resync = true
        resync.caughtUp = true
        try await send(resync)
        identity.audit.record(.init(actor: caller.actor, action: action, target: request.nodeID, detail: "told to resync", peer: peer, timeMs: identity.nowMs()))
        return
      }
    }
    // Every collection is masked by its declared classification (RecordClassifications): one
    // nobody declared is not sent at all.
    var maskers = RecordMaskers(identity: identity)
    let reader = Reader.staff(subject: caller.accountID, grants: caller.grants)
    let today = identity.today
    var sent = 0
    while true {
      try Task.checkCancellation()
      let (batch, next, caughtUp) = try store.read { db in
        try readBatch(from: cursor, scope: scope, maxRecords: maxRecords, maxBytes: maxBytes, in: db)
      }
      var out = Eduhub_Sync_V1_PullBatch()
      for record in batch.records {
        var record = record
        // A row keyed by a pupil's ID number cannot go to a node that sees ID numbers masked: the
        // key is its id. A tombstone keeps its last body (a concurrent edit merges against it), so
        // it is masked like a live record.
        if try maskers.withholds(record, for: reader, on: today) { continue }
        if let masker = try maskers.masker(for: record) {
          do {
            record.body = try masker.mask(record.body, personID: record.id, scope: record.scope, for: reader, on: today).body
          } catch {
            throw RPCError(.dataLoss, "record \(record.collection)/\(record.id) cannot be read")
          }
        }
        out.records.append(Self.wire(record))
      }
      out.evictions = batch.exits.map { exit in
        var eviction = Eduhub_Sync_V1_Eviction()
        eviction.collection = exit.collection
        eviction.id = exit.id
        return eviction
      }
      cursor = next
      let cursorBytes: [UInt8] = try cursor.serializedBytes()
      out.cursor = Data(cursorBytes)
      out.caughtUp = caughtUp
      sent += out.records.count
      try await send(out)
      if caughtUp { break }
    }
    identity.audit.record(.init(actor: caller.actor, action: action, target: request.nodeID, detail: "\(sent) records", peer: peer, timeMs: identity.nowMs()))
  }

  struct PullPage {
    var records: [StoredRecord] = []
    var exits: [RecordStore.ScopeExit] = []
    var bytes = 0
  }

  /// The next batch after `cursor`, read in one snapshot, and the cursor after it.
  func readBatch(from start: Eduhub_Sync_V1_PullCursor, scope: String, maxRecords: Int, maxBytes: Int, in db: Database)
    throws -> (PullPage, Eduhub_Sync_V1_PullCursor, caughtUp: Bool)
  {
    var cursor = start
    var page = PullPage()
    let store = store.records
    if !cursor.snapshotDone {
      // The walk: each collection's global records (empty scope), then its records in the scope,
      // by (scope, id). Records changed after the walk began come with the change sequence.
      let collections = store.collectionNames
      walk: while page.records.count < maxRecords, page.bytes < maxBytes, Int(cursor.snapshotPart) < collections.count * 2 {
        let part = Int(cursor.snapshotPart)
        let collection = collections[part / 2]
        let global = part % 2 == 0
        let after: StoredRecord? =
          cursor.snapshotAfterID.isEmpty
          ? nil : StoredRecord(collection: collection, id: cursor.snapshotAfterID, scope: cursor.snapshotAfterScope, body: [])
        let want = maxRecords - page.records.count
        let found = try store.inScope(collection, scope: global ? "" : scope, after: after, limit: want, in: db)
        for record in found {
          cursor.snapshotAfterScope = record.scope
          cursor.snapshotAfterID = record.id
          if record.sequence <= cursor.snapshotSequence && (!global || record.scope.isEmpty) {
            page.records.append(record)
            page.bytes += record.body.count
            if page.bytes >= maxBytes && record.id != found.last?.id { break walk }
          }
        }
        if found.count < want {
          cursor.snapshotPart += 1
          cursor.snapshotAfterScope = ""
          cursor.snapshotAfterID = ""
        }
      }
      if Int(cursor.snapshotPart) >= collections.count * 2 {
        cursor.snapshotDone = true
        cursor.sequence = cursor.snapshotSequence
      }
      return (page, cursor, false)
    }
    let changes = try store.changes(after: cursor.sequence, inScope: scope, limit: maxRecords, in: db)
    var through = cursor.sequence
    var caughtUp = changes.count < maxRecords
    for record in changes {
      page.records.append(record)
      page.bytes += record.body.count
      through = record.sequence
      if page.bytes >= maxBytes && record.sequence != changes.last?.sequence {
        caughtUp = false
        break
      }
    }
    if caughtUp { through = max(through, try store.lastSequence(in: db)) }
    page.exits = try store.exits(after: cursor.sequence, through: through, fromScope: scope, in: db)
    cursor.sequence = through
    return (page, cursor, caughtUp)
  }

  // MARK: Push

  public func push(
    _ requests: some AsyncSequence<Eduhub_Sync_V1_PushRequest, any Error>, caller: Caller, peer: String
  ) async throws -> Eduhub_Sync_V1_PushResponse {
    let action = "sync.Push"
    var response = Eduhub_Sync_V1_PushResponse()
    // What the messages of one push carry over (the pushing node as judged, the maskers made), used
    // by one message's transaction at a time on the storage threads.
    let carried = PushCarry(maskers: RecordMaskers(identity: identity))
    let reader = Reader.staff(subject: caller.accountID, grants: caller.grants)
    var touched = Set<String>()
    for try await request in requests {
      let scope = try callingNode(caller, named: request.nodeID, action, peer: peer)
      guard request.records.count <= 10_000 else {
        throw RPCError(.invalidArgument, "at most 10,000 records a push message")
      }
      let known = Set(store.records.collectionNames)
      for record in request.records {
        guard known.contains(record.collection) else {
          throw RPCError(.invalidArgument, "unknown collection \(record.collection.prefix(40))")
        }
        guard RecordStore.inScope(record.scope, scope), !record.scope.isEmpty else {
          throw identity.denied(
            caller, action, target: "\(record.collection)/\(record.id)", peer: peer,
            "record \(record.collection)/\(record.id) lies outside node \(request.nodeID)'s scope")
        }
        // A node manages the nodes below it, never its own registration (its clearance, its key).
        guard !(record.collection == SyncCollections.node.name && record.id == request.nodeID) else {
          throw identity.denied(
            caller, action, target: "\(record.collection)/\(record.id)", peer: peer,
            "a node cannot change its own registration")
        }
      }
      let today = identity.today
      let outcome: Replica.ApplyOutcome
      do {
        // Off the cooperative pool: the transaction may wait for the writer.
        outcome = try await store.write { [self] db -> Replica.ApplyOutcome in
          // A push is judged against every record here: records of this node's own first sync
          // that still wait for their index keys (a county resyncing) are indexed first, or a
          // duplicate username or ID number from below would pass the uniqueness checks.
          try store.records.buildDeferredIndexes(in: db)
          var node = try carried.pusher ?? pushingNode(request.nodeID, scope: scope, in: db)
          // Nodes this message registers may already have written in it (a school's first records
          // arrive with its registration); the registrations themselves are checked below.
          for record in request.records where record.collection == SyncCollections.node.name && !record.deleted
            && RecordStore.inScope(record.scope, scope) && record.id != request.nodeID && record.id != identity.nodeID
          {
            // New registrations only: one that exists is the pusher's to relay already, or not at all.
            guard try !identity.publishesKey(record.id, in: db),
              try store.records.get(SyncCollections.node, record.id, in: db) == nil
            else { continue }
            node.adopt(record.id, scope: record.scope)
          }
          var sanitized: [StoredRecord] = []
          // The stored version of each record, read once: the sanitising, the version check and
          // the write rules all judge against it.
          var locals: [StoredRecord?] = []
          for incoming in request.records {
            let record = Self.stored(incoming)
            let local = try store.records.get(record.collection, record.id, in: db)
            locals.append(local)
            guard let local else {
              sanitized.append(record)
              continue
            }
            // A record may not leave the node's scope through a push either.
            guard RecordStore.inScope(local.scope, scope), !local.scope.isEmpty else {
              throw identity.denied(caller, action, target: "\(record.collection)/\(record.id)", peer: peer, "record \(record.collection)/\(record.id) lies outside node \(request.nodeID)'s scope")
            }
            // A tombstone keeps its last body: a push that revives it is sanitised the same way, or
            // a masked node could bring a deleted person back with values it never saw.
            guard let masker = try carried.maskers.masker(for: local, in: db) else {
              sanitized.append(record)
              continue
            }
            // Fields the pushing node sees masked keep this node's values and stamps, unless the new
            // value was written by a node that sees them in clear (a school relayed by its county):
            // a masked value pushed back must never overwrite the real one.
            let hidden = try masker.hiddenFields(local.body, personID: local.id, scope: local.scope, for: reader, on: today)
            if hidden.isEmpty {
              sanitized.append(record)
            } else {
              let stamps = try ReplicationEncoding.decodeStamps(record.stamps)
              let localStamps = try ReplicationEncoding.decodeStamps(local.stamps)
              var keep = Set<Int>()
              for number in hidden {
                // An unchanged stamp means the pusher holds this node's value, masked: keep ours.
                guard let stamp = stamps[number], stamp != localStamps[number],
                  try clearWriter(stamp.node, for: local.scope, in: db)
                else {
                  keep.insert(number)
                  continue
                }
              }
              sanitized.append(keep.isEmpty ? record : try Self.keeping(keep, of: local, in: record))
            }
          }
          // Every record as it would be applied: its version metadata names only writers it may
          // carry, and it is checked as the API that writes it would check it, with the node's
          // authority as the caller (WriteAuthorities: each service's rules).
          for (record, local) in zip(sanitized, locals) {
            try Self.checkVersion(record, local: local, from: node)
          }
          // The rules judge what would be stored: a version concurrent with ours is merged field by
          // field, and the merge can hold what neither version alone shows (terms approved here
          // beside a state the node chose). One already known changes nothing and is not judged.
          var judged: [StoredRecord] = []
          var replaced: [StoredRecord?] = []
          for (record, local) in zip(sanitized, locals) {
            guard let local else {
              try Self.checkProvenance(record, local: nil, incoming: record, from: node)
              judged.append(record)
              replaced.append(nil)
              continue
            }
            switch try store.replica.resolve(record, against: local) {
            case .skip: continue
            case .replace(let stored), .merge(let stored, _):
              try Self.checkProvenance(stored, local: local, incoming: record, from: node)
              judged.append(stored)
              replaced.append(local)
            }
          }
          carried.pusher = try PushView.check(
            judged, replacing: replaced, from: node, rules: identity.writeAuthorities, store: store.records, in: db,
            registersNode: { $0.collection == SyncCollections.node.name && !$0.deleted ? $0.id : nil })
          let outcome = try store.replica.apply(sanitized, in: db)
          try store.records.setMeta("sync.pushed.\(request.nodeID)", Array(String(request.throughSequence).utf8), in: db)
          // What the node had applied of ours when this push began bounds what it writes after it
          // (it pushes before it pulls: its next writes come after that pull, and a refused push
          // retried later keeps the bound of the last one taken).
          // Never lowered: a pull with an old cursor must not reopen the past.
          let bound = max(node.knownThrough, try pulledThrough(request.nodeID, in: db) ?? 0)
          try store.records.setMeta(Self.pushBoundKey(request.nodeID), Array(String(bound).utf8), in: db)
          return outcome
        }
      } catch let refusal as PushRefusal {
        // The reason names records: a row keyed by ID number by its table only (it goes to the
        // log, the audit and `eduhub status`).
        let reason = identity.scrubbingCarriedIDs(refusal.message, of: request.records.map { ($0.collection, $0.id) })
        throw refused(request.nodeID, caller: caller, reason: reason, peer: peer)
      }
      for record in request.records { touched.insert(record.collection) }
      response.acknowledgedSequence = request.throughSequence
      response.applied += Int64(outcome.fastForwarded)
      response.skipped += Int64(outcome.skipped)
      response.merged += Int64(outcome.merged)
      response.conflicts += Int64(outcome.conflicts)
    }
    identity.applied(collections: touched)
    identity.audit.record(
      .init(actor: caller.actor, action: action, target: caller.username,
            detail: "\(response.applied) applied, \(response.merged) merged, \(response.conflicts) conflicts", peer: peer, timeMs: identity.nowMs()))
    if response.applied + response.merged > 0 { onDownstreamWrites.withLock { $0 }?() }
    return response
  }

  /// The node behind a push, as this node knows it: its scope and clearance, the most a user on it
  /// could hold (the administrator role of its level, clear reads only if the node has them), and
  /// the nodes registered below it whose writes it relays.
  func pushingNode(_ nodeID: String, scope: String, in db: Database) throws -> PushingNode {
    guard let (_, stored) = try node(nodeID, in: db), stored.node.state == .active else {
      throw RPCError(.unauthenticated, "node \(nodeID) is not active")
    }
    let clear = stored.node.clearance == .clear
    let code = scope.split(separator: "/").last.map(String.init) ?? ""
    let kind = (try? identity.org(code, in: db))??.value.kind
    // A county's (or a town's, which holds schools) administrator where the node stands; anywhere
    // else (a school, a bureau, another unit) a school administrator's, the least an edge holds.
    let role: Eduhub_Identity_V1_Role = kind == .county || kind == .town ? .countyAdmin : .schoolAdmin
    // Roles an administrator there may hand out (a steward, a dispatcher) add nothing above theirs
    // but the work-order and catalog permissions a school's administrator lacks; they are granted
    // from above, so a school node's authority is its administrator's alone.
    var permissions = Roles.permissions(of: role)
    if role == .countyAdmin {
      permissions.formUnion(Roles.permissions(of: .dataSteward))
      permissions.formUnion(Roles.permissions(of: .dispatcher))
    }
    // A masked node gives nobody clear reads: not a teacher's role, not a guardian's binding.
    if !clear { permissions.subtract([.peopleReadClear, .guardiansBind]) }
    let authority = Caller(
      accountID: Self.subject(nodeID), username: nodeID, personID: "", homeScope: scope,
      roles: [.init(grantID: "", role: role, scope: scope, permissions: permissions)], children: [],
      issuer: identity.nodeID, sessionID: "")
    // The nodes it relays: those it enrolled, and those they enrolled, down its subtree. A node
    // of its scope enrolled here (a school syncing with this node directly) writes for itself; its
    // stamps in the county's push would be borrowed.
    var writers: Set<String> = [nodeID]
    var registrars: [(id: String, scope: String, by: Set<String>)] = []
    var after: StoredRecord?
    while true {
      let page = try store.records.inScope(SyncCollections.node, scope: scope, after: after, limit: 1000, in: db)
      for record in page where !record.scope.isEmpty && record.id != identity.nodeID {
        registrars.append((record.id, record.scope, Set(try ReplicationEncoding.decodeVector(record.version).entries.map(\.node))))
      }
      guard page.count == 1000 else { break }
      after = page.last
    }
    var writerScopes: [String: String] = [:]
    var grew = true
    while grew {
      grew = false
      for (id, scope, by) in registrars where !writers.contains(id) && !by.isDisjoint(with: writers) {
        writers.insert(id)
        writerScopes[id] = scope
        grew = true
      }
    }
    let knownThrough = try store.records.meta(Self.pushBoundKey(nodeID), in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
    return PushingNode(
      id: nodeID, scope: scope, clear: clear, authority: authority, writers: writers, writerScopes: writerScopes,
      knownThrough: knownThrough)
  }

  /// Checks a pushed record's version metadata. A node writes in its own name and relays the
  /// writes of nodes registered below it; what it says of any other node (its upstream, a node
  /// beside it) must be what this node already holds: no vector entry of theirs ahead of ours, no
  /// field stamp of theirs newer than our stamp of that field, and a stamp equal to ours with our
  /// value. Counters are bounded by the decoders (`VersionVector.counterLimit`), so no later
  /// increment can trap.
  static func checkVersion(_ record: StoredRecord, local: StoredRecord?, from node: PushingNode) throws {
    let name = "record \(record.collection)/\(record.id.prefix(64))"
    let vector: VersionVector
    let stamps: [Int: FieldStamp]
    do {
      vector = try ReplicationEncoding.decodeVector(record.version)
      stamps = try ReplicationEncoding.decodeStamps(record.stamps)
    } catch {
      throw RPCError(.invalidArgument, "\(name) has malformed version metadata: \(error)")
    }
    let localVector = try local.map { try ReplicationEncoding.decodeVector($0.version) } ?? VersionVector()
    let localStamps = try local.map { try ReplicationEncoding.decodeStamps($0.stamps) } ?? [:]
    for entry in vector.entries where !node.mayCarry(entry.node) && entry.counter > localVector[entry.node] {
      throw PushRefusal("\(name) counts writes by node \(entry.node.prefix(40)) that this node has not seen: node \(node.id) cannot write in its name")
    }
    var sameStamp: [Int] = []
    for (number, stamp) in stamps where !node.mayCarry(stamp.node) {
      guard let ours = localStamps[number], stamp <= ours else {
        throw PushRefusal("\(name) has field \(number) stamped by node \(stamp.node.prefix(40)) newer than this node holds: node \(node.id) cannot write in its name")
      }
      if stamp == ours { sameStamp.append(number) }
    }
    guard !sameStamp.isEmpty, let local, number(sameStamp, differIn: record, local) else { return }
    throw PushRefusal("\(name) carries a value under another node's stamp that is not that node's value")
  }

  /// Checks who a change is written by, on the record as it would be stored: the push counts a new
  /// write by the pusher (or a node it relays), and every field that changes (value, stamp or the
  /// deletion marker) is stamped by one of them. What upstream holds under another node's stamp
  /// stays exactly as upstream holds it: an older stamp of upstream's own with a value of the
  /// pusher's choosing, or a field with no stamp at all, would otherwise be stored as upstream's
  /// writing (and the credential cap, `writtenBelow` and `clearWriter`, which read these names,
  /// would believe it).
  static func checkProvenance(_ stored: StoredRecord, local: StoredRecord?, incoming: StoredRecord, from node: PushingNode) throws {
    let name = "record \(stored.collection)/\(stored.id.prefix(64))"
    let vector = try ReplicationEncoding.decodeVector(incoming.version)
    let localVector = try local.map { try ReplicationEncoding.decodeVector($0.version) } ?? VersionVector()
    guard vector.entries.contains(where: { node.mayCarry($0.node) && $0.counter > localVector[$0.node] }) else {
      throw PushRefusal("\(name) counts no new write by node \(node.id) or a node it relays")
    }
    let stamps = try ReplicationEncoding.decodeStamps(stored.stamps)
    let localStamps = try local.map { try ReplicationEncoding.decodeStamps($0.stamps) } ?? [:]
    let fields: WireFields
    let localFields: WireFields
    do {
      fields = try WireFields(parsing: stored.body)
      localFields = try local.map { try WireFields(parsing: $0.body) } ?? WireFields()
    } catch {
      throw RPCError(.invalidArgument, "\(name) has a malformed body")
    }
    var numbers = Set(fields.fields.keys).union(localFields.fields.keys).union(stamps.keys).union(localStamps.keys)
    numbers.insert(RecordVersion.deletionField)
    for number in numbers.sorted() {
      let sameValue =
        number == RecordVersion.deletionField ? local.map { $0.deleted == stored.deleted } ?? false : fields[number] == localFields[number]
      if sameValue && stamps[number] == localStamps[number] { continue }
      guard let stamp = stamps[number], node.mayCarry(stamp.node) else {
        throw PushRefusal("\(name) changes field \(number) under a stamp that is not node \(node.id)'s or a node's it relays")
      }
    }
  }

  /// Whether any of the fields `numbers` (deletion marker included) differs between two versions.
  static func number(_ numbers: [Int], differIn record: StoredRecord, _ local: StoredRecord) -> Bool {
    guard let theirs = try? WireFields(parsing: record.body), let ours = try? WireFields(parsing: local.body) else { return true }
    return numbers.contains { number in
      number == RecordVersion.deletionField ? record.deleted != local.deleted : theirs[number] != ours[number]
    }
  }

  /// Audits and reports a refused push (a security event: the node pushed what it could not have
  /// written), keeps it for `eduhub status`, and returns the error to throw.
  func refused(_ nodeID: String, caller: Caller, reason: String, peer: String) -> RPCError {
    let message = "push refused: \(reason)"
    identity.securityEvent(
      "a downstream node pushed what it could not have written; the push is refused",
      ["sync.node": nodeID, "sync.reason": reason])
    try? store.transaction { db in
      var refusals = try Self.refusals(in: db, store: store.records)
      let count = (refusals.first { $0.nodeID == nodeID }?.count ?? 0) + 1
      refusals.removeAll { $0.nodeID == nodeID }
      refusals.append(RefusedPush(nodeID: nodeID, count: count, lastMs: identity.nowMs(), reason: String(reason.prefix(300))))
      let text = refusals.map { "\($0.nodeID)\t\($0.count)\t\($0.lastMs)\t\($0.reason.replacingOccurrences(of: "\n", with: " "))" }
      try store.records.setMeta(Self.refusalsKey, Array(text.joined(separator: "\n").utf8), in: db)
    }
    return identity.denied(caller, "sync.Push", target: nodeID, peer: peer, message)
  }

  static let refusalsKey = "sync.refused-pushes"

  static func refusals(in db: Database, store: RecordStore) throws -> [RefusedPush] {
    let text = String(decoding: try store.meta(refusalsKey, in: db) ?? [], as: UTF8.self)
    return text.split(separator: "\n").compactMap { line in
      let parts = line.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
      guard parts.count == 4, let count = Int(parts[1]), let ms = Int64(parts[2]) else { return nil }
      return RefusedPush(nodeID: String(parts[0]), count: count, lastMs: ms, reason: String(parts[3]))
    }
  }

  /// Pushes this node refused, by downstream node: how many and the last one's reason.
  public func refusedPushes() throws -> [RefusedPush] {
    try store.read { db in try Self.refusals(in: db, store: store.records) }
  }


  /// Whether `writer` (a node id, as field stamps name them) sees a record at `path` in clear: this
  /// node itself, or an active downstream node with clear clearance whose scope holds it.
  func clearWriter(_ writer: String, for path: String, in db: Database) throws -> Bool {
    if writer == identity.nodeID { return true }
    guard let (record, stored) = try node(writer, in: db), stored.node.state == .active else { return false }
    return stored.node.clearance == .clear && RecordStore.inScope(path, record.scope) && !record.scope.isEmpty
  }

  // MARK: Handshake

  public func handshake(_ request: Eduhub_Sync_V1_HandshakeRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sync_V1_HandshakeResponse
  {
    let scope = try callingNode(caller, named: request.nodeID, "sync.Handshake", peer: peer)
    var cursor = Eduhub_Sync_V1_PullCursor()
    if !request.cursor.isEmpty {
      do { cursor = try Eduhub_Sync_V1_PullCursor(serializedBytes: request.cursor) } catch {
        throw RPCError(.invalidArgument, "cursor is not one this node gave")
      }
    }
    let storeID = try storeID()
    return try store.read { db in
      var response = Eduhub_Sync_V1_HandshakeResponse()
      response.upstreamNodeID = identity.nodeID
      response.storeID = storeID
      response.lastSequence = try store.records.lastSequence(in: db)
      response.scope = scope
      response.clearance = try node(request.nodeID, in: db)?.1.node.clearance ?? .unspecified
      response.pulledThrough = try pulledThrough(request.nodeID, in: db) ?? 0
      response.acknowledgedPush = try store.records.meta("sync.pushed.\(request.nodeID)", in: db)
        .flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
      if !request.cursor.isEmpty {
        let horizon = try gcHorizon(in: db)
        let rolledBack =
          cursor.storeID != storeID || cursor.sequence > response.lastSequence || cursor.snapshotSequence > response.lastSequence
        response.resyncNeeded = rolledBack || (cursor.snapshotDone && cursor.sequence < horizon)
      }
      return response
    }
  }

  // MARK: Conflicts

  public func listConflicts(_ request: Eduhub_Sync_V1_ListConflictsRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sync_V1_ListConflictsResponse
  {
    try Validate.identifier(request.orgCode, "org_code")
    guard request.limit >= 0 else { throw RPCError(.invalidArgument, "limit may not be negative") }
    let limit = request.limit == 0 ? 100 : min(Int(request.limit), 1000)
    let today = identity.today
    let reader = Reader.staff(subject: caller.accountID, grants: caller.grants)
    var maskers = RecordMaskers(identity: identity)
    return try store.read { db in
      let path = try identity.orgPath(request.orgCode, in: db)
      try identity.require(.nodesManage, at: path, caller, "sync.ListConflicts", target: request.orgCode, peer: peer)
      var response = Eduhub_Sync_V1_ListConflictsResponse()
      for (conflict, scope) in try store.records.conflicts(inScope: path, limit: limit, in: db) {
        // A losing value is the record's field as it was: shown as the caller may see that field of
        // the record (a county administrator sees a pupil's losing name masked, like the winner).
        let current = try store.records.get(conflict.collection, conflict.recordID, in: db)
        let losingValue = try shown(conflict, of: current, for: reader, on: today, maskers: &maskers, in: db)
        var out = Eduhub_Sync_V1_Conflict()
        out.collection = conflict.collection
        out.recordID = try current.map { try maskers.shownID($0, for: reader, on: today, in: db) } ?? conflict.recordID
        out.scope = scope
        out.field = Int32(conflict.field)
        out.losingValue = Data(losingValue)
        out.losingNode = (try? ReplicationEncoding.decodeStamps(conflict.losingStamp).values.first?.node) ?? ""
        out.winningNode = (try? ReplicationEncoding.decodeStamps(conflict.winningStamp).values.first?.node) ?? ""
        out.sequence = conflict.sequence
        out.localVersion = Data(conflict.localVersion)
        out.remoteVersion = Data(conflict.remoteVersion)
        response.conflicts.append(out)
      }
      return response
    }
  }

  /// A conflict's losing value as `reader` may see it: the record with that value put back, masked
  /// for the reader, and the field taken out again (the age class comes from the whole record).
  /// Nothing is shown of a record no longer here.
  func shown(
    _ conflict: RecordStore.Conflict, of current: StoredRecord?, for reader: Reader, on today: CivilDate, maskers: inout RecordMaskers,
    in db: Database
  ) throws -> [UInt8] {
    guard let current else { return [] }
    guard let masker = try maskers.masker(for: current, in: db) else { return conflict.losingValue }
    var fields = try WireFields(parsing: current.body)
    fields[conflict.field] = conflict.losingValue.isEmpty ? nil : conflict.losingValue
    let masked = try masker.mask(fields.joined(), personID: current.id, scope: current.scope, for: reader, on: today).body
    return try WireFields(parsing: masked)[conflict.field] ?? []
  }

  /// `incoming` with the fields `numbers` (values and stamps) taken from `local`.
  static func keeping(_ numbers: Set<Int>, of local: StoredRecord, in incoming: StoredRecord) throws -> StoredRecord {
    var fields = try WireFields(parsing: incoming.body)
    let localFields = try WireFields(parsing: local.body)
    var stamps = try ReplicationEncoding.decodeStamps(incoming.stamps)
    let localStamps = try ReplicationEncoding.decodeStamps(local.stamps)
    for number in numbers {
      fields[number] = localFields[number]
      stamps[number] = localStamps[number]
    }
    var record = incoming
    record.body = fields.joined()
    record.stamps = ReplicationEncoding.encode(stamps)
    return record
  }
}

/// What the messages of one push carry from one to the next: the pushing node as judged and the
/// maskers made. Only one message's transaction uses it at a time (the stream's messages are taken
/// in turn, each awaited), on whichever storage thread runs it.
final class PushCarry: @unchecked Sendable {
  var pusher: PushingNode?
  var maskers: RecordMaskers

  init(maskers: RecordMaskers) { self.maskers = maskers }
}
