import EduHubAPI
import EduHubCatalog
import Foundation
import SwiftProtobuf
import Testing

@testable import EduHubSharing

@Suite("Sharing: hand-written encoders (rows on the wire, JSON text) agree with the libraries")
struct SharingWireTests {
  /// Stored texts per type, valid and as masking leaves them (a birth year, a removed value).
  static let cases: [(Eduhub_Catalog_V1_FieldType, String?)] = [
    (.string, "王小明"), (.string, ""), (.string, nil), (.integer, "0"), (.integer, "-42"), (.integer, "9223372036854775807"),
    (.integer, "-9223372036854775808"), (.integer, "12x"), (.integer, "+7"), (.integer, "-"), (.integer, "+"), (.integer, "99999999999999999999"), (.decimal, "12.50"), (.decimal, "-0.5"),
    (.decimal, "1e5"), (.date, "2014-05-01"), (.date, "2014"), (.timestamp, "1788220800000"), (.timestamp, "soon"),
    (.boolean, "true"), (.boolean, "false"), (.boolean, "yes"),
  ]

  @Test("a DataRow encoded from stored text is byte for byte SwiftProtobuf's (typed values, masked text, null)")
  func rowsMatchSwiftProtobuf() throws {
    for (type, stored) in Self.cases {
      // Untrusted: the text may have been rewritten by masking, so it is checked.
      var wire: [UInt8] = []
      RowWire.appendField(1, "K1", to: &wire)
      RowWire.appendValue(stored.map { Array($0.utf8)[...] }, type, trusted: false, to: &wire)
      RowWire.appendVarintField(3, 1, to: &wire)
      var row = Eduhub_Catalog_V1_DataRow()
      row.key = "K1"
      row.values = [DatasetSchema.value(stored, type)]
      row.masked = true
      let expected: [UInt8] = try row.serializedBytes()
      #expect(wire == expected, "\(type) \(stored ?? "nil")")
      #expect(try Eduhub_Catalog_V1_DataRow(serializedBytes: wire) == row)
    }
    // Many random integers and long strings (varint lengths of two and three bytes).
    var random = SystemRandomNumberGenerator()
    for _ in 0..<500 {
      let number = Int64.random(in: .min ... .max, using: &random)
      let text = String(repeating: "数", count: Int.random(in: 0...700, using: &random))
      var wire: [UInt8] = []
      RowWire.appendValue(Array(String(number).utf8)[...], .integer, trusted: true, to: &wire)
      RowWire.appendValue(Array(text.utf8)[...], .string, trusted: true, to: &wire)
      var row = Eduhub_Catalog_V1_DataRow()
      row.values = [DatasetSchema.value(String(number), .integer), DatasetSchema.value(text, .string)]
      #expect(wire == (try row.serializedBytes()))
    }
  }

  @Test("JSON text: escapes quotes, backslashes and control characters; parses back to the same values")
  func jsonText() throws {
    var response = Eduhub_Sharing_V1_CallApiResponse()
    response.columns = ["name", "quote\"d", "n"]
    var row = Eduhub_Catalog_V1_DataRow()
    var text = Eduhub_Catalog_V1_Value()
    text.text = "王\"小\\明\n\t\u{1}\u{7F}/"
    var number = Eduhub_Catalog_V1_Value()
    number.integer = -12
    var null = Eduhub_Catalog_V1_Value()
    null.null = true
    row.values = [text, number, null]
    response.rows = [row]
    response.suppressedGroups = 2
    let json = ApiJSON.answer(response)
    let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
    let rows = try #require(parsed["rows"] as? [[String: Any]])
    #expect(rows[0]["name"] as? String == "王\"小\\明\n\t\u{1}\u{7F}/")
    #expect(rows[0]["quote\"d"] as? Int == -12 && rows[0]["n"] is NSNull)
    #expect(parsed["suppressed_groups"] as? Int == 2 && parsed["truncated"] as? Bool == false)
    #expect(parsed["columns"] as? [String] == ["name", "quote\"d", "n"])
  }
}

@Suite("Sharing: the token bucket and the daily quota")
struct RateLimiterTests {
  @Test("a burst of one second's calls, refilled at the rate; retry-after rounds up; the quota counts logged calls and resets each day")
  func bucket() {
    let limiter = RateLimiter()
    let start = ContinuousClock.now
    var outcomes: [RateLimiter.Outcome] = []
    for _ in 0..<4 { outcomes.append(limiter.take("g", rate: 3, quota: 100, day: "2026-11-30", now: start) { 0 }) }
    #expect(outcomes == [.allowed, .allowed, .allowed, .limited(retryAfter: 1)])
    // A third of a second later one token is back.
    #expect(limiter.take("g", rate: 3, quota: 100, day: "2026-11-30", now: start + .milliseconds(340)) { 0 } == .allowed)
    #expect(limiter.take("g", rate: 3, quota: 100, day: "2026-11-30", now: start + .milliseconds(340)) { 0 } == .limited(retryAfter: 1))
    // Another grant has its own bucket; its quota starts from what the log already holds today.
    var asked = 0
    #expect(limiter.take("h", rate: 100, quota: 5, day: "2026-11-30", now: start) { asked += 1; return 4 } == .allowed)
    #expect(limiter.take("h", rate: 100, quota: 5, day: "2026-11-30", now: start) { asked += 1; return 4 } == .quotaUsed)
    #expect(asked == 1)
    // A new day: the quota again (the log is asked again).
    #expect(limiter.take("h", rate: 100, quota: 5, day: "2026-12-01", now: start + .seconds(1)) { asked += 1; return 0 } == .allowed)
    #expect(asked == 2)
  }
}
