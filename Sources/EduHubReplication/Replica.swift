import EduHubStorage
import GRDB
import Synchronization

/// A node's replicated store: local writes are stamped (hybrid clock, version vector, per-field
/// stamps) and versions from other nodes are reconciled: dominated ones skipped, newer ones taken,
/// concurrent ones merged field by field with the losing values logged as conflicts.
///
/// The clock's last stamp is kept in the store, in the same transaction as the writes it stamped,
/// so a restarted node never reuses a stamp.
public final class Replica: Sendable {
  public let nodeID: String
  public let store: RecordStore
  public let clock: HybridLogicalClock

  static let clockKey = "replica.hlc"
  /// Set on a node restored from backup that has an upstream; cleared by its first sync.
  public static let restoredKey = "replica.restored"
  /// Why local writes are refused now, if they are.
  private let refusal = Mutex<String?>(nil)
  static let restoredRefusal =
    "this node was restored from a backup: it takes writes again once its first sync with its upstream has brought back what it lost"

  /// - Parameter wallClock: milliseconds since 1970 (injected by tests).
  public init(
    nodeID: String, store: RecordStore,
    wallClock: @escaping @Sendable () -> UInt64 = HybridLogicalClock.systemMilliseconds
  ) throws {
    self.nodeID = nodeID
    self.store = store
    let last = try store.database.read { db in try store.meta(Self.clockKey, in: db) }
    let resumed = last.map { bytes in
      HLCTimestamp(rawValue: bytes.reduce(0) { $0 << 8 | UInt64($1) })
    } ?? .zero
    self.clock = HybridLogicalClock(resumingAfter: resumed, wallClock: wallClock)
    // A restored node's version vectors are older than what its peers hold of its writes: a local
    // write now could reuse a counter they already saw (and be skipped as known) until a sync has
    // brought its own later writes back.
    if try store.database.read({ db in try store.meta(Self.restoredKey, in: db) })?.isEmpty == false {
      refusal.withLock { $0 = Self.restoredRefusal }
    }
  }

  /// Refuses local writes (with `reason`) or, with nil, takes them again.
  public func refuseLocalWrites(_ reason: String?) { refusal.withLock { $0 = reason } }

  /// Throws the refusal of local writes, if any (`write`, `stampNew` and `insert` all ask).
  private func acceptLocalWrites() throws {
    if let reason = refusal.withLock({ $0 }) { throw StorageError(.unavailable, reason) }
  }

  /// Marks the store as restored from backup (see `restoredKey`): local writes wait for a sync.
  public static func markRestored(_ store: RecordStore) throws {
    try store.database.write { db in try store.setMeta(restoredKey, [1], in: db) }
  }

  /// A local change to one record.
  public struct Write: Sendable {
    public var collection: String
    public var id: String
    public var scope: String
    /// The new protobuf body; nil deletes the record.
    public var body: [UInt8]?

    public init(collection: String, id: String, scope: String, body: [UInt8]?) {
      self.collection = collection
      self.id = id
      self.scope = scope
      self.body = body
    }
  }

  /// Applies local writes in one transaction: each changed field gets a fresh stamp, the record's
  /// vector counts one more write by this node.
  /// - Throws: ``StorageError`` or ``WireFieldsError`` (a body that is not protobuf); nothing is
  ///   written then.
  /// - Parameter deferIndexes: a bulk load (a seed): see ``RecordStore/put(_:in:absent:deferIndexes:)``;
  ///   the loader calls ``RecordStore/buildDeferredIndexes()`` when it is done.
  @discardableResult
  public func write(_ writes: [Write], deferIndexes: Bool = false) throws -> [StoredRecord] {
    var prior: [Bool] = []
    return try store.database.write { db in try write(writes, in: db, prior: &prior, deferIndexes: deferIndexes) }
  }

  /// `write` inside the caller's transaction (so a service can check and write atomically).
  @discardableResult
  public func write(_ writes: [Write], in db: Database) throws -> [StoredRecord] {
    var prior: [Bool] = []
    return try write(writes, in: db, prior: &prior)
  }

