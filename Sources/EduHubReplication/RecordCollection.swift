import EduHubStorage
import GRDB
import SwiftProtobuf

/// A replicated collection of one protobuf message type: its name in the record store, the type of
/// its bodies and how the store indexes them. The service that owns a collection declares it once;
/// reads decode to the right type and typed writes cannot put another in.
public struct RecordCollection<M: Message & Sendable>: Sendable, CustomStringConvertible {
  /// The collection's name in the record store.
  public let name: String
  /// Its indexes and search text, for the record store.
  public let definition: CollectionDefinition

  /// - Parameters: see ``CollectionDefinition``; `extract` reads index keys from a body.
  public init(
    _ name: String, of type: M.Type = M.self, indexes: Set<String> = [], searchable: Bool = false, indexesChanges: Bool = false,
    extract: @escaping @Sendable ([UInt8]) throws -> CollectionDefinition.Extracted = { _ in .init() }
  ) {
    self.name = name
    self.definition = CollectionDefinition(
      name: name, indexes: indexes, searchable: searchable, indexesChanges: indexesChanges, extract: extract)
  }

  public var description: String { name }

  /// The body of `record` (of this collection), or `.corrupted` when it does not decode.
  public func decode(_ record: StoredRecord) throws -> M {
    do {
      return try M(serializedBytes: record.body)
    } catch {
      throw StorageError(.corrupted, "\(name)/\(record.id.prefix(64)) cannot be read")
    }
  }

  /// Raw body bytes as this collection's message, or `.corrupted`.
  public func decode(_ body: [UInt8]) throws -> M {
    do {
      return try M(serializedBytes: body)
    } catch {
      throw StorageError(.corrupted, "a \(name) record cannot be read")
    }
  }

  /// A local write of `message` as record `id` (for ``Replica/write(_:in:)``).
  public func write(_ id: String, scope: String, _ message: M) throws -> Replica.Write {
    Replica.Write(collection: name, id: id, scope: scope, body: try message.serializedBytes())
  }
}

/// A stored record with its body decoded.
public struct Stored<M: Message & Sendable>: Sendable {
  /// The record as stored: id, scope, version, deletion.
  public var record: StoredRecord
  /// Its body.
  public var value: M

  public init(record: StoredRecord, value: M) {
    self.record = record
    self.value = value
  }

  public var id: String { record.id }
  public var scope: String { record.scope }
}

/// The record store's reads by typed collection (each the same as by the collection's name).
extension RecordStore {
  public func get<M>(_ collection: RecordCollection<M>, _ id: String) throws -> StoredRecord? {
    try get(collection.name, id)
  }

  public func get<M>(_ collection: RecordCollection<M>, _ id: String, in db: Database) throws -> StoredRecord? {
    try get(collection.name, id, in: db)
  }

  public func pointGet<M>(_ collection: RecordCollection<M>, _ id: String) throws -> StoredRecord? {
    try pointGet(collection.name, id)
  }

  public func find<M>(_ collection: RecordCollection<M>, index: String, key: String, limit: Int = 1000) throws -> [StoredRecord] {
    try find(collection.name, index: index, key: key, limit: limit)
  }

  public func find<M>(
    _ collection: RecordCollection<M>, index: String, key: String, limit: Int = 1000, in db: Database
  ) throws -> [StoredRecord] {
    try find(collection.name, index: index, key: key, limit: limit, in: db)
  }

  public func inScope<M>(
    _ collection: RecordCollection<M>, scope: String, after: StoredRecord? = nil, limit: Int = 1000
  ) throws -> [StoredRecord] {
    try inScope(collection.name, scope: scope, after: after, limit: limit)
  }

  public func inScope<M>(
    _ collection: RecordCollection<M>, scope: String, after: StoredRecord? = nil, limit: Int = 1000, in db: Database
  ) throws -> [StoredRecord] {
    try inScope(collection.name, scope: scope, after: after, limit: limit, in: db)
  }

  public func withPrefix<M>(
    _ collection: RecordCollection<M>, idPrefix: String, after: String? = nil, limit: Int, in db: Database
  ) throws -> [StoredRecord] {
    try withPrefix(collection.name, idPrefix: idPrefix, after: after, limit: limit, in: db)
  }

  public func changes<M>(of collection: RecordCollection<M>, after: Int64, limit: Int = .max, in db: Database) throws
    -> (records: [StoredRecord], evicted: [(sequence: Int64, id: String)])
  {
    try changes(of: collection.name, after: after, limit: limit, in: db)
  }

  public func lastSequence<M>(of collection: RecordCollection<M>, in db: Database) throws -> Int64 {
    try lastSequence(of: collection.name, in: db)
  }

  public func byID<M>(_ collection: RecordCollection<M>, after: String, limit: Int, in db: Database) throws -> [StoredRecord] {
    try byID(collection.name, after: after, limit: limit, in: db)
  }

  public func records<M>(_ collection: RecordCollection<M>, after: StoredRecord?, limit: Int, in db: Database) throws -> [StoredRecord] {
    try records(collection.name, after: after, limit: limit, in: db)
  }

  public func records<M>(_ collection: RecordCollection<M>, limit: Int, in db: Database) throws -> [StoredRecord] {
    try records(collection.name, limit: limit, in: db)
  }

  public func search<M>(_ collection: RecordCollection<M>, query: String, limit: Int = 100) throws -> [StoredRecord] {
    try search(collection.name, query: query, limit: limit)
  }

  public func search<M>(_ collection: RecordCollection<M>, query: String, limit: Int = 100, in db: Database) throws -> [StoredRecord] {
    try search(collection.name, query: query, limit: limit, in: db)
  }
}
