@testable import EduHubSharing
import Foundation
import PropertyBased
import Synchronization
import Testing

/// The gateway's quick reading of a call's JSON parameters must agree with JSONDecoder's on every
/// body it accepts, and leave every other body to it.
@Suite("Shared-API JSON parameters")
struct ApiParametersTests {
  /// Objects of a few members whose names and values come from valid and invalid pieces, with
  /// now and then a piece of punctuation swapped or dropped.
  static let keys = ["\"id\"", "\"学号\"", "\"\"", "\"id\"", "\"a\\\"b\"", "id", "\"x"]
  static let values = [
    "\"S0004242\"", "\"王芳\"", "12", "-7", "0", "01", "-0", "1.5", "2e3", "true", "false", "null", "\"a\\\"b\"", "\"\\u4e2d\"", "[1]",
    "{}", "\"\"", "9223372036854775807", "9223372036854775808", "tru", "-", "\"\t\"",
  ]
  static let body = Gen.int(in: 0...Int.max).map { seed -> String in
    var state = UInt64(truncatingIfNeeded: seed) | 1
    func next(_ count: Int) -> Int {
      state ^= state << 13
      state ^= state >> 7
      state ^= state << 17
      return Int(state % UInt64(count))
    }
    func punctuation(_ mark: String) -> String { next(12) == 0 ? ["", ",", ":", " ", "}"][next(5)] : mark }
    var text = punctuation(" {")
    for member in 0..<next(4) {
      if member > 0 { text += punctuation(", ") }
      text += keys[next(keys.count)] + punctuation(": ") + values[next(values.count)]
    }
    return text + punctuation("}\n")
  }

  static func decoded(_ body: [UInt8]) -> [String: String]? { try? ApiGateway.parameters(body) }

  @Test("random bodies: the quick reading is JSONDecoder's answer or declines")
  func agreesWithDecoder() async {
    let accepted = Mutex(0)
    await propertyCheck(count: 3000, input: Self.body) { text in
      let bytes = Array(text.utf8)
      if let quick = ApiParameters.flat(bytes) {
        #expect(Self.decoded(bytes) == quick, "\(text)")
      }
      accepted.withLock { $0 += ApiParameters.flat(bytes) == nil ? 0 : 1 }
    }
    #expect(accepted.withLock { $0 } > 300)  // the quick reading was tried on many bodies it accepts
  }

  @Test("the shapes a consumer sends: strings, integers, booleans and null read quickly; the rest by the decoder or refused")
  func shapes() throws {
    #expect(ApiParameters.flat(Array(#" {"id": "S0004242", "n": -12, "ok": true, "none": null} "#.utf8)) == ["id": "S0004242", "n": "-12", "ok": "true"])
    #expect(ApiParameters.flat(Array("{}".utf8)) == [:])
    #expect(ApiParameters.flat(Array(#"{"score": 1.50}"#.utf8)) == nil)  // a fraction: the decoder's reading
    #expect(try ApiGateway.parameters(Array(#"{"score": 1.50}"#.utf8)) == ["score": "1.5"])
    #expect(ApiParameters.flat(Array(#"{"name": "a\"b"}"#.utf8)) == nil)
    #expect(try ApiGateway.parameters(Array(#"{"name": "a\"b"}"#.utf8)) == ["name": #"a"b"#])
    #expect(ApiParameters.flat(Array(#"{"id": "1", "id": "2"}"#.utf8)) == nil)
    #expect(throws: (any Error).self) { try ApiGateway.parameters(Array(#"{"id": ["1"]}"#.utf8)) }
    #expect(throws: (any Error).self) { try ApiGateway.parameters(Array(#"{"id": "1""#.utf8)) }
  }
}
