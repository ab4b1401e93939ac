import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Logging
import Testing

/// A node's database with a record store and a shipper, and what a writer committed to it.
private final class BackedUpStore {
  let directory: String
  let databaseKey = AEAD.makeKey()
  let backupKey = AEAD.makeKey()
  let database: EncryptedDatabase
  let store: RecordStore
  var backup: ContinuousBackup!
  var target: String { directory + "/target" }
  /// Wall-clock ms after each commit, by record number.
  var committedAt: [Int64] = []

  init(options: ContinuousBackup.Options = BackedUpStore.fastOptions) throws {
    directory = try temporaryDirectory()
    try KeyFile.create(at: directory + "/db.key", key: databaseKey)
    database = try EncryptedDatabase.open(path: directory + "/eduhub.db", key: .key(databaseKey), create: true)
    store = try RecordStore(database: database, collections: [people])
    _ = try BackupRestore.createTarget(at: directory + "/target", key: backupKey)
    backup = try startBackup(options: options)
  }

  func startBackup(options: ContinuousBackup.Options = BackedUpStore.fastOptions) throws -> ContinuousBackup {
    let keyFile = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/db.key")))
    return try ContinuousBackup.start(
      database: database, databaseKey: databaseKey, target: target, backupKey: backupKey,
      bundle: { [BackupBundleFile(path: "keys/db.key", contents: keyFile)] }, options: options, logger: Logger(label: "test"))
  }

  /// Small segments and frequent checkpoints, so a few hundred commits cross every boundary: many
  /// segments, checkpoints and restarts of the WAL.
  static var fastOptions: ContinuousBackup.Options {
    var options = ContinuousBackup.Options()
    options.interval = 0.01
    options.checkpointFrames = 40
    options.segmentFrames = 8
    return options
  }

  /// Commits records `range`, one transaction each.
  func write(_ range: Range<Int>, pause: Bool = true) throws {
    for i in range {
      try store.put([StoredRecord(collection: "people", id: Self.id(i), scope: "511700/511702", body: Self.body(i))])
      committedAt.append(Int64(Date().timeIntervalSince1970 * 1000))
      if pause && i % 7 == 0 { usleep(2000) }
    }
  }

  static func id(_ i: Int) -> String { "p" + String(format: "%05d", i) }
  static func body(_ i: Int) -> [UInt8] { person(secrets[i % secrets.count].name, secrets[i % secrets.count].id, "第\(i)条") }

  /// Restores to `point` into a new directory; returns the report and the record ids it holds, in order.
  func restore(_ point: BackupPoint) throws -> (RestoreReport, [String: [UInt8]]) {
    let node = directory + "/restore-\(UUID())"
    let report = try BackupRestore.restore(
      from: target, key: backupKey, to: point, into: node, databaseFile: "eduhub.db", databaseKeyFile: "keys/db.key")
    let restored = try EncryptedDatabase.open(path: node + "/eduhub.db", key: .keyFile(node + "/keys/db.key"))
    defer { try? restored.close() }
    let rows = try restored.read { db in
      try Row.fetchAll(db, sql: "SELECT id, body FROM record WHERE collection = 'people' AND deleted = 0")
    }
    var records: [String: [UInt8]] = [:]
    for row in rows { records[row["id"]] = [UInt8](row["body"] as Data) }
    return (report, records)
  }

  /// Whether `records` are exactly records 0..<count as written.
  static func exactly(_ count: Int, _ records: [String: [UInt8]]) -> Bool {
    records.count == count && (0..<count).allSatisfy { records[id($0)] == body($0) }
  }
}

@Suite("Backups: continuous shipping and point-in-time restore")
struct BackupTests {
  @Test("backup while a writer commits: every restored point holds exactly the commits up to it, record by record")
  func pointsInTime() throws {
    let node = try BackedUpStore()
    try node.write(0..<240)
    try node.database.close()  // ships the last frames

    let generations = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(generations.count == 1)
    #expect(generations.first?.firstTransaction == 0)
    #expect(generations.first?.lastTransaction == 240)
    #expect((generations.first?.segments ?? 0) > 20)

    // Transaction n is the n-th commit after the snapshot: exactly records 0..<n.
    for n in [0, 1, 2, 37, 119, 120, 239, 240] {
      let (report, records) = try node.restore(.transaction(Int64(n)))
      #expect(report.transaction == Int64(n))
      #expect(BackedUpStore.exactly(n, records), "transaction \(n): \(records.count) records")
    }
    let (latest, all) = try node.restore(.latest)
    #expect(latest.transaction == 240 && BackedUpStore.exactly(240, all))

    // A time: a prefix of the commits, holding every one committed well before it and none after it.
    for i in [30, 150] {
      let time = node.committedAt[i]
      let (_, records) = try node.restore(.time(time))
      let count = records.count
      #expect(BackedUpStore.exactly(count, records), "time point \(i) is not a prefix")
      #expect(count <= node.committedAt.filter { $0 <= time }.count)
      #expect(count >= node.committedAt.filter { $0 <= time - 1000 }.count)
    }

    // Outside what the target holds: a clear refusal, and nothing left behind.
    #expect(throws: StorageError.self) { try node.restore(.transaction(241)) }
    #expect(throws: StorageError.self) { try node.restore(.time(0)) }
  }

