import EduHubAPI
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The catalog held in memory for search: every resource with its text prepared for matching,
/// caught up from the store's per-collection change index before each search (so writes by sync,
/// by the command line or by another process show at once).
///
/// Why not FTS5: a catalog is small (ten thousand resources is a few megabytes), and a search must
/// also filter, count facets and sort by counters over every match; reading and decoding each
/// match from SQLite cost more than the whole search in memory. Chinese needs one- and
/// two-character terms, which a byte substring search over UTF-8 gives directly.
final class CatalogIndex: Sendable {
  /// One resource as search sees it: immutable and shared (a search over ten thousand copies one
  /// reference each, not each one's fields).
  final class Entry: Sendable {
    let resource: Eduhub_Catalog_V1_Resource
    let scope: String
    /// Lowercased UTF-8 of the parts a query matches, by weight (name first).
    let texts: [(weight: Int, bytes: [UInt8])]
    /// The resource's values of each facet but "followed by me", as numbers of `Facets.names`
    /// (counting small integers per search, not hashing strings).
    let facetValues: [[Int]]
    /// The byte pairs of every text, hashed into 2,048 bits: a term that can only match exactly
    /// (see `Query.required`) skips an entry missing one of its pairs without reading its texts.
    let pairs: [UInt64]

    init(resource: Eduhub_Catalog_V1_Resource, scope: String, texts: [(weight: Int, bytes: [UInt8])], facetValues: [[Int]]) {
      self.resource = resource
      self.scope = scope
      self.texts = texts
      self.facetValues = facetValues
      var pairs = [UInt64](repeating: 0, count: PairBits.words)
      for text in texts { PairBits.insert(text.bytes, into: &pairs) }
      self.pairs = pairs
    }
  }

  /// A bitset of hashed byte pairs: if a text contains a term, it contains each of the term's
  /// consecutive byte pairs, so a pair missing from an entry's bits rules the term out there.
  enum PairBits {
    static let words = 32

    static func bit(_ a: UInt8, _ b: UInt8) -> Int {
      Int(((UInt32(a) << 8 | UInt32(b)) &* 2_654_435_761) >> 21)  // the top 11 bits: 0..<2048
    }

    static func insert(_ bytes: [UInt8], into bits: inout [UInt64]) {
      guard bytes.count >= 2 else { return }
      for index in 1..<bytes.count {
        let bit = bit(bytes[index - 1], bytes[index])
        bits[bit >> 6] |= 1 << UInt64(bit & 63)
      }
    }

    /// The words and masks an entry must have for `term`.
    static func required(_ term: [UInt8]) -> [(word: Int, mask: UInt64)] {
      var bits = [UInt64](repeating: 0, count: words)
      insert(term, into: &bits)
      return bits.enumerated().filter { $0.element != 0 }.map { ($0.offset, $0.element) }
    }

    static func holds(_ entry: [UInt64], _ required: [(word: Int, mask: UInt64)]) -> Bool {
      required.allSatisfy { entry[$0.word] & $0.mask == $0.mask }
    }
  }

  /// Facet values by number: numbers are handed out once and never change, so an entry's numbers
  /// stay valid in every later snapshot.
  struct Facets: Sendable {
    var names: [String] = []
    var numbers: [String: Int] = [:]

    mutating func number(_ value: String) -> Int {
      if let known = numbers[value] { return known }
      names.append(value)
      numbers[value] = names.count - 1
      return names.count - 1
    }
  }

  private struct State {
    var entries: [String: Entry] = [:]
    var facets = Facets()
    var sequence: Int64 = 0
  }

  private let state = Mutex(State())

  /// Weights of the matched parts: a hit in the name counts most.
  static let nameWeight = 10, codeWeight = 8, labelWeight = 4, summaryWeight = 3, contentWeight = 2

