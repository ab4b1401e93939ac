import EduHubCrypto
import Foundation
import GRDB
import Logging
import Synchronization

/// Ships every committed transaction of a node's database to a backup target within a second, from
/// inside the node.
///
/// What it ships are WAL frames, read from the WAL file as SQLite wrote them (decrypted with the
/// database key, sealed again with the backup key): every table, every transaction, exactly, with no
/// per-table code to forget a table. It runs in the node's process because only there can it own
/// checkpointing: the node's writer stops checkpointing on its own (`wal_autocheckpoint = 0`) and the
/// shipper checkpoints with the node's writer held, right after shipping every frame. A frame is
/// therefore never copied into the database, and the WAL never restarted over it, before it is on
/// the target. (A shipper in another process, as Litestream is, races the node's checkpoints; that
/// race is where missing-segment restores come from.)
///
/// Other processes that open the node beside it (the operator's CLI) must not checkpoint either:
/// while a generation runs, the shipper holds a ``CheckpointClaim`` and the encrypting VFS makes
/// their checkpoints fail busy.
///
/// Whenever the run of transactions cannot be proven unbroken (another process checkpointed the WAL,
/// the node ran without the shipper, the target lost its place), a new generation starts with a
/// fresh snapshot; nothing is ever shipped across a gap. Generations also start on a schedule, so
/// that old ones can be pruned whole once every point inside the retention window is restorable
/// without them.
public final class ContinuousBackup: Sendable {
  /// How it ships, checkpoints and keeps.
  public struct Options: Sendable {
    /// Days every point stays restorable.
    public var retentionDays: Int = 30
    /// Seconds after which a new generation (a fresh snapshot) starts.
    public var snapshotEvery: Double = 86_400
    /// Seconds between looks at the WAL.
    public var interval: Double = 0.2
    /// Shipped frames after which the shipper checkpoints (as SQLite's default of 1,000 pages would,
    /// scaled to the node's 4,000).
    public var checkpointFrames: Int = 4000
    /// Frames a segment holds at most (a transaction is never split, so one may hold more).
    public var segmentFrames: Int = 2048
    /// Unshipped WAL frames (1 GiB) past which, while the target fails, the generation is given up
    /// so that the node can checkpoint its WAL again.
    public var maximumBacklogFrames: Int = 262_144

    public init() {}
  }

  /// What the shipper has done, for metrics and `status`.
  public struct Status: Sendable {
    /// When the last segment became durable on the target (ms since the epoch).
    public var lastSegmentMs: Int64?
    /// The last transaction number shipped.
    public var lastTransaction: Int64 = -1
    public var segments: Int = 0
    /// Rounds that failed (each is logged with its error).
    public var failures: Int = 0
    /// How long the last checkpoint took (s).
    public var lastCheckpointSeconds: Double?
  }

  /// A segment just made durable (for benchmarks measuring the lag).
  public struct Shipped: Sendable {
    public var durableMs: Int64
    public var transaction: Int64
  }

  // Touched only inside `state`'s lock (the reader's scratch buffer included).
  private struct State: @unchecked Sendable {
    var target: BackupTarget
    let reader: WALReader
    var generation: String?
    var manifest: SealedLog<BackupManifestEntry>?
    var cursor = WALCursor.adoptNext
    var transaction: Int64 = -1
    var segmentIndex = 0
    var generationStartMs: Int64 = 0
    var lastPruneMs: Int64 = 0

    /// Whether every committed frame of the WAL is shipped (nothing committed after the cursor).
    func everythingShipped() throws -> Bool {
      try reader.committedFrames(after: cursor, keep: false).cursor.frames == cursor.frames
    }
  }

  private struct Discontinuity: Error {}

  private let database: EncryptedDatabase
  private let bundle: @Sendable () throws -> [BackupBundleFile]
  private let options: Options
  private let logger: Logger
  private let state: Mutex<State>
  private let statusBox = Mutex(Status())
  private let stopped = Mutex(false)
  private let done = DispatchSemaphore(value: 0)
  /// Signalled at the stop so the loop does not sleep out its interval before the database closes.
  private let wake = DispatchSemaphore(value: 0)
  private let watch: WALRestartWatch
  private let onShipped: (@Sendable (Shipped) -> Void)?
  /// The target's lock, held while the shipper runs.
  private let lock: Int32
  /// The claim on the database's checkpoints, held while a generation runs (let go when one is
  /// given up, so that other processes checkpoint again as SQLite does).
  private let claim = Mutex<CheckpointClaim?>(nil)