  @Test("a missing or changed segment, manifest line or snapshot is refused by name; points before a lost segment still restore")
  func tampering() throws {
    let node = try BackedUpStore()
    try node.write(0..<60)
    try node.database.close()
    let generation = try #require(try BackupRestore.verify(from: node.target, key: node.backupKey).first?.generation)
    let folder = node.target + "/" + generation
    let segment2 = folder + "/00000002.segment"
    let segment3 = folder + "/00000003.segment"
    let saved2 = try Data(contentsOf: URL(fileURLWithPath: segment2))
    let saved3 = try Data(contentsOf: URL(fileURLWithPath: segment3))

    // Missing: named, for restore and verify alike.
    try FileManager.default.removeItem(atPath: segment2)
    #expect(throws: StorageError.self) { try node.restore(.latest) }
    do { _ = try node.restore(.latest) } catch let error as StorageError { #expect(error.message.contains("00000002.segment")) }
    #expect(throws: StorageError.self) { try BackupRestore.verify(from: node.target, key: node.backupKey) }
    // A point inside segment 1 needs nothing after it.
    let (early, records) = try node.restore(.transaction(1))
    #expect(early.transaction == 1 && BackedUpStore.exactly(1, records))
    try saved2.write(to: URL(fileURLWithPath: segment2))

    // Changed: one byte.
    var changed = [UInt8](saved3)
    changed[changed.count / 2] ^= 1
    try Data(changed).write(to: URL(fileURLWithPath: segment3))
    do { _ = try node.restore(.latest); Issue.record("a changed segment restored") } catch let error as StorageError {
      #expect(error.message.contains("00000003.segment"))
    }
    try saved3.write(to: URL(fileURLWithPath: segment3))
    // Swapped: segment 2's bytes under segment 3's name.
    try saved2.write(to: URL(fileURLWithPath: segment3))
    #expect(throws: StorageError.self) { try node.restore(.latest) }
    try saved3.write(to: URL(fileURLWithPath: segment3))

    // A manifest line dropped.
    let manifestPath = folder + "/manifest"
    let manifest = try String(contentsOfFile: manifestPath, encoding: .utf8)
    var lines = manifest.split(separator: "\n")
    lines.remove(at: 3)
    try (lines.joined(separator: "\n") + "\n").write(toFile: manifestPath, atomically: true, encoding: .utf8)
    do { _ = try node.restore(.latest); Issue.record("a manifest with a line dropped was read") } catch let error as StorageError {
      #expect(error.message.contains("line 4"))
    }
    try manifest.write(toFile: manifestPath, atomically: true, encoding: .utf8)

    // A snapshot page changed.
    let snapshotPath = folder + "/snapshot"
    let snapshot = try Data(contentsOf: URL(fileURLWithPath: snapshotPath))
    var page = [UInt8](snapshot)
    page[5000] ^= 0x40
    try Data(page).write(to: URL(fileURLWithPath: snapshotPath))
    #expect(throws: StorageError.self) { try node.restore(.latest) }
    try snapshot.write(to: URL(fileURLWithPath: snapshotPath))

    // Another key opens nothing.
    #expect(throws: StorageError.self) { try BackupRestore.verify(from: node.target, key: AEAD.makeKey()) }
    // Intact again: it all restores.
    #expect(try BackupRestore.verify(from: node.target, key: node.backupKey).count == 1)
    #expect(BackedUpStore.exactly(60, try node.restore(.latest).1))
  }

  @Test("the target holds no plaintext: no SQLite header, no name or ID number")
  func noPlaintext() throws {
    let node = try BackedUpStore()
    try node.write(0..<120, pause: false)
    try node.database.close()
    var files: [String] = []
    let enumerator = FileManager.default.enumerator(atPath: node.target)
    while let file = enumerator?.nextObject() as? String {
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: node.target + "/" + file, isDirectory: &isDirectory), !isDirectory.boolValue {
        files.append(node.target + "/" + file)
      }
    }
    #expect(files.count > 10)
    #expect(leakedSecrets(in: files).isEmpty)
    for file in files {
      let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
      #expect(!contains(bytes, Array("SQLite format 3".utf8)), "\(file) holds a plaintext SQLite header")
    }
    // The database itself holds them (the scan would find them).
    #expect(BackedUpStore.exactly(120, try node.restore(.latest).1))
  }