  static func entry(_ record: StoredRecord, facets: inout Facets) throws -> Entry {
    var resource = try CatalogCollections.resource.decode(record)
    resource.responsibleOrgPath = record.scope
    func bytes(_ text: String) -> [UInt8] { Array(text.lowercased().utf8) }
    let content = resource.fields.flatMap { [$0.name, $0.description_p] }.joined(separator: " ")
    return Entry(
      resource: resource, scope: record.scope,
      texts: [
        (nameWeight, bytes(resource.name)), (codeWeight, bytes(resource.code)),
        (labelWeight, bytes([resource.theme, resource.publishingSystem, resource.exchangeForms.joined(separator: " ")].joined(separator: " "))),
        (summaryWeight, bytes(resource.summary)), (contentWeight, bytes(content)),
      ],
      facetValues: [
        [resource.responsibleOrgCode], [resource.publishingSystem], ["\(resource.type)"], [resource.theme],
        resource.exchangeForms, ["\(resource.sharingClass)"],
      ].map { $0.filter { !$0.isEmpty }.map { facets.number($0) } })
  }

  /// The resources as of `db`'s snapshot (or newer), after applying what changed since last time.
  func entries(store: RecordStore, collection: String, in db: Database) throws -> (entries: [String: Entry], facets: Facets) {
    let known = state.withLock { $0.sequence }
    let (records, evicted) = try store.changes(of: collection, after: known, in: db)
    guard !records.isEmpty || !evicted.isEmpty else { return state.withLock { ($0.entries, $0.facets) } }
    // Decoded under the lock (facet numbers are handed out there); applied in sequence order,
    // skipping what a concurrent catch-up already applied.
    var decoded: [(sequence: Int64, code: String, resource: StoredRecord?)] = records.map { record in
      (record.sequence, record.id, record.deleted ? nil : record)
    }
    decoded += evicted.map { ($0.sequence, $0.id, nil) }
    decoded.sort { $0.sequence < $1.sequence }
    return try state.withLock { state in
      for change in decoded where change.sequence > state.sequence {
        state.entries[change.code] = try change.resource.map { try Self.entry($0, facets: &state.facets) }
      }
      state.sequence = max(state.sequence, decoded.last?.sequence ?? 0)
      return (state.entries, state.facets)
    }
  }

  // MARK: Matching

  /// A query split into what must match: words, and within words runs of Chinese characters and
  /// of other characters (so 学生GPA matches 学生 and gpa wherever they stand).
  struct Query {
    let terms: [[UInt8]]
    let exact: [UInt8]?
    /// For each term (or the exact phrase) that only an exact occurrence can match (no fuzzy
    /// match applies to it), the byte pairs an entry must hold.
    private(set) var required: [[(word: Int, mask: UInt64)]] = []

    init(_ text: String, exact: Bool) {
      let lowered = text.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
      if exact {
        self.exact = lowered.isEmpty ? nil : Array(lowered.utf8)
        self.terms = []
        required = self.exact.map { [PairBits.required($0)] } ?? []
        return
      }
      self.exact = nil
      var terms: [[UInt8]] = []
      for word in lowered.split(whereSeparator: { $0.isWhitespace || $0 == "," || $0 == "，" || $0 == "、" }) {
        var run = ""
        var runIsCJK = false
        for scalar in word.unicodeScalars {
          let cjk = Self.isCJK(scalar)
          if !run.isEmpty, cjk != runIsCJK {
            terms.append(Array(run.utf8))
            run = ""
          }
          run.unicodeScalars.append(scalar)
          runIsCJK = cjk
        }
        if !run.isEmpty { terms.append(Array(run.utf8)) }
      }
      self.terms = terms
      required = terms.filter { !CatalogIndex.mayMatchApproximately($0) }.map(PairBits.required)
    }