  /// `write`, also telling for each write whether its record was live before the call (one lookup
  /// per record serves both: bulk writers count inserts without reading each record again).
  @discardableResult
  public func write(_ writes: [Write], in db: Database, prior: inout [Bool], deferIndexes: Bool = false) throws -> [StoredRecord] {
    try acceptLocalWrites()
    prior.removeAll(keepingCapacity: true)
    prior.reserveCapacity(writes.count)
    do {
      var records: [StoredRecord] = []
      var absent: [Bool] = []
      var firstTime: Set<String> = []
      for write in writes {
        let existing = try store.get(write.collection, write.id, in: db)
        prior.append(existing.map { !$0.deleted } ?? false)
        if existing != nil { firstTime.insert(write.collection + "\u{0}" + write.id) }
        if existing == nil, let body = write.body, let numbers = Self.ascendingFieldNumbers(body) {
          // A new record whose fields are already in order (bulk inserts): every field is new, and
          // the body is already what joining its fields would give.
          var vector = VersionVector()
          try vector.increment(nodeID)
          let stamp = FieldStamp(time: clock.now(), node: nodeID, counter: vector[nodeID])
          records.append(
            StoredRecord(
              collection: write.collection, id: write.id, scope: write.scope, body: body,
              version: ReplicationEncoding.encode(vector),
              stamps: ReplicationEncoding.encode(stamp, forFields: numbers + [RecordVersion.deletionField])))
          // The store need not look for it either, unless the same id came earlier in this call.
          absent.append(firstTime.insert(write.collection + "\u{0}" + write.id).inserted)
          continue
        }
        let old = try existing.map { try WireFields(parsing: $0.body) } ?? WireFields()
        let new = try write.body.map { try WireFields(parsing: $0) } ?? WireFields()
        var vector = try existing.map { try ReplicationEncoding.decodeVector($0.version) } ?? VersionVector()
        var stamps = try existing.map { try ReplicationEncoding.decodeStamps($0.stamps) } ?? [:]
        try vector.increment(nodeID)
        let stamp = FieldStamp(time: clock.now(), node: nodeID, counter: vector[nodeID])
        for number in Set(old.fields.keys).union(new.fields.keys) where old[number] != new[number] {
          stamps[number] = stamp
        }
        let deleted = write.body == nil
        if deleted != (existing?.deleted ?? false) || existing == nil {
          stamps[RecordVersion.deletionField] = stamp
        }
        records.append(
          StoredRecord(
            collection: write.collection, id: write.id, scope: write.scope,
            body: deleted ? (existing?.body ?? []) : new.joined(), version: ReplicationEncoding.encode(vector),
            stamps: ReplicationEncoding.encode(stamps), deleted: deleted))
        absent.append(false)
        firstTime.insert(write.collection + "\u{0}" + write.id)
      }
      let sequences = try store.put(records, in: db, absent: absent, deferIndexes: deferIndexes)
      try saveClock(db)
      return zip(records, sequences).map { record, sequence in
        var record = record
        record.sequence = sequence
        return record
      }
    }
  }

  /// The field numbers of `body` if they never decrease (the order `WireFields.joined` writes);
  /// nil otherwise, or for a malformed body (the general path then reports it).
  static func ascendingFieldNumbers(_ body: [UInt8]) -> [Int]? {
    var numbers: [Int] = []
    var index = 0
    while index < body.count {
      guard let field = try? WireFields.nextField(body, &index), field.number > 0, field.number <= 536_870_911 else { return nil }
      if let last = numbers.last {
        guard field.number >= last else { return nil }
        if field.number == last { continue }
      }
      numbers.append(field.number)
    }
    return numbers
  }

  /// Records for writes that create records which cannot exist yet (their ids were just made
  /// unique), stamped now, outside any transaction: `insert(_:in:)` then only stores them, so a
  /// shared writer spends no time on them beyond SQLite's. Bodies must be protobuf with fields in
  /// ascending order (as SwiftProtobuf writes them).
  public func stampNew(_ writes: [Write]) throws -> [StoredRecord] {
    try acceptLocalWrites()
    return try writes.map { write in
      guard let body = write.body, let numbers = Self.ascendingFieldNumbers(body) else {
        throw StorageError(.rejected, "record \(write.collection)/\(write.id) is not a new, ordered protobuf body")
      }
      var vector = VersionVector()
      try vector.increment(nodeID)
      let stamp = FieldStamp(time: clock.now(), node: nodeID, counter: vector[nodeID])
      return StoredRecord(
        collection: write.collection, id: write.id, scope: write.scope, body: body,
        version: ReplicationEncoding.encode(vector),
        stamps: ReplicationEncoding.encode(stamp, forFields: numbers + [RecordVersion.deletionField]))
    }
  }

  /// Inserts records made by `stampNew` in the caller's transaction (a record that exists after
  /// all fails the write: ids are never reused).
  /// - Parameter deferIndexes: a bulk load (a seed): see ``RecordStore/put(_:in:absent:deferIndexes:)``.
  public func insert(_ records: [StoredRecord], in db: Database, deferIndexes: Bool = false) throws {
    try acceptLocalWrites()
    try store.put(records, in: db, absent: Array(repeating: true, count: records.count), deferIndexes: deferIndexes)
    try saveClock(db)
  }

  /// What applying remote versions did.
  public struct ApplyOutcome: Sendable, Hashable {
    public var skipped = 0
    public var fastForwarded = 0
    public var merged = 0
    public var conflicts = 0
    /// The records merged (collection, id): they now hold writes the sender lacks.
    public var mergedRecords: [MergedRecord] = []
  }

  /// A record a merge changed.
  public struct MergedRecord: Sendable, Hashable {
    public var collection: String
    public var id: String
  }

  /// Reconciles versions received from another node, in one transaction.
  /// - Throws: ``ClockError`` for stamps too far in the future, ``WireFieldsError`` for malformed
  ///   bodies or metadata, ``StorageError``; nothing is written then.
  @discardableResult
  public func apply(_ remote: [StoredRecord]) throws -> ApplyOutcome {
    try store.database.write { db in try apply(remote, in: db) }
  }

