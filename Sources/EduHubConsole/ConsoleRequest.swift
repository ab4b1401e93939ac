import EduHubCrypto
import EduHubIdentity
import EduHubRPC

/// One browser request as the console's pages see it: who asks (resolved the way the RPCs resolve
/// a caller), the form it posted, and the cookies the answer must set.
struct Visit {
  let request: HTTPRequest
  /// The signed-in caller; nil on the sign-in page.
  let caller: Caller?
  /// The token every form of this session carries (derived from the session: nothing stored).
  let formToken: String
  /// `Set-Cookie` values the answer carries (a refreshed session).
  var cookies: [String]
  /// The posted form (urlencoded), empty for GET.
  let form: [String: [String]]
  /// The files a multipart form carried.
  var files: [Multipart.Part] = []

  /// The peer every audit entry of the console names: the browser's address, marked as the console's.
  var peer: String { "console:" + request.peer }

  /// The signed-in caller. Pages that need one are only routed with one.
  var signedIn: Caller {
    get throws {
      guard let caller else { throw RPCError(.unauthenticated, "请先登录") }
      return caller
    }
  }

  /// The query that shows `text` as the notice of the page an action redirects to. It is sealed
  /// with the session's form token, so a link from elsewhere cannot make the console say anything.
  func notice(_ text: String) -> String {
    "done=" + FormCoding.encode(text) + "&seal=" + Self.seal(text, formToken: formToken)
  }

  /// The notice this page was sent with by one of this session's actions, if any.
  var flash: String? {
    guard let text = request.query["done"], !text.isEmpty, text.utf8.count <= 300,
      ConstantTime.equals(Array((request.query["seal"] ?? "").utf8), Array(Self.seal(text, formToken: formToken).utf8))
    else { return nil }
    return text
  }

  private static func seal(_ text: String, formToken: String) -> String {
    Base64URL.encode(KeyedHash.digest(Array(("eduhub-console-notice\0" + formToken + "\0" + text).utf8), length: 16))
  }

  /// The first value of a form field, trimmed of surrounding whitespace.
  func field(_ name: String) -> String { form[name]?.first.map { $0.trimmingWhitespace } ?? "" }
  /// Every value of a repeated form field (checkboxes).
  func fields(_ name: String) -> [String] { form[name] ?? [] }
  /// A query parameter.
  func query(_ name: String) -> String { request.query[name] ?? "" }
}

extension String {
  var trimmingWhitespace: String {
    var scalars = Substring(self)
    while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
    while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
    return String(scalars)
  }
}

/// `application/x-www-form-urlencoded` bodies and `Cookie` headers.
enum FormCoding {
  /// The fields of an urlencoded body, each with its values in order; nil past 1,000 fields (no
  /// page has a tenth of that).
  static func parse(_ body: [UInt8]) -> [String: [String]]? {
    var out: [String: [String]] = [:]
    let pairs = body.split(separator: UInt8(ascii: "&"), maxSplits: 1_000)
    guard pairs.count <= 1_000 else { return nil }
    for pair in pairs {
      let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
      func decode(_ bytes: ArraySlice<UInt8>) -> String {
        PercentEncoding.decode(bytes.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 })
      }
      let name = decode(parts[0])
      out[name, default: []].append(parts.count > 1 ? decode(parts[1]) : "")
    }
    return out
  }

  /// Percent-encodes a query value (everything but unreserved characters).
  static func encode(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
        UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(byte))
      default:
        let hex = Array("0123456789ABCDEF".utf8)
        out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
      }
    }
    return out
  }

  /// How many cookies named `name` a request carries.
  static func count(of name: String, in headers: [(name: String, value: String)]) -> Int {
    headers.filter { $0.name == "cookie" }.reduce(0) { total, header in
      total + header.value.split(separator: ";").filter { $0.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: " ") == name }.count
    }
  }

  /// The cookies of a request (`name=value; name=value`); the first of a repeated name wins.
  static func cookies(_ headers: [(name: String, value: String)]) -> [String: String] {
    var out: [String: String] = [:]
    for header in headers where header.name == "cookie" {
      for item in header.value.split(separator: ";") {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { continue }
        let name = String(parts[0]).trimmingWhitespace
        if out[name] == nil { out[name] = String(parts[1]).trimmingWhitespace }
      }
    }
    return out
  }
}