  @Test("a shipper killed with SIGKILL mid-segment resumes without a gap: one generation, every printed commit restored")
  func killedShipper() throws {
    let directory = try temporaryDirectory()
    let path = directory + "/node.sqlite"
    let keyPath = directory + "/node.key"
    let backupKeyPath = directory + "/backup.key"
    let target = directory + "/target"
    try KeyFile.create(at: keyPath, key: AEAD.makeKey())
    try KeyFile.create(at: backupKeyPath, key: AEAD.makeKey())
    _ = try BackupRestore.createTarget(at: target, key: try KeyFile.read(from: backupKeyPath))
    var lastCommitted = 0
    for round in 0..<4 {
      lastCommitted = try runTortureUntilKilled(
        [path, keyPath, target, backupKeyPath], from: lastCommitted, until: lastCommitted + 60 + round * 23)
    }
    // The node comes back with its shipper, which ships what the killed one left, then stops cleanly.
    let database = try EncryptedDatabase.open(path: path, key: .keyFile(keyPath))
    _ = try ContinuousBackup.start(
      database: database, databaseKey: try KeyFile.read(from: keyPath), target: target, backupKey: try KeyFile.read(from: backupKeyPath),
      bundle: { [BackupBundleFile(path: "keys/db.key", contents: try [UInt8](Data(contentsOf: URL(fileURLWithPath: keyPath))))] },
      logger: Logger(label: "test"))
    let committedRows = try database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM log") } ?? 0
    try database.close()

    let backupKey = try KeyFile.read(from: backupKeyPath)
    let generations = try BackupRestore.verify(from: target, key: backupKey)
    #expect(generations.count == 1, "a gap started a new generation: \(generations.map(\.generation))")
    let restoredPath = directory + "/restored"
    _ = try BackupRestore.restore(
      from: target, key: backupKey, to: .latest, into: restoredPath, databaseFile: "node.sqlite", databaseKeyFile: "keys/db.key")
    let restored = try EncryptedDatabase.open(path: restoredPath + "/node.sqlite", key: .keyFile(restoredPath + "/keys/db.key"))
    defer { try? restored.close() }
    #expect(try restored.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
    let rows = try restored.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM log") } ?? 0
    #expect(rows == committedRows)
    let printed = try restored.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM log WHERE n / 100 <= ?", arguments: [lastCommitted]) }
    #expect(printed == lastCommitted * 20)
    #expect(lastCommitted >= 60)
  }

  @Test("a checkpoint the shipper did not make cannot slip a gap in: the shipper starts a new generation, the latest point holds everything")
  func outsideCheckpoint() throws {
    try checkOutsideCheckpoint(BackedUpStore())
  }

  @Test("an outside checkpoint the shipper's loop never saw is caught at the stop: the last frames are not lost")
  func outsideCheckpointAtStop() throws {
    // The loop never runs after the start: only the stop ships (as on a loaded machine whose
    // shipper thread was not scheduled between the checkpoint and the close).
    var options = BackedUpStore.fastOptions
    options.interval = 3600
    try checkOutsideCheckpoint(BackedUpStore(options: options))
  }

  /// Commits, a checkpoint the shipper did not make (an operator's tool empties the WAL behind its
  /// back), commits again, stops: two generations, and the latest point holds every record.
  fileprivate func checkOutsideCheckpoint(_ node: BackedUpStore) throws {
    try node.write(0..<50)
    try node.database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    try node.write(50..<100)
    try node.database.close()
    let generations = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(generations.count == 2)
    #expect(BackedUpStore.exactly(100, try node.restore(.latest).1))
  }

