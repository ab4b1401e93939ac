import Dispatch
import EduHubStorage
import GRDB
import SwiftProtobuf

/// The one door from a service to the node's storage: transactions, group commit, typed reads and
/// stamped writes of replicated records.
///
/// Services never open a transaction on the database themselves; they come here, so the storage
/// behind the door (today SQLite through GRDB) can change without touching them. Failures leave as
/// ``StorageError`` (damage as `.corrupted`, anything else SQLite says as `.failed`); errors the
/// caller's own body throws pass through unchanged.
public final class NodeStore: Sendable {
  /// Stamps local writes and reconciles remote ones.
  public let replica: Replica
  /// Group commit for ``batched(_:)``.
  private let commits: BatchedWrites

  public init(replica: Replica) {
    self.replica = replica
    let path = replica.store.database.path
    self.commits = BatchedWrites(database: replica.store.database) { Self.storageError($0, path: path) }
  }

  /// The record store (indexes, change feeds, search) for reads inside a transaction of this door.
  public var records: RecordStore { replica.store }

  /// The node's database (for logs that keep tables of their own beside the records).
  public var database: EncryptedDatabase { replica.store.database }

  /// Runs `body` in one write transaction.
  public func transaction<T>(_ body: (Database) throws -> T) throws -> T {
    do {
      return try database.pool.write(body)
    } catch {
      throw Self.storageError(error, path: database.path)
    }
  }

  /// `transaction` with group commit: concurrent callers share one transaction (each in its own
  /// savepoint, so one failing rolls back alone) and return once it has committed. The transaction
  /// runs on the group's own queue, never on the caller's thread.
  public func batched<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
    try await commits.write(body)
  }

  /// `transaction` for async callers: the transaction runs on a thread of the storage layer's own
  /// (see ``blocking(_:)``), never on the cooperative pool.
  public func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
    try await blocking { try self.transaction(body) }
  }

  /// Runs `body`, which may wait for the database's one writer, on a thread of the storage layer's
  /// own and resumes the caller when it is done: a task never blocks a thread of the cooperative
  /// pool (one per core) while another transaction holds the writer.
  public func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
      Self.blockingQueue.async { continuation.resume(with: Result { try body() }) }
    }
  }

  /// Where ``blocking(_:)`` runs bodies: concurrent, so reads and the work around a transaction
  /// overlap, while SQLite takes the writes one at a time.
  private static let blockingQueue: DispatchQueue = {
    let queue = DispatchQueue(label: "eduhub.storage.blocking", qos: .userInitiated, attributes: .concurrent)
    queue.setSpecific(key: blockingKey, value: true)
    return queue
  }()
  private static let blockingKey = DispatchSpecificKey<Bool>()

  /// Whether the caller runs on the storage layer's own threads (where ``blocking(_:)`` and
  /// ``write(_:)`` run their bodies).
  package static var onStorageThread: Bool { DispatchQueue.getSpecific(key: blockingKey) == true }

  /// Reads in one snapshot.
  public func read<T>(_ body: (Database) throws -> T) throws -> T {
    do {
      return try database.pool.read(body)
    } catch {
      throw Self.storageError(error, path: database.path)
    }
  }

  /// Writes `message` as record `id` of `collection`, stamped by this node.
  public func put(_ collection: String, _ id: String, scope: String, _ message: some Message, in db: Database) throws {
    try replica.write([.init(collection: collection, id: id, scope: scope, body: try message.serializedBytes())], in: db)
  }

  /// Writes `message` as record `id` of a typed collection.
  public func put<M>(_ collection: RecordCollection<M>, _ id: String, scope: String, _ message: M, in db: Database) throws {
    try put(collection.name, id, scope: scope, message, in: db)
  }

  /// Deletes `record` (a tombstone that replicates).
  public func delete(_ record: StoredRecord, in db: Database) throws {
    try replica.write([.init(collection: record.collection, id: record.id, scope: record.scope, body: nil)], in: db)
  }

  /// Record `id` of `collection` unless it is absent or deleted (an empty id is absent).
  public func live(_ collection: String, _ id: String, in db: Database) throws -> StoredRecord? {
    guard !id.isEmpty, let record = try records.get(collection, id, in: db), !record.deleted else { return nil }
    return record
  }

  /// Record `id` of a typed collection unless it is absent or deleted.
  public func live<M>(_ collection: RecordCollection<M>, _ id: String, in db: Database) throws -> StoredRecord? {
    try live(collection.name, id, in: db)
  }

  /// Record `id` of a typed collection, decoded, unless it is absent or deleted.
  public func value<M>(_ collection: RecordCollection<M>, _ id: String, in db: Database) throws -> Stored<M>? {
    guard let record = try live(collection.name, id, in: db) else { return nil }
    return Stored(record: record, value: try collection.decode(record))
  }

  /// What a failure below the door is to the caller: damage is `.corrupted`, SQLite's other errors
  /// `.failed` (their text stays in the node); the body's own errors pass through.
  static func storageError(_ error: any Error, path: String) -> any Error {
    switch error {
    case is DatabaseError:
      let mapped = EncryptedDatabase.mapError(error, path: path)
      return mapped is StorageError ? mapped : StorageError(.failed, "storage failed")
    case let error as BinaryDecodingError:
      return StorageError(.corrupted, "a stored record cannot be read: \(error)")
    default:
      return error
    }
  }
}
