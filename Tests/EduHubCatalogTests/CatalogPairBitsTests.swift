@testable import EduHubCatalog
import EduHubAPI
import PropertyBased
import Testing

/// The search's prefilter may only turn away entries that cannot match: every substring of a text
/// holds its byte pairs in the text's bits, whatever the text.
@Suite("Catalog search prefilter")
struct CatalogPairBitsTests {
  static let alphabet = Array("学生教师籍成绩安全体质健康招生考试食堂校车数据统计名册abcxyz0123 ")
  static let text = Gen.int(in: 0...Int.max).map { seed -> [UInt8] in
    var state = UInt64(truncatingIfNeeded: seed) | 1
    let length = Int(state % 60) + 1
    var characters: [Character] = []
    for _ in 0..<length {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      characters.append(alphabet[Int(state % UInt64(alphabet.count))])
    }
    return Array(String(characters).utf8)
  }

  @Test("every substring of a text passes the text's pair bits; the filter turns away most that do not occur")
  func neverFalseNegative() async {
    await propertyCheck(count: 500, input: Self.text, Gen.int(in: 0...1000), Gen.int(in: 1...12)) { text, start, length in
      var bits = [UInt64](repeating: 0, count: CatalogIndex.PairBits.words)
      CatalogIndex.PairBits.insert(text, into: &bits)
      let from = start % text.count
      let term = Array(text[from..<min(text.count, from + length)])
      #expect(CatalogIndex.PairBits.holds(bits, CatalogIndex.PairBits.required(term)))
    }
    var bits = [UInt64](repeating: 0, count: CatalogIndex.PairBits.words)
    CatalogIndex.PairBits.insert(Array("学生基础数据 全市中小学学生学籍基础信息".utf8), into: &bits)
    #expect(CatalogIndex.PairBits.holds(bits, CatalogIndex.PairBits.required(Array("学籍".utf8))))
    #expect(!CatalogIndex.PairBits.holds(bits, CatalogIndex.PairBits.required(Array("食堂".utf8))))
  }

  @Test("only terms no fuzzy match can find are prefiltered")
  func fuzzyTermsAreNot() {
    #expect(!CatalogIndex.mayMatchApproximately(Array("学籍".utf8)))
    #expect(CatalogIndex.mayMatchApproximately(Array("体质监测".utf8)))
    #expect(!CatalogIndex.mayMatchApproximately(Array("gpa".utf8)))
    #expect(CatalogIndex.mayMatchApproximately(Array("enrolment".utf8)))
    #expect(CatalogIndex.Query("学籍 enrolment", exact: false).required.count == 1)
  }

  @Test("the snapshot's inverted pair bits and packed texts agree with each entry, through replacements, removals and repacking")
  func snapshotAgreesWithEntries() {
    var snapshot = CatalogIndex.Snapshot()
    var facets = CatalogIndex.Facets()
    var live: [String: CatalogIndex.Entry] = [:]
    let words = ["学生", "教师", "食堂", "体质", "健康", "gpa", "成绩"]
    func entry(_ code: String, _ round: Int) -> CatalogIndex.Entry {
      var resource = Eduhub_Catalog_V1_Resource()
      resource.code = code
      resource.name = words[(code.count + round) % words.count] + words[round % words.count]
      let filler = String(repeating: words[(round + 3) % words.count], count: 150)  // 900 bytes: repacking starts past 4 MiB
      let texts = [resource.name, code, "labels", filler, words[(round * 5 + code.count) % words.count]].enumerated()
        .map { (CatalogIndex.weights[$0.offset], Array($0.element.utf8)) }
      return CatalogIndex.Entry(resource: resource, scope: "511700", texts: texts, facetValues: [[facets.number("511700")], [], [], [], [], []])
    }
    for round in 0..<4 {
      for index in 0..<2_000 {
        let code = "r\(index)"
        if round == 3, index % 3 == 0 {
          snapshot.set(code, nil)
          live[code] = nil
        } else {
          let made = entry(code, round + index)
          snapshot.set(code, made)
          live[code] = made
        }
      }
    }
    #expect(snapshot.text.count <= 2 * snapshot.liveText + 4 * 1024 * 1024)
    for word in words {
      let query = CatalogIndex.Query(word, exact: false)
      let candidates = snapshot.candidates(query.required)
      for (code, entry) in live {
        guard let slot = snapshot.slots[code] else {
          Issue.record("no slot for \(code)")
          continue
        }
        let expected = CatalogIndex.score(entry, query)
        if expected != nil, let candidates { #expect(candidates[slot / 64] & (1 << UInt64(slot % 64)) != 0) }
        #expect(snapshot.score(slot, query) == expected, "\(code) \(word)")
      }
    }
    #expect(Set(snapshot.slots.keys) == Set(live.keys))
  }
}
