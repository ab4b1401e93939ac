import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import Synchronization
import Tracing
import GRDB
import SwiftProtobuf

/// What one sync with the upstream did.
public struct SyncReport: Sendable, Hashable, CustomStringConvertible {
  public var batches = 0
  public var pulled = 0
  public var evicted = 0
  public var pulledFastForwarded = 0
  public var pulledMerged = 0
  public var conflicts = 0
  public var pushed = 0
  public var pushMerged = 0
  /// The upstream had collected deletions this node never saw: it dropped its scope and synced anew.
  public var resynced = false
  /// Records the upstream refused after it rolled back (edits on top of writes it lost).
  public var refusedAfterRollback = 0
  /// Another sync was running: this one did nothing.
  public var skipped = false

  public var description: String {
    if skipped { return "skipped: another sync of this node was running" }
    return "pulled \(pulled) records in \(batches) batches (\(pulledFastForwarded) new or newer, \(pulledMerged) merged, "
      + "\(conflicts) conflicts), evicted \(evicted), pushed \(pushed) (\(pushMerged) merged upstream)"
      + (refusedAfterRollback > 0 ? ", \(refusedAfterRollback) refused after the upstream's rollback" : "")
  }
}

/// The downstream side of sync: authenticates to the upstream with the node's key, pulls the
/// changes of its scope batch by batch (each applied with its cursor in one transaction, so an
/// interrupted sync resumes where it stopped), then pushes its own writes.
public final class SyncClient: Sendable {
  public let nodeID: String
  /// Whether a sync runs now.
  private let busy = Mutex(false)
  let signingKey: SigningKey
  /// The node's storage, through its one door.
  public let store: NodeStore
  public let replica: Replica
  let upstream: RPCClient

  /// The connection to the upstream.
  public var upstreamRPC: RPCClient { upstream }

  static let pullCursorKey = "sync.upstream.pull-cursor"
  static let pushCursorKey = "sync.upstream.pushed"
  static let lastSyncKey = "sync.upstream.last-sync"
  static let pulledRangesKey = "sync.upstream.pulled-ranges"
  /// Records merged during pulls, to push whatever their sequence.
  static let mustPushKey = "sync.upstream.must-push"

  /// Told which collections each pulled batch changed (the node drops cached callers and keys).
  let onApplied: @Sendable (Set<String>) -> Void
  /// Whether the upstream's walk is written as a bulk load whose checkpoints run beside the writer
  /// (`EncryptedDatabase.beginBulkLoad`): only in a process that starts no backup shipper, as
  /// `eduhub sync` (a shipper there would find its checkpoints taken over).
  let checkpointWalkAside: Bool

  /// - Parameter checkpointWalkAside: see ``checkpointWalkAside``; never in a node that may ship backups.
  public init(
    nodeID: String, signingKey: SigningKey, store: NodeStore, upstream: RPCClient, checkpointWalkAside: Bool = false,
    onApplied: @escaping @Sendable (Set<String>) -> Void = { _ in }
  ) {
    self.nodeID = nodeID
    self.signingKey = signingKey
    self.store = store
    self.replica = store.replica
    self.upstream = upstream
    self.checkpointWalkAside = checkpointWalkAside
    self.onApplied = onApplied
  }


  /// A fresh access token from the upstream: a signed challenge.
  public func authenticate() async throws -> String {
    let sync = Eduhub_Sync_V1_SyncService.Client(upstream)
    var ask = Eduhub_Sync_V1_ChallengeRequest()
    ask.nodeID = nodeID
    let challenge = try await sync.challenge(ask).challenge
    var answer = Eduhub_Sync_V1_AuthenticateRequest()
    answer.nodeID = nodeID
    answer.challenge = challenge
    answer.signature = Data(signingKey.sign(NodeChallenges.signedBytes([UInt8](challenge))))
    return try await sync.authenticate(answer).accessToken
  }