  @Test("another connection (an operator's CLI beside the node) cannot checkpoint while the shipper runs: nothing it commits is lost")
  func checkpointsClaimed() throws {
    // The loop never runs: only the stop ships, so an outside checkpoint and WAL restart between
    // two of its rounds could hide a commit (the shipper may follow a restart after its own start).
    var options = BackedUpStore.fastOptions
    options.interval = 3600
    let node = try BackedUpStore(options: options)
    let other = try RecordStore(
      database: EncryptedDatabase.open(path: node.directory + "/eduhub.db", key: .key(node.databaseKey)), collections: [people])
    func record(_ i: Int) -> StoredRecord {
      StoredRecord(collection: "people", id: BackedUpStore.id(i), scope: "511700/511702", body: BackedUpStore.body(i))
    }
    func checkpoint(_ database: EncryptedDatabase) throws -> Int {
      try database.writeWithoutTransaction { db in try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")?[0] as Int? } ?? -1
    }
    try other.put([record(0)])
    #expect(try checkpoint(other.database) == 1, "busy: the shipper holds the checkpoints")
    try other.put([record(1)])
    try node.database.close()
    // The shipper is gone, and with it the claim: the other connection checkpoints again.
    #expect(try checkpoint(other.database) == 0)
    try other.database.close()
    // One unbroken generation, and each commit a point of its own: the first one too, which an
    // outside checkpoint and restart would have hidden (the second rewrote its page, so only the
    // point after the first shows it).
    let generations = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(generations.count == 1)
    let last = try #require(generations.last).lastTransaction
    #expect(BackedUpStore.exactly(1, try node.restore(.transaction(last - 1)).1))
    #expect(BackedUpStore.exactly(2, try node.restore(.latest).1))
  }

  @Test("a claim file removed behind the shipper's back is claimed again, in a new generation; every commit restores")
  func removedClaimFile() throws {
    let node = try BackedUpStore()
    let claimFile = node.directory + "/eduhub.db-shipper"
    try node.write(0..<10)
    try FileManager.default.removeItem(atPath: claimFile)
    let end = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: claimFile), Date() < end { Thread.sleep(forTimeInterval: 0.02) }
    #expect(FileManager.default.fileExists(atPath: claimFile), "the shipper never claimed again")
    let other = try EncryptedDatabase.open(path: node.directory + "/eduhub.db", key: .key(node.databaseKey))
    #expect(try other.writeWithoutTransaction { db in try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(PASSIVE)")?[0] as Int? } == 1)
    try other.close()
    try node.write(10..<20)
    try node.database.close()
    #expect(try BackupRestore.verify(from: node.target, key: node.backupKey).count == 2)
    #expect(BackedUpStore.exactly(20, try node.restore(.latest).1))
  }

  @Test("a claim file that is not a regular file (a FIFO planted there) fails closed: checkpoints wait, nothing hangs, no shipper starts")
  func plantedClaimFile() throws {
    let directory = try temporaryDirectory()
    let key = AEAD.makeKey()
    let database = try EncryptedDatabase.open(path: directory + "/eduhub.db", key: .key(key), create: true)
    defer { try? database.close() }
    let store = try RecordStore(database: database, collections: [people])
    try store.put([StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111"))])
    #expect(mkfifo(directory + "/eduhub.db-shipper", 0o600) == 0)
    let busy = try database.writeWithoutTransaction { db in try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")?[0] as Int? }
    #expect(busy == 1)
    let backupKey = AEAD.makeKey()
    _ = try BackupRestore.createTarget(at: directory + "/target", key: backupKey)
    #expect(throws: StorageError.self) {
      _ = try ContinuousBackup.start(
        database: database, databaseKey: key, target: directory + "/target", backupKey: backupKey, bundle: { [] },
        logger: Logger(label: "test"))
    }
    // Gone again: checkpoints are SQLite's.
    try FileManager.default.removeItem(atPath: directory + "/eduhub.db-shipper")
    #expect(try database.writeWithoutTransaction { db in try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")?[0] as Int? } == 0)
  }

  @Test("a target that fails for long gives the generation up and SQLite checkpoints again; a new generation starts when it works")
  func failingTarget() throws {
    var options = BackedUpStore.fastOptions
    options.maximumBacklogFrames = 120
    let node = try BackedUpStore(options: options)
    func autocheckpoint() throws -> Int? {
      try node.database.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") }
    }
    // By the clock, not by a count of tries: the shipper retries with a backoff of up to 2.56 s, and
    // under a full test run's load a round can come late.
    func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
      let end = Date().addingTimeInterval(60)
      while Date() < end {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
      }
      return false
    }
    try node.write(0..<20)
    #expect(try autocheckpoint() == 0)  // the shipper's
    // The off-site volume goes away, and the node keeps writing.
    let away = node.target + ".away"
    try FileManager.default.moveItem(atPath: node.target, toPath: away)
    var next = 20
    #expect(
      try eventually {
        try node.write(next..<(next + 5))
        next += 5
        return try autocheckpoint() == 4000
      }, "the generation was never given up")
    #expect(node.backup.status.failures > 0)
    // While the target stays away, a failed attempt at a new generation leaves checkpoints to SQLite.
    let failures = node.backup.status.failures
    #expect(try eventually { node.backup.status.failures >= failures + 2 })
    #expect(try autocheckpoint() == 4000)
    // Nothing was made where the target was: no backup on the node's own disk.
    #expect(!FileManager.default.fileExists(atPath: node.target))
    // The volume is back: a new generation starts, and checkpoints are the shipper's again.
    try FileManager.default.moveItem(atPath: away, toPath: node.target)
    #expect(try eventually { try BackupRestore.verify(from: node.target, key: node.backupKey).count == 2 })
    #expect(try autocheckpoint() == 0)
    try node.write(next..<(next + 10))
    next += 10
    try node.database.close()
    #expect(BackedUpStore.exactly(next, try node.restore(.latest).1))
  }