  /// The shipper's status now.
  public var status: Status { statusBox.withLock { $0 } }

  /// Starts shipping `database` to the target at `directory` (created if new): resumes the last
  /// generation where it can be proven unbroken, else begins one (taking a snapshot while the node
  /// serves). Call before the node takes writes where possible; `database.close()` ships the last
  /// frames and records a clean stop.
  /// - Parameters:
  ///   - databaseKey: the database's key (the WAL's pages are encrypted with it).
  ///   - backupKey: the backup key (never the database key).
  ///   - bundle: the node's own files to keep with each snapshot.
  public static func start(
    database: EncryptedDatabase, databaseKey: SecretBytes, target directory: String, backupKey: SecretBytes,
    bundle: @escaping @Sendable () throws -> [BackupBundleFile], options: Options = Options(), logger: Logger,
    onShipped: (@Sendable (Shipped) -> Void)? = nil
  ) throws -> ContinuousBackup {
    guard !databaseKey.isEqual(to: backupKey) else {
      throw StorageError(.rejected, "the backup key must not be the database key")
    }
    let target = try BackupTarget(directory: directory, key: backupKey, create: false)
    let lock = try target.lock()
    let backup = ContinuousBackup(
      database: database, reader: WALReader(databasePath: database.path, key: databaseKey), target: target, bundle: bundle,
      options: options, logger: logger, onShipped: onShipped, lock: lock)
    // From now on only the shipper checkpoints (see the type's comment).
    do {
      try database.writeWithoutTransaction { db in
        try backup.claimCheckpoints(db)
        backup.watch.install(db)
      }
      try backup.resumeOrBegin()
    } catch {
      Glibc.close(lock)
      backup.returnCheckpoints()
      throw error
    }
    database.beforeClose { backup.finish() }
    let thread = Thread { backup.loop() }
    thread.name = "eduhub-backup"
    thread.start()
    return backup
  }

  private init(
    database: EncryptedDatabase, reader: WALReader, target: BackupTarget, bundle: @escaping @Sendable () throws -> [BackupBundleFile],
    options: Options, logger: Logger, onShipped: (@Sendable (Shipped) -> Void)?, lock: Int32
  ) {
    self.lock = lock
    self.database = database
    self.bundle = bundle
    self.options = options
    self.logger = logger
    self.onShipped = onShipped
    self.state = Mutex(State(target: target, reader: reader))
    self.watch = WALRestartWatch(databasePath: database.path)
  }

  // MARK: The loop

  private func loop() {
    var failures = 0
    while !stopped.withLock({ $0 }) {
      let pause = failures == 0 ? options.interval : min(30, options.interval * Double(1 << min(failures, 8)))
      _ = wake.wait(timeout: .now() + pause)
      if stopped.withLock({ $0 }) { break }
      do {
        try round()
        failures = 0
      } catch {
        failures += 1
        let message = (error as? StorageError)?.message ?? "\(error)"
        statusBox.withLock { $0.failures += 1 }
        logger.error("backup shipping failed; retrying", metadata: ["error": "\(message)", "failures": "\(failures)"])
        abandonIfTooFarBehind()
      }
    }
    done.signal()
  }

  /// While the target fails, the WAL cannot be checkpointed and grows. Past
  /// `Options.maximumBacklogFrames` (1 GiB) the node comes first: the generation is given up, SQLite
  /// checkpoints the WAL on its own again, and a new generation starts once the target works.
  private func abandonIfTooFarBehind() {
    let (walFrames, shipped, generation) = state.withLock { state in
      (state.reader.sizeInFrames(), state.cursor.frames, state.generation)
    }
    guard generation != nil, walFrames - shipped > options.maximumBacklogFrames else { return }
    state.withLock { state in
      state.generation = nil
      state.manifest = nil
    }
    // Until a new generation starts, SQLite checkpoints the WAL itself again, as without a shipper,
    // here and in other processes.
    returnCheckpoints()
    logger.critical(
      "backup: the target has failed too long; the generation is given up and a new one starts when it works",
      metadata: ["generation": "\(generation ?? "")", "frames": "\(walFrames - shipped)"])
  }

