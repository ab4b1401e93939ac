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
    /// The texts joined by 0xFF (never in UTF-8, so no term spans two), and where each ends: one
    /// scan finds a term's first occurrence, and since the texts go by falling weight, that is
    /// its best weight.
    let joined: [UInt8]
    let ends: [Int]
    /// The NFC name, a zero byte and the code, as UTF-8: its byte order is the order of the
    /// pair (name, code) as Swift compares strings, without comparing strings per search.
    let order: [UInt8]

    init(resource: Eduhub_Catalog_V1_Resource, scope: String, texts: [(weight: Int, bytes: [UInt8])], facetValues: [[Int]]) {
      self.resource = resource
      self.scope = scope
      self.texts = texts
      self.facetValues = facetValues
      var pairs = [UInt64](repeating: 0, count: PairBits.words)
      for text in texts { PairBits.insert(text.bytes, into: &pairs) }
      self.pairs = pairs
      var joined: [UInt8] = []
      var ends: [Int] = []
      for text in texts {
        joined += text.bytes
        ends.append(joined.count)
        joined.append(0xFF)
      }
      self.joined = joined
      self.ends = ends
      order = Array(resource.name.precomposedStringWithCanonicalMapping.utf8) + [0] + Array(resource.code.utf8)
    }

    /// Whether this entry sorts before `other` by (name, code).
    func precedes(_ other: Entry) -> Bool {
      order.withUnsafeBufferPointer { a in
        other.order.withUnsafeBufferPointer { b in
          guard let x = a.baseAddress, let y = b.baseAddress else { return a.count < b.count }
          let common = memcmp(x, y, min(a.count, b.count))
          return common != 0 ? common < 0 : a.count < b.count
        }
      }
    }

    /// Where `term` first occurs in the joined texts (see `CatalogIndex.firstHit`).
    func firstHit(_ term: [UInt8]) -> (section: Int, at: Int)? {
      joined.withUnsafeBufferPointer { CatalogIndex.firstHit(term, in: $0) { ends[$0] } }
    }
  }

  /// A bitset of hashed byte pairs: if a text contains a term, it contains each of the term's
  /// consecutive byte pairs, so a pair missing from an entry's bits rules the term out there.
  enum PairBits {
    static let words = 32
    static let bits = words * 64

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

  /// Facet values (and scope paths) by number: numbers are handed out once and never change, so
  /// an entry's numbers stay valid in every later snapshot.
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

  /// What the filters and the visibility rule compare, per slot, as small numbers (facet numbers,
  /// -1 for no value): a search reads these for every resource and the entry only for the few
  /// that pass.
  struct Key: Sendable {
    var live = false
    var retired = false
    var notShared = false
    var scope: Int32 = 0
    var org: Int32 = -1, system: Int32 = -1, type: Int32 = -1, theme: Int32 = -1, sharing: Int32 = -1
    /// Bit `number % 64` of each exchange form: a form whose bit is clear is surely not there.
    var forms: UInt64 = 0
    /// Where the entry's texts lie in `Snapshot.text`: `Snapshot.header` bytes of little-endian
    /// UInt32 section ends (one for each text but the last, relative to the texts), then the
    /// joined texts.
    var textStart: Int32 = 0, textCount: Int32 = 0
  }

  /// The catalog as one search reads it: a slot per resource, the filter keys in one flat array,
  /// and the pair bits inverted (per pair bit, a bitmap of the slots whose texts hold it: a query
  /// ANDs a few rows instead of reading 256 scattered bytes per resource, which was a cache miss
  /// per resource). Searches take a copy of this value (copy on write: free until the next change).
  struct Snapshot: Sendable {
    var entries: [Entry?] = []
    var keys: [Key] = []
    /// `PairBits.bits` rows of `capacity / 64` words each.
    var postings: [UInt64] = []
    var capacity = 0
    var slots: [String: Int] = [:]
    var free: [Int] = []
    /// Every live entry's joined texts, packed (a match reads one short run here rather than
    /// chasing the entry's objects); replaced texts stay until they outweigh the live ones.
    var text: [UInt8] = []
    var liveText = 0
    var facets = Facets()
    /// Scope paths by number (a search decides each path's subtree tests once, not per resource).
    var scopes = Facets()

    /// The resource `code` as search sees it now.
    func entry(_ code: String) -> Entry? { slots[code].flatMap { entries[$0] } }

    /// Puts `entry` in `code`'s slot (a new one, or a freed one), or frees the slot when nil.
    mutating func set(_ code: String, _ entry: Entry?) {
      guard let entry else {
        guard let slot = slots.removeValue(forKey: code) else { return }
        post(slot, entries[slot]?.pairs, false)
        liveText -= Int(keys[slot].textCount)
        entries[slot] = nil
        keys[slot] = Key()
        free.append(slot)
        return
      }
      let slot: Int
      if let known = slots[code] {
        slot = known
      } else if let reused = free.popLast() {
        slot = reused
      } else {
        slot = entries.count
        entries.append(nil)
        keys.append(Key())
        if slot >= capacity { grow() }
      }
      slots[code] = slot
      post(slot, entries[slot]?.pairs, false)
      post(slot, entry.pairs, true)
      entries[slot] = entry
      let resource = entry.resource
      func single(_ filter: Int) -> Int32 { entry.facetValues[filter].first.map { Int32($0) } ?? -1 }
      var key = Key(live: true, retired: resource.retired, notShared: resource.sharingClass == .notShared)
      key.scope = Int32(scopes.number(entry.scope))
      key.org = single(0)
      key.system = single(1)
      key.type = single(2)
      key.theme = single(3)
      key.sharing = single(5)
      for form in entry.facetValues[4] { key.forms |= 1 << UInt64(form & 63) }
      liveText -= Int(keys[slot].textCount)
      (key.textStart, key.textCount) = pack(entry)
      keys[slot] = key
      if text.count > 4 * 1024 * 1024, text.count > 2 * liveText { repack() }
    }

    /// The bytes of an entry's section ends in front of its texts in `text`.
    static let header = 4 * (CatalogIndex.weights.count - 1)

    /// Appends `entry`'s section ends and joined texts to `text`.
    private mutating func pack(_ entry: Entry) -> (Int32, Int32) {
      let start = text.count
      for section in 0..<(CatalogIndex.weights.count - 1) {
        let end = UInt32(clamping: section < entry.ends.count ? entry.ends[section] : entry.joined.count)
        withUnsafeBytes(of: end.littleEndian) { text.append(contentsOf: $0) }
      }
      text += entry.joined
      liveText += text.count - start
      return (Int32(clamping: start), Int32(clamping: text.count - start))
    }

    /// Packs the live entries' texts again, dropping replaced ones.
    private mutating func repack() {
      text = []
      liveText = 0
      for slot in entries.indices {
        guard let entry = entries[slot] else { continue }
        (keys[slot].textStart, keys[slot].textCount) = pack(entry)
      }
    }

    /// The relevance of the entry in `slot` for `query` (as `CatalogIndex.score`), read from the
    /// packed texts when no term can match approximately.
    func score(_ slot: Int, _ query: Query) -> Int? {
      guard !query.approximate else { return entries[slot].flatMap { CatalogIndex.score($0, query) } }
      let exactOrTerms = query.exact.map { [$0] } ?? query.terms
      let key = keys[slot]
      return text.withUnsafeBufferPointer { arena -> Int? in
        guard let base = arena.baseAddress else { return nil }
        let texts = UnsafeBufferPointer(start: base + Int(key.textStart) + Self.header, count: Int(key.textCount) - Self.header)
        func end(_ section: Int) -> Int {
          var value: UInt32 = 0
          withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: base + Int(key.textStart) + section * 4, count: 4)) }
          return Int(UInt32(littleEndian: value))
        }
        var total = 0
        for term in exactOrTerms {
          guard let hit = CatalogIndex.firstHit(term, in: texts, end: end) else { return nil }
          if query.exact != nil { return CatalogIndex.weights[hit.section] * 2 }
          total += CatalogIndex.exactScore(hit)
        }
        return total
      }
    }

    /// Sets or clears `slot`'s bit in the rows of the pair bits in `bits`.
    private mutating func post(_ slot: Int, _ bits: [UInt64]?, _ on: Bool) {
      guard let bits else { return }
      let stride = capacity / 64, word = slot / 64, mask = UInt64(1) << UInt64(slot % 64)
      for (index, value) in bits.enumerated() where value != 0 {
        for bit in 0..<64 where value & (1 << UInt64(bit)) != 0 {
          let at = (index * 64 + bit) * stride + word
          postings[at] = on ? postings[at] | mask : postings[at] & ~mask
        }
      }
    }

    /// Doubles the slots the postings have room for, laying them out again.
    private mutating func grow() {
      capacity = max(1024, capacity * 2)
      postings = [UInt64](repeating: 0, count: PairBits.bits * capacity / 64)
      for (slot, entry) in entries.enumerated() { post(slot, entry?.pairs, true) }
    }

    /// The slots that may hold every term in `required` (each term's pair bits), as a bitmap of
    /// `capacity / 64` words; nil when nothing is required (every slot may match).
    func candidates(_ required: [[(word: Int, mask: UInt64)]]) -> [UInt64]? {
      guard !required.isEmpty else { return nil }
      let stride = capacity / 64
      var result = [UInt64](repeating: ~0, count: stride)
      postings.withUnsafeBufferPointer { rows in
        result.withUnsafeMutableBufferPointer { result in
          for term in required {
            for (index, value) in term {
              for bit in 0..<64 where value & (1 << UInt64(bit)) != 0 {
                let row = (index * 64 + bit) * stride
                for word in 0..<stride { result[word] &= rows[row + word] }
              }
            }
          }
        }
      }
      return result
    }
  }

  private struct State {
    var snapshot = Snapshot()
    var sequence: Int64 = 0
  }

  private let state = Mutex(State())

  /// Weights of the matched parts: a hit in the name counts most.
  static let nameWeight = 10, codeWeight = 8, labelWeight = 4, summaryWeight = 3, contentWeight = 2
  /// The weights in the order of an entry's texts.
  static let weights = [nameWeight, codeWeight, labelWeight, summaryWeight, contentWeight]

  static func entry(_ record: StoredRecord, facets: inout Facets) throws -> Entry {
    var resource = try CatalogCollections.resource.decode(record)
    resource.responsibleOrgPath = record.scope
    func bytes(_ text: String) -> [UInt8] { Array(text.lowercased().utf8) }
    let content = resource.fields.flatMap { [$0.name, $0.description_p] }.joined(separator: " ")
    return Entry(
      resource: resource, scope: record.scope,
      texts: [
        bytes(resource.name), bytes(resource.code),
        bytes([resource.theme, resource.publishingSystem, resource.exchangeForms.joined(separator: " ")].joined(separator: " ")),
        bytes(resource.summary), bytes(content),
      ].enumerated().map { (weights[$0.offset], $0.element) },
      facetValues: [
        [resource.responsibleOrgCode], [resource.publishingSystem], [typeName(resource.type)], [resource.theme],
        resource.exchangeForms, [sharingName(resource.sharingClass)],
      ].map { $0.filter { !$0.isEmpty }.map { facets.number($0) } })
  }

  /// The facet value of a type and of a sharing class (their enum case names).
  static func typeName(_ type: Eduhub_Catalog_V1_ResourceType) -> String { "\(type)" }
  static func sharingName(_ sharing: Eduhub_Catalog_V1_SharingClass) -> String { "\(sharing)" }

  /// The resources as of `db`'s snapshot (or newer), after applying what changed since last time;
  /// nil, with nothing applied, when more than `limit` resources changed (a caller on an event
  /// loop then leaves the catch-up to a task).
  func snapshot(store: RecordStore, collection: String, limit: Int? = nil, in db: Database) throws -> Snapshot? {
    let known = state.withLock { $0.sequence }
    let (records, evicted) = try store.changes(of: collection, after: known, limit: limit.map { $0 + 1 } ?? .max, in: db)
    if let limit, records.count + evicted.count > limit { return nil }
    guard !records.isEmpty || !evicted.isEmpty else { return state.withLock { $0.snapshot } }
    // Decoded under the lock (facet numbers are handed out there); applied in sequence order,
    // skipping what a concurrent catch-up already applied.
    var decoded: [(sequence: Int64, code: String, resource: StoredRecord?)] = records.map { record in
      (record.sequence, record.id, record.deleted ? nil : record)
    }
    decoded += evicted.map { ($0.sequence, $0.id, nil) }
    decoded.sort { $0.sequence < $1.sequence }
    return try state.withLock { state in
      for change in decoded where change.sequence > state.sequence {
        let entry = try change.resource.map { try Self.entry($0, facets: &state.snapshot.facets) }
        state.snapshot.set(change.code, entry)
      }
      state.sequence = max(state.sequence, decoded.last?.sequence ?? 0)
      return state.snapshot
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
    /// Whether some term may also match approximately (scored from the entry's texts).
    private(set) var approximate = false

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
      approximate = terms.contains(where: CatalogIndex.mayMatchApproximately)
    }

    var isEmpty: Bool { terms.isEmpty && exact == nil }

    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
      (0x3400...0x9FFF).contains(scalar.value) || (0xF900...0xFAFF).contains(scalar.value)
        || (0x20000...0x2FA1F).contains(scalar.value)
    }
  }

  /// The relevance of `entry` for `query`, or nil when it does not match. Depends on the resource
  /// alone (not on the rest of the catalog), so the order is the same on every page. The caller
  /// has checked the query's required pairs (`Snapshot.candidates`).
  static func score(_ entry: Entry, _ query: Query) -> Int? {
    if let exact = query.exact { return entry.firstHit(exact).map { weights[$0.section] * 2 } }
    var total = 0
    for term in query.terms {
      // Texts go by falling weight: without a fuzzy match to weigh, the first hit decides.
      if !mayMatchApproximately(term) {
        guard let hit = entry.firstHit(term) else { return nil }
        total += exactScore(hit)
        continue
      }
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

  /// Where `term` first occurs in an entry's joined texts (they go by falling weight, in the order
  /// of `weights`): the text, so the heaviest one holding it, and the offset. `end(n)` is where
  /// text n ends, for each text but the last.
  static func firstHit(_ term: [UInt8], in texts: UnsafeBufferPointer<UInt8>, end: (Int) -> Int) -> (section: Int, at: Int)? {
    guard let at = firstIndex(of: term, in: texts) else { return nil }
    var section = 0
    while section < weights.count - 1, end(section) <= at { section += 1 }
    return (section, at)
  }

  /// A term's score from its first exact hit: its text's weight doubled, and 5 more for a name
  /// that is the term or starts with it (the name is the first text).
  static func exactScore(_ hit: (section: Int, at: Int)) -> Int {
    weights[hit.section] * 2 + (hit.section == 0 && hit.at == 0 ? 5 : 0)
  }

  /// Whether `needle` occurs in `haystack` (bytes).
  static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    firstIndex(of: needle, in: haystack) != nil
  }

  /// Where `needle` first occurs in `haystack` (bytes).
  static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    haystack.withUnsafeBufferPointer { firstIndex(of: needle, in: $0) }
  }

  static func firstIndex(of needle: [UInt8], in hay: UnsafeBufferPointer<UInt8>) -> Int? {
    guard !needle.isEmpty else { return 0 }
    guard hay.count >= needle.count else { return nil }
    // memchr to each candidate last byte, memcmp there (glibc's memmem is not exported to Swift).
    // The last byte, because in Chinese UTF-8 the first bytes (E4…E9) recur every three bytes,
    // while a last (continuation) byte is spread over 64 values.
    return needle.withUnsafeBufferPointer { pin -> Int? in
      guard let base = hay.baseAddress, let pattern = pin.baseAddress else { return nil }
      let tail = pin.count - 1
      var start = tail
      while start < hay.count {
        guard let hit = memchr(base + start, Int32(pattern[tail]), hay.count - start) else { return nil }
        let at = UnsafePointer<UInt8>(hit.assumingMemoryBound(to: UInt8.self)) - base
        if memcmp(base + at - tail, pattern, pin.count) == 0 { return at - tail }
        start = at + 1
      }
      return nil
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