  @Test("a clean stop and start continue the generation; a database changed while stopped starts a new one")
  func restarts() throws {
    let node = try BackedUpStore()
    try node.write(0..<30)
    try node.database.close()
    let reopened = try EncryptedDatabase.open(path: node.directory + "/eduhub.db", key: .key(node.databaseKey))
    let store = try RecordStore(database: reopened, collections: [people])
    let keyFile = try [UInt8](Data(contentsOf: URL(fileURLWithPath: node.directory + "/db.key")))
    func ship() throws {
      _ = try ContinuousBackup.start(
        database: reopened, databaseKey: node.databaseKey, target: node.target, backupKey: node.backupKey,
        bundle: { [BackupBundleFile(path: "keys/db.key", contents: keyFile)] }, options: BackedUpStore.fastOptions, logger: Logger(label: "test"))
    }
    try ship()
    for i in 30..<40 {
      try store.put([StoredRecord(collection: "people", id: BackedUpStore.id(i), scope: "511700/511702", body: BackedUpStore.body(i))])
    }
    try reopened.close()
    #expect(try BackupRestore.verify(from: node.target, key: node.backupKey).count == 1)
    #expect(BackedUpStore.exactly(40, try node.restore(.latest).1))

    // Written while no shipper ran, and checkpointed into the database file: the next start cannot
    // prove the run unbroken. (Writes still in the WAL would simply be shipped from its first frame.)
    let offline = try EncryptedDatabase.open(path: node.directory + "/eduhub.db", key: .key(node.databaseKey))
    let offlineStore = try RecordStore(database: offline, collections: [people])
    for i in 40..<45 {
      try offlineStore.put([StoredRecord(collection: "people", id: BackedUpStore.id(i), scope: "511700/511702", body: BackedUpStore.body(i))])
    }
    try offline.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    try offline.close()
    let again = try EncryptedDatabase.open(path: node.directory + "/eduhub.db", key: .key(node.databaseKey))
    _ = try ContinuousBackup.start(
      database: again, databaseKey: node.databaseKey, target: node.target, backupKey: node.backupKey,
      bundle: { [BackupBundleFile(path: "keys/db.key", contents: keyFile)] }, options: BackedUpStore.fastOptions, logger: Logger(label: "test"))
    try again.close()
    let generations = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(generations.count == 2)
    #expect(BackedUpStore.exactly(45, try node.restore(.latest).1))
    // The first generation still restores its own last point.
    #expect(BackedUpStore.exactly(40, try node.restore(.transaction(generations[0].lastTransaction)).1))
  }