    var isEmpty: Bool { terms.isEmpty && exact == nil }

    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
      (0x3400...0x9FFF).contains(scalar.value) || (0xF900...0xFAFF).contains(scalar.value)
        || (0x20000...0x2FA1F).contains(scalar.value)
    }
  }

  /// The relevance of `entry` for `query`, or nil when it does not match. Depends on the resource
  /// alone (not on the rest of the catalog), so the order is the same on every page.
  static func score(_ entry: Entry, _ query: Query) -> Int? {
    for required in query.required where !PairBits.holds(entry.pairs, required) { return nil }
    if let exact = query.exact {
      let best = entry.texts.filter { contains($0.bytes, exact) }.map(\.weight).max()
      return best.map { $0 * 2 }
    }
    var total = 0
    for term in query.terms {
      var best = 0
      for (weight, bytes) in entry.texts where weight * 2 > best {
        if contains(bytes, term) {
          // A name that is the term, or starts with it, ranks first.
          best = weight * 2 + (weight == nameWeight && bytes.starts(with: term) ? 5 : 0)
        } else if weight > best, approximately(bytes, term) {
          best = weight
        }
      }
      guard best > 0 else { return nil }
      total += best
    }
    return total
  }

  /// Whether `needle` occurs in `haystack` (bytes).
  static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty else { return true }
    guard haystack.count >= needle.count else { return false }
    // memchr to each candidate last byte, memcmp there (glibc's memmem is not exported to Swift).
    // The last byte, because in Chinese UTF-8 the first bytes (E4…E9) recur every three bytes,
    // while a last (continuation) byte is spread over 64 values.
    return haystack.withUnsafeBufferPointer { hay in
      needle.withUnsafeBufferPointer { pin in
        guard let base = hay.baseAddress, let pattern = pin.baseAddress else { return false }
        let tail = pin.count - 1
        var start = tail
        while start < hay.count {
          guard let hit = memchr(base + start, Int32(pattern[tail]), hay.count - start) else { return false }
          let at = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - base
          if memcmp(base + at - tail, pattern, pin.count) == 0 { return true }
          start = at + 1
        }
        return false
      }
    }
  }

  /// A fuzzy match for longer terms. Chinese: at least two thirds of the term's character pairs
  /// occur in the text (体质监测 finds 体质健康监测). Other scripts, terms of five or more letters:
  /// a word of the text at most one edit away (a letter added, dropped, changed or two swapped).
  /// Whether `approximately` can find `term` where it does not occur: an ASCII term of five or
  /// more bytes, or three or more characters of another script.
  static func mayMatchApproximately(_ term: [UInt8]) -> Bool {
    guard let first = term.first else { return false }
    if first < 0x80 { return term.count >= 5 }
    return term.lazy.filter { $0 & 0xC0 != 0x80 }.count >= 3
  }

  static func approximately(_ haystack: [UInt8], _ term: [UInt8]) -> Bool {
    guard mayMatchApproximately(term), let first = term.first else { return false }
    if first < 0x80 {
      guard term.count >= 5 else { return false }
      var start = 0
      while start < haystack.count {
        var end = start
        while end < haystack.count, isWordByte(haystack[end]) { end += 1 }
        if end - start >= term.count - 1, end - start <= term.count + 1, withinOneEdit(haystack[start..<end], term[...]) {
          return true
        }
        start = end + 1
      }
      return false
    }
    let characters = Array(String(decoding: term, as: UTF8.self).unicodeScalars)
    guard characters.count >= 3 else { return false }
    let pieces = (0..<(characters.count - 1)).map { start in
      var piece = String.UnicodeScalarView()
      piece.append(contentsOf: characters[start..<(start + 2)])
      return Array(String(piece).utf8)
    }
    let needed = (pieces.count * 2 + 2) / 3
    var found = 0
    for (index, piece) in pieces.enumerated() {
      if contains(haystack, piece) { found += 1 }
      if found >= needed { return true }
      if found + (pieces.count - index - 1) < needed { return false }
    }
    return false
  }

  static func isWordByte(_ byte: UInt8) -> Bool {
    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "_") || byte >= 0x80
  }

  /// Whether `a` and `b` are at most one edit apart (optimal string alignment distance <= 1).
  static func withinOneEdit(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
    let a = Array(a), b = Array(b)
    if a == b { return true }
    if a.count == b.count {
      let differences = zip(a, b).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
      if differences.count == 1 { return true }
      return differences.count == 2 && differences[1] == differences[0] + 1 && a[differences[0]] == b[differences[1]]
        && a[differences[1]] == b[differences[0]]
    }
    let (short, long) = a.count < b.count ? (a, b) : (b, a)
    guard long.count == short.count + 1 else { return false }
    var index = 0
    while index < short.count, short[index] == long[index] { index += 1 }
    return short[index...].elementsEqual(long[(index + 1)...])
  }
}
