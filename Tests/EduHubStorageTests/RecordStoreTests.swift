import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Testing

/// People bodies for tests: "name|national_id|remarks" in UTF-8 (the store treats bodies as bytes;
/// the collection's extractor knows their form).
func person(_ name: String, _ idNumber: String, _ remarks: String = "") -> [UInt8] {
  Array("\(name)|\(idNumber)|\(remarks)".utf8)
}

let people = CollectionDefinition(name: "people", indexes: ["national_id", "name"], searchable: true) { body in
  let parts = String(decoding: body, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
  guard parts.count == 3 else { throw StorageError(.rejected, "malformed person") }
  return .init(keys: [("national_id", String(parts[1])), ("name", String(parts[0]))], text: "\(parts[0]) \(parts[2])")
}

func makeStore() throws -> RecordStore {
  let path = try temporaryDirectory() + "/store.sqlite"
  let database = try EncryptedDatabase.open(path: path, key: .key(AEAD.makeKey()), create: true)
  return try RecordStore(database: database, collections: [people, CollectionDefinition(name: "orgs")])
}

@Suite("The record store")
struct RecordStoreTests {
  @Test("records round-trip, and an index finds them by exact key")
  func indexes() throws {
    let store = try makeStore()
    try store.put([
      StoredRecord(collection: "people", id: "p1", scope: "511700/511702", body: person("王芳", "511702201001010011")),
      StoredRecord(collection: "people", id: "p2", scope: "511700/511703", body: person("李雷", "511703201002020022")),
    ])
    #expect(try store.get("people", "p1")?.body == person("王芳", "511702201001010011"))
    #expect(try store.find("people", index: "national_id", key: "511703201002020022").map(\.id) == ["p2"])
    #expect(try store.find("people", index: "name", key: "王芳").map(\.id) == ["p1"])
    // Replacing a record replaces its index entries.
    try store.put([StoredRecord(collection: "people", id: "p1", scope: "511700/511702", body: person("王芳芳", "511702201001010011"))])
    #expect(try store.find("people", index: "name", key: "王芳").isEmpty)
    #expect(try store.find("people", index: "name", key: "王芳芳").map(\.id) == ["p1"])
  }

  @Test("search finds Chinese terms of one and two characters, and Latin words")
  func chineseSearch() throws {
    let store = try makeStore()
    try store.put([
      StoredRecord(collection: "people", id: "a", scope: "511700", body: person("王芳", "1", "初二学生 成绩优秀")),
      StoredRecord(collection: "people", id: "b", scope: "511700", body: person("张伟", "2", "数学老师 teacher")),
      StoredRecord(collection: "people", id: "c", scope: "511700", body: person("王小明", "3", "学生会主席")),
    ])
    #expect(Set(try store.search("people", query: "学生").map(\.id)) == ["a", "c"])
    #expect(try store.search("people", query: "王芳").map(\.id) == ["a"])
    #expect(try store.search("people", query: "成绩").map(\.id) == ["a"])
    #expect(Set(try store.search("people", query: "王").map(\.id)) == ["a", "c"])
    #expect(try store.search("people", query: "Teacher").map(\.id) == ["b"])
    #expect(try store.search("people", query: "学生 成绩").map(\.id) == ["a"])
    #expect(try store.search("people", query: "\" OR 1 --").isEmpty)
    #expect(try store.search("people", query: "   ").isEmpty)
  }

  @Test("the change log lists writes in order, each record once at its last write, tombstones included")
  func changeLog() throws {
    let store = try makeStore()
    try store.put([StoredRecord(collection: "orgs", id: "o1", scope: "511700", body: [1])])
    try store.put([StoredRecord(collection: "orgs", id: "o2", scope: "511700", body: [2])])
    try store.put([StoredRecord(collection: "orgs", id: "o1", scope: "511700", body: [3], deleted: true)])
    let changes = try store.changes(after: 0)
    #expect(changes.map(\.id) == ["o2", "o1"])
    #expect(changes.map(\.sequence) == [2, 3])
    #expect(changes.last?.deleted == true)
    #expect(try store.changes(after: 2).map(\.id) == ["o1"])
    #expect(try store.lastSequence() == 3)
  }

  @Test("forEachLive visits a subtree's live records, whether the subtree holds the whole collection or not")
  func forEachLiveSubtrees() throws {
    let store = try makeStore()
    func visited(_ scope: String?) throws -> [String] {
      var ids: [String] = []
      try store.database.read { db in try store.forEachLive("orgs", inScope: scope, in: db) { id, _ in ids.append(id) } }
      return ids.sorted()
    }
    // Every record under 511700 (one deleted): the scan of the whole table serves the root.
    try store.put(["511700", "511700/511702", "511700/511702/5117020001"].enumerated().map {
      StoredRecord(collection: "orgs", id: "o\($0)", scope: $1, body: [UInt8($0)])
    })
    try store.put([StoredRecord(collection: "orgs", id: "gone", scope: "511700/511703", body: [9], deleted: true)])
    try store.put([StoredRecord(collection: "people", id: "p", scope: "511701", body: person("王芳", "1"))])
    #expect(try visited("511700") == ["o0", "o1", "o2"])
    #expect(try visited(nil) == ["o0", "o1", "o2"])
    #expect(try visited("511700/511702/5117020001") == ["o2"])
    // A lexical neighbour between "511700" and "511700/…" in the index, and one past the subtree:
    // the root no longer holds everything, and neither is visited.
    try store.put([StoredRecord(collection: "orgs", id: "dash", scope: "511700-x", body: [7])])
    #expect(try visited("511700") == ["o0", "o1", "o2"])
    try store.put([StoredRecord(collection: "orgs", id: "next", scope: "5117001", body: [8])])
    #expect(try visited("511700") == ["o0", "o1", "o2"])
    #expect(try visited(nil) == ["dash", "next", "o0", "o1", "o2"])
    #expect(try visited("511700-x") == ["dash"])
  }

  @Test("scope queries take a subtree: the org itself and below, not its lexical neighbours")
  func scopePrefix() throws {
    let store = try makeStore()
    let scopes = ["511700", "511700/511702", "511700/511702/5117020001", "511700/5117020", "511700/511703/5117030001"]
    try store.put(scopes.enumerated().map { StoredRecord(collection: "orgs", id: "o\($0)", scope: $1, body: [UInt8($0)]) })
    #expect(try store.inScope("orgs", scope: "511700/511702").map(\.scope) == ["511700/511702", "511700/511702/5117020001"])
    #expect(try store.inScope("orgs", scope: "511700").count == 5)
    let page = try store.inScope("orgs", scope: "511700", limit: 2)
    #expect(page.map(\.scope) == ["511700", "511700/511702"])
    let rest = try store.inScope("orgs", scope: "511700", after: page.last!)
    #expect(rest.map(\.scope) == ["511700/511702/5117020001", "511700/5117020", "511700/511703/5117030001"])
  }

  @Test("a batch with a bad record writes nothing")
  func batchAtomicity() throws {
    let store = try makeStore()
    let good = (0..<50).map { StoredRecord(collection: "people", id: "g\($0)", scope: "511700", body: person("甲\($0)", "\($0)")) }
    let bad = StoredRecord(collection: "people", id: "bad", scope: "511700", body: Array("no separators".utf8))
    #expect(throws: StorageError.self) { try store.put(good + [bad] + good) }
    #expect(try store.changes(after: 0).isEmpty)
    #expect(try store.lastSequence() == 0)
    #expect(throws: StorageError.self) {
      try store.put([StoredRecord(collection: "nope", id: "x", scope: "511700", body: [])])
    }
    try store.put(good)
    #expect(try store.changes(after: 0).count == 50)
  }
}

@Suite("The record store after a failed batch")
struct RecordStoreRollbackTests {
  @Test("an index first used in a batch that failed still works in the next batch")
  func indexAfterRollback() throws {
    let store = try makeStore()
    let bad = StoredRecord(collection: "people", id: "bad", scope: "511700", body: Array("no separators".utf8))
    let first = StoredRecord(collection: "people", id: "a", scope: "511700", body: person("王芳", "111"))
    #expect(throws: StorageError.self) { try store.put([first, bad]) }
    try store.put([first])
    #expect(try store.find("people", index: "national_id", key: "111").map(\.id) == ["a"])
  }
}
