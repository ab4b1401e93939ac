/// What a record puts into the store's indexes: its exact-match keys and its search text, already
/// tokenised for the full-text index, read from its body by the collection's extractor.
struct IndexEntries {
  /// Keys of the collection's declared indexes.
  var keys: [(index: String, key: String)]
  /// `SearchText.indexString` of the record's text; nil when the collection is not searchable or
  /// the record has none.
  var text: String?
}

extension RecordStore {
  /// The index entries `record` (of `definition`'s collection) will have once written.
  /// - Throws: ``StorageError`` `.rejected` if its body cannot be indexed, or it names an index its
  ///   collection does not declare.
  static func indexEntries(of record: StoredRecord, _ definition: CollectionDefinition) throws -> IndexEntries {
    guard !record.deleted else { return IndexEntries(keys: [], text: nil) }
    let extracted: CollectionDefinition.Extracted
    do {
      extracted = try definition.extract(record.body)
    } catch {
      throw StorageError(.rejected, "record \(record.collection)/\(record.id) cannot be indexed: \(error)")
    }
    return try indexEntries(extracted, definition)
  }

  /// The entries of what `definition`'s extractor read from a live body.
  static func indexEntries(_ extracted: CollectionDefinition.Extracted, _ definition: CollectionDefinition) throws -> IndexEntries {
    for key in extracted.keys where !definition.indexes.contains(key.index) {
      throw StorageError(.rejected, "collection \(definition.name) has no index \(key.index)")
    }
    let keys = definition.indexes.isEmpty ? [] : extracted.keys
    let text = definition.searchable ? extracted.text.flatMap { $0.isEmpty ? nil : SearchText.indexString($0) } : nil
    return IndexEntries(keys: keys, text: text)
  }
}