  /// One round: ship what is committed, checkpoint when the WAL is long, start a generation when due,
  /// prune what retention no longer needs.
  private func round() throws {
    let now = BackupClock.nowMs()
    let due = state.withLock { state in
      state.generation == nil || Double(now - state.generationStartMs) / 1000 >= options.snapshotEvery
    }
    if due {
      try beginGeneration(reason: "scheduled")
    } else if claim.withLock({ $0.map { !$0.isInPlace(databasePath: database.path) } ?? false }) {
      // Removed or replaced (an operator cleaning the directory): other processes may have
      // checkpointed since, unseen. A new claim and a new generation.
      releaseCheckpoints()
      try beginGeneration(reason: "the checkpoint claim file was removed")
    }
    guard try shipOrBeginGeneration() else { return }
    if state.withLock({ $0.cursor.frames }) >= options.checkpointFrames {
      try checkpoint()
    }
    if now - state.withLock({ $0.lastPruneMs }) > 3_600_000 {
      try prune(nowMs: now)
    }
  }

  // MARK: Generations

  private func resumeOrBegin() throws {
    let resumed: Bool = try state.withLock { state in
      guard let generation = state.target.generations.last else { return false }
      let manifest: SealedLog<BackupManifestEntry>
      do { manifest = try state.target.manifest(generation) } catch {
        logger.warning("backup: the last generation's manifest does not verify; starting a new one", metadata: ["generation": "\(generation)"])
        return false
      }
      guard let first = manifest.entries.first, let last = manifest.entries.last, var cursor = last.cursor,
        Double(BackupClock.nowMs() - first.timeMs) / 1000 < options.snapshotEvery
      else { return false }
      if last.kind == .stop {
        guard let size = last.databaseBytes, let modified = last.databaseModifiedNs, let now = Self.fileState(database.path), now == (size, modified) else {
          logger.notice("backup: the database changed while the node was stopped; starting a new generation")
          return false
        }
        cursor = .adoptNext
      }
      if let header = try state.reader.header() {
        guard cursor.continues(into: header) != nil, try state.reader.stillHolds(cursor) else {
          logger.notice("backup: the WAL no longer continues the last generation; starting a new one")
          return false
        }
      } else if !cursor.adopt {
        logger.notice("backup: the WAL was emptied outside the shipper; starting a new generation")
        return false
      }
      state.generation = generation
      state.manifest = manifest
      state.cursor = cursor
      state.transaction = last.transaction
      state.segmentIndex = manifest.entries.compactMap(\.index).max() ?? 0
      state.generationStartMs = first.timeMs
      return true
    }
    if resumed {
      let generation = state.withLock { $0.generation }
      logger.info("backup: resuming generation", metadata: ["generation": "\(generation ?? "")"])
      // Ship what the last run left and checkpoint: a checkpoint it made but did not live to record
      // must not read as someone else's when the WAL restarts.
      try checkpoint()
    } else {
      try beginGeneration(reason: "start")
    }
  }

  private func beginGeneration(reason: String) throws {
    do {
      try makeGeneration(reason: reason)
    } catch {
      // With no generation (given up, or none yet) checkpoints must stay SQLite's while the target
      // fails, or the WAL grows without bound: the attempt turned them off first.
      if state.withLock({ $0.generation == nil }) { returnCheckpoints() }
      throw error
    }
  }

  private func makeGeneration(reason: String) throws {
    let started = Date()
    // With the node's writer held and SQLite's write lock too (another process, say the operator's
    // CLI, may commit beside the node), nothing commits: the snapshot's read transaction and the
    // WAL's end seen here are the same point.
    let (snapshot, cursor, pointMs): (DatabaseSnapshot, WALCursor, Int64) = try database.writeWithoutTransaction { db in
      // Checkpoints are the shipper's again (they were SQLite's if a generation was given up).
      try claimCheckpoints(db)
      watch.install(db)
      return try database.withWriteLockHeld {
        var cursor = try state.withLock { state in
          try state.reader.header().map { try state.reader.committedFrames(after: WALCursor(start: $0), keep: false).cursor }
        } ?? WALCursor.adoptNext
        // Everything up to here is in the snapshot: a restart of the WAL loses nothing shipped or not.
        cursor.restartAllowed = true
        watch.arm(cursor)
        return (try database.pool.makeSnapshot(), cursor, BackupClock.nowMs())
      }
    }
    let generation = BackupTarget.newGenerationName()
    let files = try bundle()
    let (manifest, transaction): (SealedLog<BackupManifestEntry>, Int64) = try state.withLock { state in
      let transaction = max(state.transaction, try state.target.lastTransaction()) + 1
      let manifest = try state.target.beginGeneration(generation, from: snapshot, bundle: files, transaction: transaction, cursor: cursor, pointMs: pointMs)
      return (manifest, transaction)
    }
    state.withLock { state in
      state.generation = generation
      state.manifest = manifest
      state.cursor = cursor
      state.transaction = transaction
      state.segmentIndex = 0
      state.generationStartMs = manifest.entries.first?.timeMs ?? BackupClock.nowMs()
    }
    statusBox.withLock { $0.lastTransaction = transaction }
    logger.notice(
      "backup: new generation", metadata: [
        "generation": "\(generation)", "reason": "\(reason)", "transaction": "\(transaction)",
        "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))",
      ])
  }