  /// `apply` inside the caller's transaction (so a sync cursor commits with the batch it covers).
  /// - Parameter deferIndexes: a bulk load (a first sync's walk): see ``RecordStore/put(_:in:absent:deferIndexes:)``.
  @discardableResult
  public func apply(_ remote: [StoredRecord], in db: Database, deferIndexes: Bool = false) throws -> ApplyOutcome {
    do {
      var outcome = ApplyOutcome()
      var writes: [StoredRecord] = []
      // Whether each write's record was not found here: the store then inserts it without looking
      // for it again (unless the same id came earlier in this batch).
      var absent: [Bool] = []
      var seen: Set<String> = []
      var pendingConflicts: [RecordStore.Conflict] = []
      for incoming in remote {
        // A record new here needs its stamps only for the clock (and checked): no map of them.
        _ = try ReplicationEncoding.decodeVector(incoming.version)
        if let newest = try ReplicationEncoding.newestStamp(incoming.stamps) { try clock.observe(newest.time) }
        let first = seen.insert(incoming.collection + "\u{0}" + incoming.id).inserted
        guard let local = try store.get(incoming.collection, incoming.id, in: db) else {
          writes.append(incoming)
          absent.append(first)
          outcome.fastForwarded += 1
          continue
        }
        switch try resolve(incoming, against: local) {
        case .skip:
          outcome.skipped += 1
        case .replace(let record):
          writes.append(record)
          absent.append(false)
          outcome.fastForwarded += 1
        case .merge(let record, let conflicts):
          writes.append(record)
          absent.append(false)
          outcome.merged += 1
          outcome.mergedRecords.append(MergedRecord(collection: incoming.collection, id: incoming.id))
          pendingConflicts += conflicts
        }
      }
      let sequences = try store.put(writes, in: db, absent: absent, deferIndexes: deferIndexes)
      let last = sequences.last ?? 0
      for var conflict in pendingConflicts {
        conflict.sequence = last
        try store.logConflict(conflict, in: db)
      }
      outcome.conflicts = pendingConflicts.count
      try saveClock(db)
      return outcome
    }
  }

  /// What applying one remote version over the stored one would store.
  public enum Resolution: Sendable {
    /// The remote version is already known: nothing changes.
    case skip
    /// The remote version follows the stored one: it is stored as it came.
    case replace(StoredRecord)
    /// Concurrent versions: their field-wise merge is stored, and the losing values logged.
    case merge(StoredRecord, conflicts: [RecordStore.Conflict])
  }

  /// Resolves `incoming` against `local` (the stored version) without writing: `apply` stores what
  /// this returns, and a push's write rules judge it, since a merge can store a record the remote
  /// version alone does not show (its fields beside the stored one's).
  public func resolve(_ incoming: StoredRecord, against local: StoredRecord) throws -> Resolution {
    let remoteVersion = try version(of: incoming)
    let localVersion = try version(of: local)
    switch remoteVersion.compare(localVersion) {
    case .equal, .before:
      return .skip
    case .after:
      return .replace(incoming)
    case .concurrent:
      let result = try Merge.merge(localVersion, remoteVersion)
      let remoteNewest = remoteVersion.stamps.values.max()
      let localNewest = localVersion.stamps.values.max()
      // The scope follows the version written last, so every node picks the same.
      let remoteIsNewer: Bool
      switch (remoteNewest, localNewest) {
      case let (remote?, local?): remoteIsNewer = local < remote
      case (_?, nil): remoteIsNewer = true
      default: remoteIsNewer = false
      }
      let merged = StoredRecord(
        collection: incoming.collection, id: incoming.id, scope: remoteIsNewer ? incoming.scope : local.scope, body: result.version.body,
        version: ReplicationEncoding.encode(result.version.vector),
        stamps: ReplicationEncoding.encode(result.version.stamps), deleted: result.version.deleted)
      let conflicts = result.conflicts.map { conflict in
        RecordStore.Conflict(
          collection: incoming.collection, recordID: incoming.id, field: conflict.field,
          losingValue: conflict.losingValue, losingStamp: ReplicationEncoding.encode([conflict.field: conflict.losingStamp]),
          winningStamp: ReplicationEncoding.encode([conflict.field: conflict.winningStamp]),
          localVersion: local.version, remoteVersion: incoming.version, sequence: 0)
      }
      return .merge(merged, conflicts: conflicts)
    }
  }

  func version(of record: StoredRecord) throws -> RecordVersion {
    RecordVersion(
      body: record.body, vector: try ReplicationEncoding.decodeVector(record.version),
      stamps: try ReplicationEncoding.decodeStamps(record.stamps), deleted: record.deleted)
  }

  private func saveClock(_ db: Database) throws {
    let raw = clock.last.rawValue
    try store.setMeta(Self.clockKey, (0..<8).reversed().map { UInt8(truncatingIfNeeded: raw >> (8 * $0)) }, in: db)
  }
}
