import EduHubCrypto
import EduHubReplication
import EduHubStorage
import Foundation
import Synchronization
import Testing

func field(_ number: Int, text: String) -> [UInt8] {
  let bytes = Array(text.utf8)
  return [UInt8(number << 3 | 2), UInt8(bytes.count)] + bytes
}

/// The parent of this test process's directories, removed when the process exits.
let testRoot: URL = {
  let root = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-replica-tests-\(getpid())")
  atexit {
    try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-replica-tests-\(getpid())"))
  }
  return root
}()

func makeReplica(_ node: String, path: String? = nil, key: SecretBytes = AEAD.makeKey()) throws -> Replica {
  let directory = testRoot.appendingPathComponent("replica-\(UUID())")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  let database = try EncryptedDatabase.open(path: path ?? directory.path + "/\(node).sqlite", key: .key(key), create: true)
  let store = try RecordStore(database: database, collections: [CollectionDefinition(name: "people")])
  return try Replica(nodeID: node, store: store)
}

/// Sends everything `from` has that `to` has not seen (a full pull).
@discardableResult
func sync(_ from: Replica, _ to: Replica) throws -> Replica.ApplyOutcome {
  try to.apply(from.store.changes(after: 0, limit: 100_000))
}

@Suite("The replica")
struct ReplicaTests {
  @Test("a write travels to another node and stays identical")
  func travels() throws {
    let school = try makeReplica("school-1")
    let county = try makeReplica("county")
    try school.write([.init(collection: "people", id: "s1", scope: "511700/511702", body: field(1, text: "王芳") + field(2, text: "138"))])
    #expect(try sync(school, county).fastForwarded == 1)
    #expect(try county.store.get("people", "s1")?.body == school.store.get("people", "s1")?.body)
    // The same change synced twice changes nothing.
    let before = try county.store.lastSequence()
    #expect(try sync(school, county).skipped == 1)
    #expect(try county.store.lastSequence() == before)
  }

  @Test("concurrent edits of different fields both survive, on both nodes")
  func differentFields() throws {
    let a = try makeReplica("school-a")
    let b = try makeReplica("school-b")
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "王芳") + field(2, text: "138"))])
    try sync(a, b)
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "王芳芳") + field(2, text: "138"))])
    try b.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "王芳") + field(2, text: "139"))])
    try sync(a, b)
    try sync(b, a)
    let expected = field(1, text: "王芳芳") + field(2, text: "139")
    #expect(try a.store.get("people", "p")?.body == expected)
    #expect(try b.store.get("people", "p")?.body == expected)
    #expect(try a.store.get("people", "p")?.version == b.store.get("people", "p")?.version)
    #expect(try a.store.conflicts().isEmpty)
  }

  @Test("concurrent edits of the same field: both nodes end with the same winner and the loser is logged")
  func sameField() throws {
    let a = try makeReplica("school-a")
    let b = try makeReplica("school-b")
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: field(2, text: "138"))])
    try sync(a, b)
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: field(2, text: "111"))])
    try b.write([.init(collection: "people", id: "p", scope: "511700", body: field(2, text: "222"))])
    try sync(a, b)
    try sync(b, a)
    let bodyA = try a.store.get("people", "p")?.body
    #expect(bodyA == (try b.store.get("people", "p")?.body))
    // The node that merged logs the loser once; the other fast-forwards to the merge.
    let conflicts = try a.store.conflicts() + b.store.conflicts()
    #expect(conflicts.count == 1)
    #expect(conflicts.allSatisfy { $0.field == 2 && !$0.localVersion.isEmpty && !$0.remoteVersion.isEmpty })
  }

  @Test("a deletion replicates as a tombstone and a later write revives the record")
  func deletion() throws {
    let a = try makeReplica("a")
    let b = try makeReplica("b")
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "x"))])
    try sync(a, b)
    try a.write([.init(collection: "people", id: "p", scope: "511700", body: nil)])
    try sync(a, b)
    #expect(try b.store.get("people", "p")?.deleted == true)
    try b.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "y"))])
    try sync(b, a)
    #expect(try a.store.get("people", "p")?.deleted == false)
    #expect(try a.store.get("people", "p")?.body == field(1, text: "y"))
  }

  @Test("the clock resumes after a restart: no stamp is issued twice")
  func clockPersists() throws {
    let directory = testRoot.appendingPathComponent("clock-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let key = AEAD.makeKey()
    let path = directory.path + "/node.sqlite"
    let first = try makeReplica("node", path: path, key: key)
    try first.write([.init(collection: "people", id: "p", scope: "511700", body: field(1, text: "a"))])
    let last = first.clock.last
    try first.store.database.close()
    // The wall clock went back an hour while the node was down.
    let database = try EncryptedDatabase.open(path: path, key: .key(key))
    let store = try RecordStore(database: database, collections: [CollectionDefinition(name: "people")])
    let second = try Replica(nodeID: "node", store: store, wallClock: { last.milliseconds - 3_600_000 })
    #expect(second.clock.now() > last)
  }

  @Test("a malformed remote body is refused and nothing of the batch is written")
  func malformedRemote() throws {
    let a = try makeReplica("a")
    let good = try a.write([.init(collection: "people", id: "ok", scope: "511700", body: field(1, text: "x"))])[0]
    let b = try makeReplica("b")
    try b.write([.init(collection: "people", id: "bad", scope: "511700", body: field(1, text: "y"))])
    var bad = good
    bad.id = "bad"
    bad.body = [0x0A, 0x09, 1]
    bad.version = ReplicationEncoding.encode(VersionVector(["a": 5]))
    #expect(throws: WireFieldsError.self) { try b.apply([good, bad]) }
    #expect(try b.store.get("people", "ok") == nil)
  }
}