  /// Makes checkpoints the shipper's, with the writer `db` held: takes the claim (once), marks the
  /// writer as its holder (waiting out a checkpoint begun elsewhere before it), then turns the
  /// writer's own checkpoints off.
  private func claimCheckpoints(_ db: Database) throws {
    try claim.withLock { claim in
      if claim == nil { claim = try CheckpointClaim.take(databasePath: database.path) }
    }
    try CheckpointClaim.becomeOwner(db)
    try EncryptedDatabase.autocheckpoint(false, db)
  }

  /// Hands checkpoints back to SQLite, on the node's writer and in other processes (the inverse of
  /// `claimCheckpoints`).
  private func returnCheckpoints() {
    try? database.autocheckpoint(true)
    releaseCheckpoints()
  }

  /// Lets the claim go (other processes checkpoint again).
  private func releaseCheckpoints() {
    claim.withLock { claim in
      claim?.release()
      claim = nil
    }
  }

  // MARK: Shipping

  /// Ships every committed frame after the cursor.
  /// - Throws: `Discontinuity` if the WAL no longer continues the generation.
  private func ship() throws {
    try state.withLock { state in
      guard state.manifest != nil else { return }
      guard let header = try state.reader.header() else { return }
      let restarts = state.cursor.adopt || header.salt1 != state.cursor.salt1 || header.salt2 != state.cursor.salt2
      guard let cursor = state.cursor.continues(into: header), try state.reader.stillHolds(cursor),
        !restarts || watch.mayFollow(into: header)
      else {
        throw Discontinuity()
      }
      state.cursor = cursor
      while true {
        let (frames, next) = try state.reader.committedFrames(after: state.cursor, limit: options.segmentFrames)
        if frames.isEmpty { break }
        try writeSegment(frames, cursor: next, state: &state)
      }
      if !state.cursor.restartAllowed && !state.cursor.adopt { watch.disarm() }
    }
  }

  /// Ships, or begins a new generation if the WAL was checkpointed outside the shipper since its
  /// last round (the frames after the cursor are in the database now, not in the WAL: a new
  /// generation's snapshot holds them). Returns whether it shipped.
  @discardableResult
  private func shipOrBeginGeneration() throws -> Bool {
    do {
      try ship()
      return true
    } catch is Discontinuity {
      try beginGeneration(reason: "the WAL was checkpointed outside the shipper")
      return false
    }
  }

  private func writeSegment(_ frames: [WALFrame], cursor: WALCursor, state: inout State) throws {
    let now = BackupClock.nowMs()
    let first = state.transaction + 1
    var transaction = state.transaction
    let bodySize = state.target.info.pageSize - BackupSegment.reserve
    var segmentFrames: [BackupSegment.Frame] = []
    segmentFrames.reserveCapacity(frames.count)
    for frame in frames {
      if frame.commitSize != 0 { transaction += 1 }
      segmentFrames.append(
        BackupSegment.Frame(
          pageNumber: frame.pageNumber, commitSize: frame.commitSize, timeMs: frame.commitSize != 0 ? now : 0,
          body: frame.page[0..<bodySize]))
    }
    let index = state.segmentIndex + 1
    let generation = state.generation ?? ""
    let segment = BackupSegment(
      header: BackupSegment.Header(generation: generation, index: index, firstTransaction: first, frames: frames.count), frames: segmentFrames)
    let bytes = try segment.sealed(key: state.target.keys.segment, pageSize: state.target.info.pageSize)
    let file = BackupSegment.fileName(index)
    try BackupTarget.writeFile(state.target.path(generation, file), bytes: bytes)
    try state.manifest!.append(
      BackupManifestEntry(
        kind: .segment, timeMs: now, transaction: transaction, cursor: cursor, file: file,
        digest: Hex.encode(KeyedHash.digest(bytes)), bytes: Int64(bytes.count), index: index, frames: frames.count,
        firstTransaction: first, firstTimeMs: now))
    state.segmentIndex = index
    state.transaction = transaction
    state.cursor = cursor
    let durable = BackupClock.nowMs()
    statusBox.withLock {
      $0.lastSegmentMs = durable
      $0.lastTransaction = transaction
      $0.segments += 1
    }
    onShipped?(Shipped(durableMs: durable, transaction: transaction))
  }