  /// Pushes, then pulls (so what the upstream merged of this node's writes comes straight back).
  /// Safe to run again at any time, or to interrupt: nothing is repeated or lost.
  /// One sync at a time: another asked for while one runs is skipped (`SyncReport.skipped`).
  @discardableResult
  public func syncOnce(batchRecords: Int = 5000) async throws -> SyncReport {
    guard busy.withLock({ busy in defer { busy = true }; return !busy }) else {
      var report = SyncReport()
      report.skipped = true
      return report
    }
    defer { busy.withLock { $0 = false } }
    return try await withSpan("sync \(nodeID) with its upstream", ofKind: .internal) { span in
      let report = try await syncOnceNow(batchRecords: batchRecords)
      span.attributes["eduhub.sync.pulled"] = report.pulled
      span.attributes["eduhub.sync.pushed"] = report.pushed
      return report
    }
  }

  /// Sends writes the nodes below pushed on to the upstream now, unless a sync is running (it will
  /// take them, or the next one will). Runs in the caller's trace.
  public func forwardDownstreamWrites() {
    Task { [self] in _ = try? await syncOnce() }
  }

  private func syncOnceNow(batchRecords: Int) async throws -> SyncReport {
    let token = try await authenticate()
    let options = CallOptions(metadata: ["authorization": .string("Bearer " + token)])
    var report = SyncReport()
    if try store.read({ db in try store.records.meta(Replica.restoredKey, in: db) })?.isEmpty == false {
      return try await resyncAfterRestore(options: options, batchRecords: batchRecords, into: &report)
    }
    // A refused push (the upstream found a write this node could not have made, or a login that
    // collides with one elsewhere) stays refused until an operator looks at it; the node still takes
    // its upstream's changes meanwhile, so one bad record cannot cut it off. It never resyncs then:
    // that would drop the writes that did not go up.
    var refused: RPCError?
    do {
      try await push(options: options, batchRecords: batchRecords, into: &report)
    } catch let error as RPCError where error.code == .permissionDenied && error.message.hasPrefix("push refused") {
      refused = error
    }
    if let refused {
      _ = try await pull(options: options, batchRecords: batchRecords, into: &report)
      throw refused
    }
    if let reason = try await pull(options: options, batchRecords: batchRecords, into: &report) {
      if reason == .upstreamRolledBack {
        // The upstream lost what it had since its backup: every write this node and its own
        // downstream nodes made goes up again (the upstream skips what it has). Records that only
        // came from the upstream are not sent: that would bring back deletes.
        try await pushAll(options: options, batchRecords: batchRecords, into: &report)
      }
      // Then drop the scope's records (this node's writes went up) and pull everything anew.
      try resetForResync()
      report.resynced = true
      _ = try await pull(options: options, batchRecords: batchRecords, into: &report)
    }
    let now = Array(String(Int64(Date().timeIntervalSince1970 * 1000)).utf8)
    try await store.write { [self] db in try store.records.setMeta(Self.lastSyncKey, now, in: db) }
    return report
  }

  enum ResyncReason { case expired, upstreamRolledBack }

