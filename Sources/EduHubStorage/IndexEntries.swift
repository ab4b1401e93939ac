/// What a record puts into the store's indexes: its exact-match keys and its search text, already
/// tokenised for the full-text index. Read from the body by the collection's extractor; a bulk
/// load reads them on its producer's thread (``RecordStore/indexEntries(of:)``) so that the
/// single writer only stores them.
public struct IndexEntries: Sendable {
  /// The record they were read from (a write checks it is given its own).
  public var collection: String
  public var id: String
  /// Keys of the collection's declared indexes.
  public var keys: [(index: String, key: String)]
  /// `SearchText.indexString` of the record's text; nil when the collection is not searchable or
  /// the record has none.
  public var text: String?
}

extension RecordStore {
  /// The index entries `record` will have once written.
  /// - Throws: ``StorageError`` `.rejected` (as `put` does) if its collection is unknown, its body
  ///   cannot be indexed, or it names an index its collection does not declare.
  public func indexEntries(of record: StoredRecord) throws -> IndexEntries {
    guard let definition = collections[record.collection] else {
      throw StorageError(.rejected, "unknown collection \(record.collection)")
    }
    return try Self.indexEntries(of: record, definition)
  }

  /// ``indexEntries(of:)`` with the collection's definition at hand.
  static func indexEntries(of record: StoredRecord, _ definition: CollectionDefinition) throws -> IndexEntries {
    guard !record.deleted else { return IndexEntries(collection: record.collection, id: record.id, keys: [], text: nil) }
    let extracted: CollectionDefinition.Extracted
    do {
      extracted = try definition.extract(record.body)
    } catch {
      throw StorageError(.rejected, "record \(record.collection)/\(record.id) cannot be indexed: \(error)")
    }
    return try indexEntries(extracted, definition, id: record.id)
  }

  /// The entries of what `definition`'s extractor read from the live body of record `id`.
  static func indexEntries(_ extracted: CollectionDefinition.Extracted, _ definition: CollectionDefinition, id: String) throws -> IndexEntries {
    for key in extracted.keys where !definition.indexes.contains(key.index) {
      throw StorageError(.rejected, "collection \(definition.name) has no index \(key.index)")
    }
    let keys = definition.indexes.isEmpty ? [] : extracted.keys
    let text = definition.searchable ? extracted.text.flatMap { $0.isEmpty ? nil : SearchText.indexString($0) } : nil
    return IndexEntries(collection: definition.name, id: id, keys: keys, text: text)
  }
}