  @Test("restore drills are recorded, signed and chained; a failed one is recorded too")
  func drills() throws {
    let node = try BackedUpStore()
    try node.write(0..<20)
    try node.database.close()
    let record = try BackupDrill.run(from: node.target, key: node.backupKey, databaseFile: "eduhub.db", databaseKeyFile: "keys/db.key")
    #expect(record.result == "ok" && record.transaction == 20 && record.records == 20)
    _ = try BackupDrill.run(from: node.target, key: node.backupKey, databaseFile: "eduhub.db", databaseKeyFile: "keys/db.key")
    let publicKey = try #require(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: node.target + "/backup.json"))) as? [String: Any])["drillPublicKey"] as? String
    var records = try BackupDrill.records(from: node.target, publicKey: publicKey)
    #expect(records.count == 2 && records.allSatisfy(\.valid))
    #expect(try BackupDrill.records(from: node.target, key: node.backupKey).allSatisfy(\.valid))
    // Without a pinned key nothing is taken on backup.json's word.
    #expect(throws: StorageError.self) { try BackupDrill.records(from: node.target) }

    // A failing restore is evidence too.
    let generation = try #require(try BackupRestore.verify(from: node.target, key: node.backupKey).first?.generation)
    try FileManager.default.removeItem(atPath: node.target + "/" + generation + "/00000001.segment")
    #expect(throws: StorageError.self) {
      try BackupDrill.run(from: node.target, key: node.backupKey, databaseFile: "eduhub.db", databaseKeyFile: "keys/db.key")
    }
    records = try BackupDrill.records(from: node.target, publicKey: publicKey)
    #expect(records.count == 3 && records.last?.record.result == "failed" && records.allSatisfy(\.valid))

    // A record edited (a failure turned into a success) no longer verifies.
    let path = node.target + "/drills"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    try text.replacingOccurrences(of: "\"result\":\"failed\"", with: "\"result\":\"ok\"").write(toFile: path, atomically: true, encoding: .utf8)
    #expect(try BackupDrill.records(from: node.target, publicKey: publicKey).last?.valid == false)
  }

  @Test("retention prunes whole generations, keeping every point inside the window restorable")
  func retention() throws {
    var options = BackedUpStore.fastOptions
    options.snapshotEvery = 0.3
    let node = try BackedUpStore(options: options)
    var starts: [Int64] = []
    for round in 0..<3 {
      try node.write((round * 10)..<(round * 10 + 10))
      Thread.sleep(forTimeInterval: 0.5)
      starts.append(Int64(Date().timeIntervalSince1970 * 1000))
    }
    try node.database.close()
    let before = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(before.count >= 3)
    let day: Int64 = 86_400_000
    // A window opening after the second generation began: only what is older than it goes.
    let secondStart = before[1].firstTimeMs
    let pruned = try BackupRestore.prune(from: node.target, key: node.backupKey, retentionDays: 30, nowMs: secondStart + 30 * day + 1)
    #expect(pruned == [before[0].generation])
    let after = try BackupRestore.verify(from: node.target, key: node.backupKey)
    #expect(after.map(\.generation) == Array(before.dropFirst().map(\.generation)))
    #expect(BackedUpStore.exactly(30, try node.restore(.latest).1))
    // Nothing inside the window is lost: the oldest point left is where the window opens.
    #expect(try BackupRestore.prune(from: node.target, key: node.backupKey, retentionDays: 30, nowMs: secondStart + 30 * day - 1).isEmpty)
  }
}

@Suite("Backups of databases larger than the page cache")
struct LargeBackupTests {
  @Test("an online snapshot of a database larger than the copy's page cache (pages spilled mid-copy) restores intact")
  func largeSnapshot() throws {
    let directory = try temporaryDirectory()
    let key = AEAD.makeKey()
    let database = try EncryptedDatabase.open(path: directory + "/eduhub.db", key: .key(key), create: true)
    try database.write { db in
      try db.execute(sql: "CREATE TABLE filler (id INTEGER PRIMARY KEY, pad BLOB)")
      for id in 0..<12_000 { try db.execute(sql: "INSERT INTO filler (id, pad) VALUES (?, randomblob(3000))", arguments: [id]) }
    }
    let keyFile = try [UInt8](Data(key.withUnsafeBytes { Array($0) }))
    let backupKey = AEAD.makeKey()
    let (generation, bytes) = try database.backUp(
      to: directory + "/target", key: backupKey, bundle: [BackupBundleFile(path: "keys/db.key", contents: keyFile)])
    try database.close()
    #expect(bytes > 40 << 20)
    #expect(try BackupRestore.verify(from: directory + "/target", key: backupKey).map(\.generation) == [generation])
    let report = try BackupRestore.restore(
      from: directory + "/target", key: backupKey, to: .latest, into: directory + "/restored", databaseFile: "eduhub.db",
      databaseKeyFile: "keys/db.key")
    #expect(report.pages * 4096 == Int(bytes))
    let restored = try EncryptedDatabase.open(path: directory + "/restored/eduhub.db", key: .key(key))
    #expect(try restored.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM filler") } == 12_000)
    try restored.close()
  }
}