  /// Pulls until caught up. Returns why, if the upstream said to resync.
  func pull(options: CallOptions, batchRecords: Int, into report: inout SyncReport) async throws -> ResyncReason? {
    var request = Eduhub_Sync_V1_PullRequest()
    request.nodeID = nodeID
    request.maxRecords = Int32(batchRecords)
    // Big batches: each is one transaction here, and a first sync of a county is hundreds of them.
    request.maxBytes = 4 << 20
    let replica = self.replica
    let store = self.store
    request.cursor = Data(try store.read { db in try store.records.meta(Self.pullCursorKey, in: db) } ?? [])
    // While the upstream walks its records (a first sync, a resync), the batches are a bulk load:
    // their index keys and search text go in by key order every so many records and when the walk
    // ends (`RecordStore.put(_:in:absent:deferIndexes:)`).
    var walking = Self.walking(request.cursor)
    let load = walking && checkpointWalkAside ? try store.records.database.beginBulkLoad(cacheMiB: nil) : nil
    defer { load?.end() }
    var resync: ResyncReason?
    report = try await Eduhub_Sync_V1_SyncService.Client(upstream).pull(request, options: options) { batches in
      var report = report
      for try await batch in batches {
        if batch.resync {
          resync = batch.upstreamRolledBack ? .upstreamRolledBack : .expired
          break
        }
        let records = batch.records.map(SyncService.stored)
        let (bulk, walkContinues) = (walking, Self.walking(batch.cursor))
        let outcome = try await store.write { db -> Replica.ApplyOutcome in
          let before = try store.records.lastSequence(in: db)
          let outcome = try replica.apply(records, in: db, deferIndexes: bulk)
          if !walkContinues { try store.records.buildDeferredIndexes(in: db) }
          for eviction in batch.evictions { try store.records.evict(eviction.collection, eviction.id, in: db) }
          if !outcome.mergedRecords.isEmpty {
            var list = String(decoding: try store.records.meta(Self.mustPushKey, in: db) ?? [], as: UTF8.self)
            for merged in outcome.mergedRecords where !merged.collection.isEmpty {
              list += merged.collection + "\t" + merged.id + "\n"
            }
            try store.records.setMeta(Self.mustPushKey, Array(list.utf8), in: db)
          }
          let after = try store.records.lastSequence(in: db)
          if after > before {
            let pushed = try store.records.meta(Self.pushCursorKey, in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
            if pushed >= before {
              // Everything before this batch went up already: the push cursor simply moves past it
              // (so a later push does not walk what a first sync brought). Records merged here
              // hold writes the upstream lacks: they are listed to go up with the next push.
              try store.records.setMeta(Self.pushCursorKey, Array(String(after).utf8), in: db)
            } else {
              var ranges = PulledRanges(decoding: try store.records.meta(Self.pulledRangesKey, in: db) ?? [])
              ranges.add((before + 1)...after)
              try store.records.setMeta(Self.pulledRangesKey, ranges.encoded, in: db)
            }
          }
          // The cursor commits with the batch it covers: a crash never skips or repeats work.
          try store.records.setMeta(Self.pullCursorKey, [UInt8](batch.cursor), in: db)
          return outcome
        }
        walking = walkContinues
        if outcome.fastForwarded + outcome.merged > 0 || !batch.evictions.isEmpty {
          onApplied(Set(records.map(\.collection)).union(batch.evictions.map(\.collection)))
        }
        report.batches += 1
        report.pulled += records.count
        report.evicted += batch.evictions.count
        report.pulledFastForwarded += outcome.fastForwarded
        report.pulledMerged += outcome.merged
        report.conflicts += outcome.conflicts
      }
      return report
    }
    // A stream that ended inside the walk leaves records staged: index them before returning.
    try await store.write { db in try store.records.buildDeferredIndexes(in: db) }
    return resync
  }

  /// Whether a pull from `cursor` is still inside the upstream's walk of this node's records (the
  /// cursor is the upstream's own protobuf; one that does not parse is treated as outside it).
  static func walking(_ cursor: Data) -> Bool {
    guard !cursor.isEmpty else { return true }
    guard let parsed = try? Eduhub_Sync_V1_PullCursor(serializedBytes: cursor) else { return false }
    return !parsed.snapshotDone
  }

  /// Drops every record of this node's scope (not the global ones) and its pull state, logging
  /// each as an exit so this node's own downstream nodes drop them too.
  func resetForResync() throws {
    try store.transaction { db in
      for collection in store.records.collectionNames {
        while true {
          let page = try store.records.records(collection, limit: 1000, in: db).filter { !$0.scope.isEmpty }
          guard !page.isEmpty else { break }
          for record in page { try store.records.evict(record.collection, record.id, in: db) }
        }
      }
      var after: Int64 = 0
      while true {
        let tombstones = try store.records.tombstones(after: after, limit: 1000, in: db)
        guard let last = tombstones.last else { break }
        after = last.sequence
        for record in tombstones where !record.scope.isEmpty { try store.records.evict(record.collection, record.id, in: db) }
      }
      try store.records.setMeta(Self.pullCursorKey, [], in: db)
      try store.records.setMeta(Self.pulledRangesKey, [], in: db)
    }
  }

  /// What the upstream does not have yet, after what it acknowledged: every change but those a pull
  /// brought as they are. A record merged here during a pull carries this node's entry in its
  /// vector and goes up too; records this node's own downstream nodes pushed go up (three tiers).
  func pendingWrites(after: Int64, limit: Int) throws -> (records: [StoredRecord], through: Int64) {
    try store.read { db in
      let ranges = PulledRanges(decoding: try store.records.meta(Self.pulledRangesKey, in: db) ?? [])
      let changes = try store.records.changes(after: after, inScope: "", limit: limit, in: db)
      var pending: [StoredRecord] = []
      for record in changes where !record.scope.isEmpty {
        if ranges.contains(record.sequence) {
          guard try ReplicationEncoding.decodeVector(record.version)[nodeID] > 0 else { continue }
        }
        pending.append(record)
      }
      return (pending, changes.last?.sequence ?? after)
    }
  }

  /// How many of this node's writes wait for the next push.
  public func pendingCount() throws -> Int {
    var after = try pushedCursor()
    var count = 0
    while true {
      let (records, through) = try pendingWrites(after: after, limit: 10_000)
      count += records.count
      guard through > after else { return count }
      after = through
    }
  }

  func pushedCursor() throws -> Int64 {
    try store.read { db in
      try store.records.meta(Self.pushCursorKey, in: db).flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? 0
    }
  }

  /// The first sync of a node restored from backup: everything it (and the nodes below it) wrote
  /// goes up (the upstream skips what it has), then its scope is dropped and pulled anew, bringing
  /// back its own writes after the restore point and every deletion the upstream already collected;
  /// only then does it take local writes again.
  func resyncAfterRestore(options: CallOptions, batchRecords: Int, into report: inout SyncReport) async throws -> SyncReport {
    try await pushAll(options: options, batchRecords: batchRecords, into: &report)
    try resetForResync()
    report.resynced = true
    _ = try await pull(options: options, batchRecords: batchRecords, into: &report)
    let now = Array(String(Int64(Date().timeIntervalSince1970 * 1000)).utf8)
    try await store.write { [self] db in
      try store.records.setMeta(Replica.restoredKey, [], in: db)
      try store.records.setMeta(Self.lastSyncKey, now, in: db)
    }
    replica.refuseLocalWrites(nil)
    return report
  }

  /// After an upstream's rollback: pushes every record written by this node or by a node enrolled
  /// below it (their ids are in the version vectors).
  func pushAll(options: CallOptions, batchRecords: Int, into report: inout SyncReport) async throws {
    let ownScope = try store.read { db in try store.records.get(SyncCollections.node, nodeID, in: db)?.scope } ?? ""
    let writers: Set<String> = try store.read { db in
      var ids: Set<String> = [nodeID]
      for record in try store.records.records(SyncCollections.node, limit: 100_000, in: db)
      where record.id != nodeID && !ownScope.isEmpty && RecordStore.inScope(record.scope, ownScope) {
        ids.insert(record.id)
      }
      return ids
    }
    var after: Int64 = 0
    while true {
      let (records, through) = try store.read { db -> ([StoredRecord], Int64) in
        let changes = try store.records.changes(after: after, inScope: "", limit: batchRecords, in: db)
        let mine = try changes.filter { record in
          guard !record.scope.isEmpty else { return false }
          return try ReplicationEncoding.decodeVector(record.version).entries.contains { writers.contains($0.node) }
        }
        return (mine, changes.last?.sequence ?? after)
      }
      guard through > after else { break }
      do {
        report.pushMerged += try await pushOnce(records, options: options)
        report.pushed += records.count
      } catch let error as RPCError where error.code == .permissionDenied && error.message.hasPrefix("push refused") {
        // A record carrying a write the rolled-back upstream no longer has (this node edited on
        // top of one of its lost writes) is refused, and with it the whole batch: the batch goes
        // again record by record, so only such records stay behind (the resync then drops them)
        // and the node is not cut off.
        for record in records {
          do {
            report.pushMerged += try await pushOnce([record], options: options)
            report.pushed += 1
          } catch let error as RPCError where error.code == .permissionDenied && error.message.hasPrefix("push refused") {
            report.refusedAfterRollback += 1
          }
        }
      }
      after = through
    }
  }

  /// One push of `records`; returns how many the upstream merged.
  private func pushOnce(_ records: [StoredRecord], options: CallOptions) async throws -> Int {
    var request = Eduhub_Sync_V1_PushRequest()
    request.nodeID = nodeID
    request.records = records.map(SyncService.wire)
    request.throughSequence = try pushedCursor()
    let response = try await Eduhub_Sync_V1_SyncService.Client(upstream).push(options: options) { writer in
      try await writer.write(request)
    }
    return Int(response.merged)
  }

  /// The records merged during pulls that must go up (their current versions).
  func mustPush() throws -> [StoredRecord] {
    try store.read { db in
      let list = String(decoding: try store.records.meta(Self.mustPushKey, in: db) ?? [], as: UTF8.self)
      var seen = Set<String>()
      var records: [StoredRecord] = []
      for line in list.split(separator: "\n") where seen.insert(String(line)).inserted {
        let parts = line.split(separator: "\t", maxSplits: 1)
        guard parts.count == 2, let record = try store.records.get(String(parts[0]), String(parts[1]), in: db),
          !record.scope.isEmpty
        else { continue }
        records.append(record)
      }
      return records
    }
  }

  func push(options: CallOptions, batchRecords: Int, into report: inout SyncReport) async throws {
    let merged = try mustPush()
    if !merged.isEmpty {
      let mergedUpstream = try await pushOnce(merged, options: options)
      try await store.write { [self] db in try store.records.setMeta(Self.mustPushKey, [], in: db) }
      report.pushed += merged.count
      report.pushMerged += mergedUpstream
    }
    var after = try pushedCursor()
    while true {
      let (records, through) = try pendingWrites(after: after, limit: batchRecords)
      guard through > after else { return }
      var request = Eduhub_Sync_V1_PushRequest()
      request.nodeID = nodeID
      request.records = records.map(SyncService.wire)
      request.throughSequence = through
      let response = try await Eduhub_Sync_V1_SyncService.Client(upstream).push(options: options) { writer in
        try await writer.write(request)
      }
      let acknowledged = Array(String(response.acknowledgedSequence).utf8)
      try await store.write { [self] db in
        try store.records.setMeta(Self.pushCursorKey, acknowledged, in: db)
        var ranges = PulledRanges(decoding: try store.records.meta(Self.pulledRangesKey, in: db) ?? [])
        ranges.drop(through: response.acknowledgedSequence)
        try store.records.setMeta(Self.pulledRangesKey, ranges.encoded, in: db)
      }
      report.pushed += records.count
      report.pushMerged += Int(response.merged)
      after = response.acknowledgedSequence
    }
  }

  /// Asks the upstream how it sees this node (needs the upstream to be reachable).
  public func handshake() async throws -> Eduhub_Sync_V1_HandshakeResponse {
    let token = try await authenticate()
    var request = Eduhub_Sync_V1_HandshakeRequest()
    request.nodeID = nodeID
    request.cursor = Data(try store.read { db in try store.records.meta(Self.pullCursorKey, in: db) } ?? [])
    return try await Eduhub_Sync_V1_SyncService.Client(upstream).handshake(
      request, options: CallOptions(timeout: .seconds(10), metadata: ["authorization": .string("Bearer " + token)]))
  }

  /// A node's sync state, for `eduhub status`.
  public struct Status: Sendable {
    public var lastSyncMs: Int64?
    public var pulledThrough: Int64?
    public var firstSyncDone: Bool
    public var pushedThrough: Int64
    public var pendingWrites: Int
    public var conflicts: Int
  }

  public func status() throws -> Status {
    let (last, cursor) = try store.read { db in
      (try store.records.meta(Self.lastSyncKey, in: db), try store.records.meta(Self.pullCursorKey, in: db))
    }
    let decoded = try cursor.map { try Eduhub_Sync_V1_PullCursor(serializedBytes: $0) }
    return Status(
      lastSyncMs: last.flatMap { Int64(String(decoding: $0, as: UTF8.self)) },
      pulledThrough: decoded.map { $0.snapshotDone ? $0.sequence : $0.snapshotSequence },
      firstSyncDone: decoded?.snapshotDone ?? false, pushedThrough: try pushedCursor(), pendingWrites: try pendingCount(),
      conflicts: try store.records.conflicts(limit: 100_000).count)
  }
}
