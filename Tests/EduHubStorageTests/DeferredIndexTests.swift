import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import PropertyBased
import Testing

/// Bulk loads stage their index keys and search text and build them later in key order: whatever
/// happens to a staged record in between (replaced, deleted, evicted, a crash), the indexes end up
/// as writing one record at a time would leave them.
@Suite("Deferred index building")
struct DeferredIndexTests {
  private func open(_ path: String, _ key: SecretBytes) throws -> RecordStore {
    let database = try EncryptedDatabase.open(path: path, key: .key(key), create: true)
    return try RecordStore(database: database, collections: [people, CollectionDefinition(name: "orgs")])
  }

  @Test("staged records are out of find and search until built, then found by their latest keys only")
  func stagedThenBuilt() throws {
    let store = try makeStore()
    try store.database.write { db in
      _ = try store.put(
        [
          StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111", "初二学生")),
          StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "222", "数学老师")),
          StoredRecord(collection: "people", id: "p3", scope: "511700", body: person("张伟", "333")),
        ], in: db, deferIndexes: true)
    }
    #expect(try store.find("people", index: "national_id", key: "111").isEmpty)
    #expect(try store.search("people", query: "学生").isEmpty)
    // Replaced while staged (one record at a time), deleted while staged, evicted while staged.
    try store.put([StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳芳", "444", "初三学生"))])
    try store.put([StoredRecord(collection: "people", id: "p2", scope: "511700", body: [], deleted: true)])
    try store.database.write { db in try store.evict("people", "p3", in: db) }
    try store.buildDeferredIndexes()
    #expect(try store.find("people", index: "national_id", key: "444").map(\.id) == ["p1"])
    for (index, key) in [("national_id", "111"), ("name", "王芳"), ("national_id", "222"), ("national_id", "333")] {
      #expect(try store.find("people", index: index, key: key).isEmpty, "\(index) \(key)")
    }
    #expect(try store.search("people", query: "初三").map(\.id) == ["p1"])
    #expect(try store.search("people", query: "初二").isEmpty)
    #expect(try store.search("people", query: "老师").isEmpty)
  }

  @Test("a store reopened with staged records (a load cut short) builds their indexes as it opens")
  func builtOnOpen() throws {
    let path = try temporaryDirectory() + "/store.sqlite"
    let key = AEAD.makeKey()
    do {
      let store = try open(path, key)
      // Indexed directly before the load, so not in what the reopen rebuilds.
      try store.put([StoredRecord(collection: "people", id: "p0", scope: "511700", body: person("赵敏", "000", "老师"))])
      try store.database.write { db in
        _ = try store.put(
          [
            StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111", "学生")),
            StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "222", "学生")),
          ], in: db, deferIndexes: true)
      }
      // Replaced directly while staged: the reopen finds it again, but must not index it twice.
      try store.put([StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "333", "班长"))])
      #expect(try store.find("people", index: "national_id", key: "111").isEmpty)
      try store.database.close()
    }
    let reopened = try open(path, key)
    #expect(try reopened.find("people", index: "national_id", key: "111").map(\.id) == ["p1"])
    #expect(try reopened.find("people", index: "national_id", key: "333").map(\.id) == ["p2"])
    #expect(try reopened.find("people", index: "national_id", key: "222").isEmpty)
    #expect(try reopened.find("people", index: "national_id", key: "000").map(\.id) == ["p0"])
    #expect(try reopened.search("people", query: "学生").map(\.id) == ["p1"])
    #expect(try reopened.search("people", query: "班长").map(\.id) == ["p2"])
    #expect(try reopened.search("people", query: "老师").map(\.id) == ["p0"])
    #expect(try reopened.database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM record_text") } == 3)
    // The mark is gone with the build: a second reopen rebuilds nothing.
    #expect(try reopened.database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM store_meta WHERE name LIKE 'deferred_since%'") } == 0)
  }

  @Test("rows a build from before December 2026 left in the database's staging table are built at open")
  func legacyStagingTable() throws {
    let path = try temporaryDirectory() + "/store.sqlite"
    let key = AEAD.makeKey()
    do {
      let store = try open(path, key)
      try store.database.write { db in
        _ = try store.put([StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111", "学生"))], in: db, deferIndexes: true)
        // What the old build staged instead: the same row in main.record_staged, and no mark.
        try db.execute(sql: "INSERT INTO main.record_staged (record, keys, text) SELECT record, keys, text FROM temp.staged_index")
        try db.execute(sql: "DELETE FROM store_meta WHERE name LIKE 'deferred_since%'")
      }
      try store.database.close()
    }
    let reopened = try open(path, key)
    #expect(try reopened.find("people", index: "national_id", key: "111").map(\.id) == ["p1"])
    #expect(try reopened.search("people", query: "学生").map(\.id) == ["p1"])
    #expect(try reopened.database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM main.record_staged") } == 0)
  }

  @Test("a staging transaction that rolls back leaves nothing staged and nothing indexed")
  func rollback() throws {
    let store = try makeStore()
    #expect(throws: (any Error).self) {
      try store.database.write { db in
        _ = try store.put(
          [StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111"))], in: db, deferIndexes: true)
        throw StorageError(.rejected, "the caller gives up")
      }
    }
    try store.buildDeferredIndexes()
    #expect(try store.get("people", "p1") == nil)
    #expect(try store.find("people", index: "national_id", key: "111").isEmpty)
  }

  @Test("a second process opening the node mid-load (the operator's CLI beside a first sync) indexes it early; the load's own build still works")
  func secondProcessMidLoad() throws {
    let path = try temporaryDirectory() + "/store.sqlite"
    let key = AEAD.makeKey()
    let node = try open(path, key)
    try node.database.write { db in
      _ = try node.put(
        [
          StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111", "学生")),
          StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "222", "学生")),
        ], in: db, deferIndexes: true)
    }
    // Another process's store: its open indexes what the node staged; it replaces one of them and
    // deletes the other, which the node cannot unstage (it never sees that process's writes).
    let cli = try open(path, key)
    #expect(try cli.find("people", index: "national_id", key: "111").map(\.id) == ["p1"])
    try cli.put([StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "333", "班长"))])
    try cli.put([StoredRecord(collection: "people", id: "p1", scope: "511700", body: [], deleted: true)])
    // The node stages more, then builds: nothing doubled, nothing stale, nothing refused.
    try node.database.write { db in
      _ = try node.put([StoredRecord(collection: "people", id: "p3", scope: "511700", body: person("张伟", "444", "学生"))], in: db, deferIndexes: true)
    }
    try node.buildDeferredIndexes()
    for store in [node, cli] {
      #expect(try store.find("people", index: "national_id", key: "111").isEmpty)
      #expect(try store.find("people", index: "national_id", key: "222").isEmpty)
      #expect(try store.find("people", index: "national_id", key: "333").map(\.id) == ["p2"])
      #expect(try store.find("people", index: "national_id", key: "444").map(\.id) == ["p3"])
      #expect(try store.search("people", query: "学生").map(\.id) == ["p3"])
      #expect(try store.search("people", query: "班长").map(\.id) == ["p2"])
    }
    #expect(try node.database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM record_text") } == 2)
    try cli.database.close()
    try node.database.close()
  }

  @Test("two loads at once: one's build leaves the other's mark, so the other's records are still rebuilt if it stops first")
  func twoLoaders() throws {
    let path = try temporaryDirectory() + "/store.sqlite"
    let key = AEAD.makeKey()
    let first = try open(path, key)
    let second = try open(path, key)
    try first.database.write { db in
      _ = try first.put([StoredRecord(collection: "people", id: "p1", scope: "511700", body: person("王芳", "111", "学生"))], in: db, deferIndexes: true)
    }
    try second.database.write { db in
      _ = try second.put([StoredRecord(collection: "people", id: "p2", scope: "511700", body: person("李雷", "222", "老师"))], in: db, deferIndexes: true)
    }
    try first.buildDeferredIndexes()
    #expect(try first.find("people", index: "national_id", key: "111").map(\.id) == ["p1"])
    #expect(try first.find("people", index: "national_id", key: "222").isEmpty)
    // The second stops before its build (a crash loses its staging table just the same).
    try second.database.close()
    try first.database.close()
    let reopened = try open(path, key)
    #expect(try reopened.find("people", index: "national_id", key: "222").map(\.id) == ["p2"])
    #expect(try reopened.search("people", query: "老师").map(\.id) == ["p2"])
    #expect(try reopened.database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM record_text") } == 2)
  }

  /// One step of a random history: a batch (bulk or not), then maybe an eviction, maybe a build,
  /// maybe a close and reopen (what was staged is then rebuilt from the records).
  /// Each generated number is one write; the high bits of a batch's first also pick what follows.
  struct Step {
    var batch: [(id: Int, deleted: Bool, name: Int, key: Int)]
    var bulk: Bool
    var evict: Int?
    var build: Bool
    var reopen: Bool

    init(_ numbers: [Int]) {
      batch = numbers.map { n in (n % 40, (n >> 8) % 10 == 0, (n >> 12) % DeferredIndexTests.names.count, (n >> 16) % 60) }
      let first = numbers[0] >> 24
      bulk = first % 2 == 0
      evict = (first >> 1) % 5 == 0 ? (first >> 4) % 40 : nil
      build = (first >> 10) % 7 == 0
      reopen = (first >> 14) % 9 == 0
    }
  }

  static let names = ["王芳", "李雷", "张伟", "王小明", "刘洋", "陈静"]

  @Test("random bulk loads, replacements, deletions, evictions and builds index as writes one by one do")
  func matchesDirectWrites() async throws {
    await propertyCheck(count: 40, input: Gen.int(in: 0...Int.max).array(of: 1...30).array(of: 1...25)) { numbers in
      let steps = numbers.map(Step.init)
      let path = try temporaryDirectory() + "/store.sqlite"
      let key = AEAD.makeKey()
      var staged = try open(path, key)
      let direct = try makeStore()
      for (round, step) in steps.enumerated() {
        let batch = step.batch.map { write in
          StoredRecord(
            collection: "people", id: "p\(write.id)", scope: "511700",
            body: write.deleted ? [] : person(Self.names[write.name], "\(write.key)", "第\(round)轮"), deleted: write.deleted)
        }
        try staged.database.write { db in _ = try staged.put(batch, in: db, deferIndexes: step.bulk) }
        try direct.put(batch)
        if let evict = step.evict {
          try staged.database.write { db in try staged.evict("people", "p\(evict)", in: db) }
          try direct.database.write { db in try direct.evict("people", "p\(evict)", in: db) }
        }
        if step.build { try staged.buildDeferredIndexes() }
        if step.reopen {
          try staged.database.close()
          staged = try open(path, key)
        }
      }
      try staged.buildDeferredIndexes()
      for key in 0..<60 {
        #expect(Set(try staged.find("people", index: "national_id", key: "\(key)").map(\.id))
          == Set(try direct.find("people", index: "national_id", key: "\(key)").map(\.id)))
      }
      for name in Self.names {
        #expect(Set(try staged.find("people", index: "name", key: name).map(\.id)) == Set(try direct.find("people", index: "name", key: name).map(\.id)))
        #expect(Set(try staged.search("people", query: name).map(\.id)) == Set(try direct.search("people", query: name).map(\.id)))
      }
      for round in steps.indices {
        #expect(Set(try staged.search("people", query: "第\(round)轮").map(\.id)) == Set(try direct.search("people", query: "第\(round)轮").map(\.id)))
      }
    }
  }
}
