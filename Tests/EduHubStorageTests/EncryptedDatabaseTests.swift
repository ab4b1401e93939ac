import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The parent of this test process's directories, removed when the process exits (each run used
/// to leave a few hundred megabytes of databases in the temporary directory).
let testRoot: String = {
  let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-storage-tests-\(getpid())").path
  atexit {
    try? FileManager.default.removeItem(atPath: FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-storage-tests-\(getpid())").path)
  }
  return root
}()

/// A fresh directory for one test.
func temporaryDirectory() throws -> String {
  let url = URL(fileURLWithPath: testRoot).appendingPathComponent(UUID().uuidString)
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url.path
}

/// Rows with names and national ID numbers that must never appear in clear on disk.
let secrets = (0..<300).map { index in
  (name: "王芳学生\(index)号", id: "5117022010\(String(format: "%08d", index))")
}

func fillPeople(_ db: Database) throws {
  try db.execute(sql: "CREATE TABLE IF NOT EXISTS people (id INTEGER PRIMARY KEY, name TEXT, national_id TEXT)")
  for secret in secrets {
    try db.execute(sql: "INSERT INTO people (name, national_id) VALUES (?, ?)", arguments: [secret.name, secret.id])
  }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
  guard needle.count <= haystack.count else { return false }
  let first = needle[0]
  var index = 0
  while index <= haystack.count - needle.count {
    if haystack[index] == first, Array(haystack[index..<(index + needle.count)]) == needle { return true }
    index += 1
  }
  return false
}

/// A database of `secrets`, checkpointed into the main file and closed, ready to be damaged.
func closedDatabaseOfPeople() throws -> (path: String, key: SecretBytes) {
  let path = try temporaryDirectory() + "/node.sqlite"
  let key = AEAD.makeKey()
  let database = try EncryptedDatabase.open(path: path, key: .key(key), create: true)
  try database.write(fillPeople)
  try database.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
  try database.close()
  return (path, key)
}

/// Which of the secrets appear in clear in any of `files`.
func leakedSecrets(in files: [String]) -> [String] {
  let contents = files.compactMap { FileManager.default.contents(atPath: $0).map { [UInt8]($0) } }
  var leaked: [String] = []
  for secret in secrets.prefix(50) {
    for text in [secret.name, secret.id] where contents.contains(where: { contains($0, Array(text.utf8)) }) {
      leaked.append(text)
    }
  }
  return leaked
}

@Suite("The encrypted database file")
struct EncryptedDatabaseTests {
  @Test("no name or ID number appears in clear in the database, its WAL or journal; a plain file would show them")
  func noPlaintext() throws {
    let directory = try temporaryDirectory()
    let path = directory + "/node.sqlite"
    let database = try EncryptedDatabase.open(path: path, key: .key(AEAD.makeKey()), create: true)
    try database.write(fillPeople)
    // Before a checkpoint the rows live in the WAL; look there and in the main file.
    let files = [path, path + "-wal", path + "-journal", path + "-shm"]
    #expect(leakedSecrets(in: files).isEmpty)
    try database.write { db in try db.execute(sql: "UPDATE people SET name = name || '!'") }
    try database.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    #expect(leakedSecrets(in: files).isEmpty)
    #expect(try database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM people WHERE name LIKE '王芳%'") } == 300)
    try database.close()

    // The same rows in an unkeyed SQLite file are plainly visible: the check above can fail.
    let plain = directory + "/plain.sqlite"
    let queue = try DatabaseQueue(path: plain)
    try queue.write(fillPeople)
    try queue.close()
    #expect(!leakedSecrets(in: [plain]).isEmpty)
  }

  @Test("a bulk load raises the writer's cache and hands checkpoints to a thread of their own, then puts both back; checkpoints a shipper turned off stay off")
  func bulkLoad() throws {
    let database = try EncryptedDatabase.open(path: try temporaryDirectory() + "/node.sqlite", key: .key(AEAD.makeKey()), create: true)
    func settings() throws -> [Int] {
      try database.writeWithoutTransaction { db in
        [try Int.fetchOne(db, sql: "PRAGMA cache_size") ?? 0, try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") ?? 0]
      }
    }
    let before = try settings()
    let during = try database.bulkLoad(cacheMiB: 64, checkpointMiB: 128) {
      try database.write(fillPeople)
      return try settings()
    }
    #expect(during == [-64 * 1024, 0])
    #expect(try settings() == before)
    #expect(try database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM people") } == 300)
    try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }  // as a shipper does
    #expect(try database.bulkLoad { try settings() }[1] == 0)
    #expect(try settings()[1] == 0)
  }

  @Test("during a bulk load the WAL is checkpointed beside the writer and starts over at its limit, and is empty after; every row survives a reopen")
  func bulkLoadCheckpoints() throws {
    let directory = try temporaryDirectory()
    let key = AEAD.makeKey()
    let path = directory + "/node.sqlite"
    var database = try EncryptedDatabase.open(path: path, key: .key(key), create: true)
    try database.write { db in try db.execute(sql: "CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
    func walBytes() -> Int { ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0 }
    var largest = 0
    // 24 transactions of ~1 MiB each against a 2 MiB limit: without checkpoints the WAL would pass 24 MiB.
    try database.bulkLoad(cacheMiB: 8, checkpointMiB: 2) {
      for batch in 0..<24 {
        try database.write { db in
          for row in 0..<256 {
            try db.execute(sql: "INSERT INTO filler (id, body) VALUES (?, ?)", arguments: [batch * 256 + row, Data(repeating: UInt8(row), count: 4000)])
          }
        }
        largest = max(largest, walBytes())
      }
    }
    #expect(largest > 0)
    #expect(largest < 6 * 1024 * 1024, "the WAL grew to \(largest) bytes")
    // What the last background checkpoint left is copied at the end: the next opener reads no log.
    #expect(walBytes() == 0)
    try database.close()
    database = try EncryptedDatabase.open(path: path, key: .key(key))
    #expect(try database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM filler") } == 24 * 256)
    #expect(try database.read { try Int.fetchOne($0, sql: "PRAGMA integrity_check") == nil ? "" : String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
    try database.close()
  }

  @Test("a wrong key is refused as such, before any page is read")
  func wrongKey() throws {
    let path = try temporaryDirectory() + "/node.sqlite"
    let key = AEAD.makeKey()
    try EncryptedDatabase.open(path: path, key: .key(key), create: true).write(fillPeople)
    do {
      _ = try EncryptedDatabase.open(path: path, key: .key(AEAD.makeKey()))
      Issue.record("a wrong key opened the database")
    } catch let error as StorageError {
      #expect(error.code == .wrongKey)
    }
    #expect(try EncryptedDatabase.open(path: path, key: .key(key)).read { try Int.fetchOne($0, sql: "SELECT count(*) FROM people") } == 300)
  }

  @Test("a passphrase opens what it made, and only that")
  func passphrase() throws {
    let path = try temporaryDirectory() + "/node.sqlite"
    try EncryptedDatabase.open(path: path, key: .passphrase("县教育局 2026"), create: true, passphraseLimits: .owaspMinimum)
      .write(fillPeople)
    let reopened = try EncryptedDatabase.open(path: path, key: .passphrase("县教育局 2026"))
    #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM people") } == 300)
    #expect(throws: StorageError.self) { try EncryptedDatabase.open(path: path, key: .passphrase("guess")) }
  }

  @Test("one flipped byte in a page is reported as that page's corruption, never as wrong rows")
  func tamperedPage() throws {
    let (path, key) = try closedDatabaseOfPeople()
    // Flip one byte in the middle of page 3.
    let handle = try #require(FileHandle(forUpdatingAtPath: path))
    try handle.seek(toOffset: UInt64(2 * EncryptedDatabase.pageSize + 1000))
    let byte = try #require(try handle.read(upToCount: 1))
    try handle.seek(toOffset: UInt64(2 * EncryptedDatabase.pageSize + 1000))
    try handle.write(contentsOf: Data([byte[0] ^ 0x20]))
    try handle.close()
    do {
      let reopened = try EncryptedDatabase.open(path: path, key: .key(key))
      _ = try reopened.read { try Row.fetchAll($0, sql: "SELECT * FROM people") }
      Issue.record("a tampered page was read")
    } catch let error as StorageError {
      #expect(error.code == .corrupted)
      #expect(error.message.contains("page 3 does not authenticate"))
    }
  }

  @Test("a truncated file is reported as corrupted")
  func truncated() throws {
    let (path, key) = try closedDatabaseOfPeople()
    truncate(path, off_t(EncryptedDatabase.pageSize + EncryptedDatabase.pageSize / 2))
    do {
      let reopened = try EncryptedDatabase.open(path: path, key: .key(key))
      _ = try reopened.read { try Row.fetchAll($0, sql: "SELECT * FROM people") }
      Issue.record("a truncated file was read")
    } catch let error as StorageError {
      #expect(error.code == .corrupted)
    }
  }

  @Test("a file that is not ours is refused clearly")
  func notOurs() throws {
    let directory = try temporaryDirectory()
    let plain = directory + "/plain.sqlite"
    let queue = try DatabaseQueue(path: plain)
    try queue.write(fillPeople)
    try queue.close()
    do {
      _ = try EncryptedDatabase.open(path: plain, key: .key(AEAD.makeKey()))
      Issue.record("a plain file was opened as ours")
    } catch let error as StorageError {
      #expect(error.code == .notOurs)
    }
    #expect(throws: StorageError.self) { try EncryptedDatabase.open(path: directory + "/missing.sqlite", key: .key(AEAD.makeKey())) }
  }

  @Test("rekeying keeps every row; the old key no longer opens the file")
  func rekey() throws {
    let path = try temporaryDirectory() + "/node.sqlite"
    let old = AEAD.makeKey()
    let new = AEAD.makeKey()
    let database = try EncryptedDatabase.open(path: path, key: .key(old), create: true)
    try database.write(fillPeople)
    let before = try database.read { try Row.fetchAll($0, sql: "SELECT * FROM people ORDER BY id") }
    try database.close()
    try EncryptedDatabase.rekey(path: path, from: .key(old), to: .key(new))
    let reopened = try EncryptedDatabase.open(path: path, key: .key(new))
    #expect(try reopened.read { try Row.fetchAll($0, sql: "SELECT * FROM people ORDER BY id") } == before)
    #expect(try reopened.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
    try reopened.close()
    #expect(throws: StorageError.self) { try EncryptedDatabase.open(path: path, key: .key(old)) }
    #expect(leakedSecrets(in: [path, path + "-wal"]).isEmpty)
  }

  @Test("a writer killed with SIGKILL mid-transaction leaves a database that opens, checks ok and holds every commit")
  func killedWriter() async throws {
    let directory = try temporaryDirectory()
    let path = directory + "/node.sqlite"
    let keyPath = directory + "/node.key"
    try KeyFile.create(at: keyPath, key: AEAD.makeKey())
    var lastCommitted = 0
    for round in 0..<3 {
      // Let it commit a while, then kill it wherever it is.
      lastCommitted = try runTortureUntilKilled([path, keyPath], from: lastCommitted, until: lastCommitted + 40 + round * 17)

      let database = try EncryptedDatabase.open(path: path, key: .keyFile(keyPath))
      #expect(try database.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
      let committed = try database.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM log WHERE n / 100 <= ?", arguments: [lastCommitted]) }
      #expect(committed == lastCommitted * 20)
      try database.close()
    }
    #expect(lastCommitted >= 40)
  }
}

@Suite("The encrypted WAL after a torn write")
struct TornFrameTests {
  @Test("a WAL frame torn by a kill mid-write (its page half new, half an older frame's) ends the log there: every earlier commit opens")
  func tornLastFrame() throws {
    let directory = try temporaryDirectory()
    let key = AEAD.makeKey()
    let database = try EncryptedDatabase.open(path: directory + "/node.sqlite", key: .key(key), create: true)
    try database.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
    try database.write { try $0.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)") }
    // The table in the database file (SQLite drops the WAL of an empty one), the rows in the WAL.
    try database.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    for id in 1...10 {
      try database.write { try $0.execute(sql: "INSERT INTO t (id, v) VALUES (?, ?)", arguments: [id, "第\(id)行"]) }
    }
    // The files as a process killed now leaves them (the database stays open while they are copied).
    let crashed = try temporaryDirectory()
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) where !name.hasSuffix("-shm") {
      try FileManager.default.copyItem(atPath: directory + "/" + name, toPath: crashed + "/" + name)
    }
    try database.close()
    // The last frame (the last insert's commit) torn: the second half of its page is not what was sealed.
    let wal = FileHandle(forUpdatingAtPath: crashed + "/node.sqlite-wal")!
    let size = try wal.seekToEnd()
    let frame: UInt64 = 24 + UInt64(EncryptedDatabase.pageSize)
    let last = 32 + (size - 32) / frame * frame - frame
    try wal.seek(toOffset: last + 24 + 2048)
    try wal.write(contentsOf: Data(repeating: 0xA5, count: 2048))
    try wal.close()
    let reopened = try EncryptedDatabase.open(path: crashed + "/node.sqlite", key: .key(key))
    #expect(try reopened.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
    #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT max(id) FROM t") } == 9)
    try reopened.close()
  }
}

@Suite("The encrypted WAL under large transactions")
struct LargeTransactionTests {
  @Test("a transaction larger than the page cache (pages spilled and rewritten in the WAL) commits and reads back")
  func spilledTransaction() throws {
    let path = try temporaryDirectory() + "/node.sqlite"
    let key = AEAD.makeKey()
    let database = try EncryptedDatabase.open(path: path, key: .key(key), create: true)
    try database.write { db in
      // A tiny cache forces SQLite to spill pages to the WAL mid-transaction and, when it changes
      // them again, to overwrite those frames and rewrite the checksums after them.
      try db.execute(sql: "PRAGMA cache_size = 10")
      try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
      for round in 0..<3 {
        for id in 0..<3000 {
          try db.execute(sql: "INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)", arguments: [id, "round \(round) 学生 \(id)"])
        }
      }
    }
    try database.close()
    let reopened = try EncryptedDatabase.open(path: path, key: .key(key))
    #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t WHERE v LIKE 'round 2%'") } == 3000)
    #expect(try reopened.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
  }
}