  /// Ships, then, with the node's writer held and only if nothing committed is left unshipped (no
  /// target I/O under the writer: a slow target must not stall the node's writes), copies the WAL
  /// into the database; if every frame made it, the next write may restart the WAL, which the
  /// cursor then follows.
  private func checkpoint() throws {
    try ship()
    let started = Date()
    let checkpointed: WALCursor? = try database.writeWithoutTransaction { db in
      let (shipped, everything) = try state.withLock { state in (state.cursor, try state.everythingShipped()) }
      guard everything, let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)") else { return nil }
      let log: Int = row[1]
      let backfilled: Int = row[2]
      if backfilled > shipped.frames {
        // Another process committed between the check and the checkpoint (the node's writer does
        // not exclude it), and its frames are in the database now but not shipped: the WAL must
        // not restart over them unseen. A restart now starts a new generation instead.
        state.withLock { $0.cursor.restartAllowed = false }
        watch.disarm()
        return nil
      }
      guard log == backfilled, log == shipped.frames else { return nil }
      return state.withLock { state in
        state.cursor.restartAllowed = true
        watch.arm(state.cursor)
        return state.cursor
      }
    }
    let seconds = Date().timeIntervalSince(started)
    statusBox.withLock { $0.lastCheckpointSeconds = seconds }
    guard let checkpointed else { return }
    try state.withLock { state in
      let entry = BackupManifestEntry(kind: .checkpoint, timeMs: BackupClock.nowMs(), transaction: state.transaction, cursor: checkpointed)
      try state.manifest?.append(entry)
    }
  }

  /// Prunes generations no point inside the retention window needs: each one older than the newest
  /// generation that began before the window opened.
  private func prune(nowMs: Int64) throws {
    try state.withLock { state in
      state.lastPruneMs = nowMs
      let pruned = try state.target.pruneBeyond(retentionDays: options.retentionDays, nowMs: nowMs)
      if !pruned.isEmpty { logger.info("backup: pruned generations", metadata: ["generations": "\(pruned)"]) }
    }
  }

  /// Ships the last frames and, if the WAL can be emptied into the database, records a clean stop
  /// so the next start continues this generation. Called when the database closes (every write is
  /// done by then, so shipping a last straggler under the writer costs nobody).
  func finish() {
    guard !stopped.withLock({ let was = $0; $0 = true; return was }) else { return }
    wake.signal()
    done.wait()
    defer {
      releaseCheckpoints()
      Glibc.close(lock)
    }
    do {
      try shipOrBeginGeneration()
      try database.writeWithoutTransaction { db in
        WALRestartWatch.uninstall(db)
        try ship()
        let everything = try state.withLock { state in try state.manifest != nil && state.everythingShipped() }
        guard everything, let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") else { return }
        let busy: Int = row[0]
        let log: Int = row[1]
        let backfilled: Int = row[2]
        guard busy == 0, log == backfilled, let (size, modified) = Self.fileState(database.path) else { return }
        try state.withLock { state in
          var cursor = state.cursor
          cursor.adopt = true
          try state.manifest!.append(
            BackupManifestEntry(
              kind: .stop, timeMs: BackupClock.nowMs(), transaction: state.transaction, cursor: cursor, databaseBytes: size,
              databaseModifiedNs: modified))
        }
      }
      logger.info("backup: stopped with every transaction shipped")
    } catch {
      logger.error("backup: the last frames could not be shipped", metadata: ["error": "\(error)"])
    }
  }

  /// The size and modification time (ns) of the file at `path`.
  static func fileState(_ path: String) -> (Int64, Int64)? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return (Int64(info.st_size), Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
  }
}
