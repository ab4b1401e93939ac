import EduHubCrypto

/// How a value is shown to a reader that may not see it in clear. The kinds match
/// `eduhub.common.v1.MaskingKind`.
public enum MaskingKind: Sendable, Hashable, CaseIterable {
  case none, name, phone, nationalID, address, birthDate, email, freeText, redact
}

/// Field masking, one function per kind. Every function returns a value that reveals less than
/// the input and is stable for the same input (so masked lists can still be compared).
public enum Masking {
  /// `张三丰` → `张**`, `Wang Fang` → `W*** ****`: the first character (the surname for Chinese
  /// names) stays, every other letter becomes `*`.
  public static func name(_ value: String) -> String {
    // By scalar: names are letters and CJK ideographs, where a scalar is a character.
    var scalars = value.unicodeScalars.makeIterator()
    guard let first = scalars.next() else { return "" }
    var out = String.UnicodeScalarView()
    out.append(first)
    while let scalar = scalars.next() { out.append(scalar == " " ? " " : "*") }
    return String(out)
  }

  /// `13812345663` → `138****5663`; shorter numbers keep at most their last two digits.
  public static func phone(_ value: String) -> String {
    let characters = Array(value.unicodeScalars)
    var out = String.UnicodeScalarView()
    if characters.count >= 11 {
      out.append(contentsOf: characters.prefix(3))
      out.append(contentsOf: repeatElement("*", count: characters.count - 7))
      out.append(contentsOf: characters.suffix(4))
      return String(out)
    }
    if characters.count <= 2 { return String(repeating: "*", count: characters.count) }
    out.append(contentsOf: repeatElement("*", count: characters.count - 2))
    out.append(contentsOf: characters.suffix(2))
    return String(out)
  }

  /// A keyed pseudonym of an ID number: `ID-` and 16 base-32 characters, the same for the same
  /// number and key, unrelated across keys. Never a partial number: with the birth date in view the
  /// remaining digits would be guessable.
  public static func nationalID(_ value: String, key: SecretBytes) throws -> String {
    "ID-" + (try pseudonym(value.uppercased(), key: key, length: 16))
  }

  /// An address down to its county: the text up to and including the first 县, 区 or 市 after a
  /// province or city (`四川省达州市通川区朝阳街12号` → `四川省达州市通川区`); unknown forms are removed.
  public static func address(_ value: String) -> String {
    let characters = Array(value.unicodeScalars)
    // The city (prefecture) ends at the first 市 or 盟, or at a 州 not followed by 市 (an autonomous
    // prefecture, 凉山彝族自治州); the county at the next 县, 区, 市 or 旗.
    var cityEnd: Int?
    for (index, character) in characters.enumerated() {
      if character == "市" || character == "盟"
        || (character == "州" && (index + 1 == characters.count || characters[index + 1] != "市"))
      {
        cityEnd = index
        break
      }
    }
    guard let cityEnd else { return "" }
    for index in (cityEnd + 1)..<characters.count
    where characters[index] == "县" || characters[index] == "区" || characters[index] == "市" || characters[index] == "旗" {
      var out = String.UnicodeScalarView()
      out.append(contentsOf: characters[...index])
      return String(out)
    }
    return ""
  }

  /// A birth date down to its year.
  public static func birthDate(_ date: CivilDate) -> String { "\(date.year)" }

  /// `wangfang@example.cn` → `w***@example.cn`.
  public static func email(_ value: String) -> String {
    guard let at = value.firstIndex(of: "@"), at > value.startIndex else { return "***" }
    return String(value[value.startIndex]) + "***" + String(value[at...])
  }

  /// A keyed pseudonym: `length` base-32 characters of keyed BLAKE2b, stable per key.
  public static func pseudonym(_ value: String, key: SecretBytes, length: Int = 16) throws -> String {
    let digest = try KeyedHash.hash(Array(value.utf8), key: key, length: 32)
    let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    var bits: UInt64 = 0
    var count = 0
    var out = ""
    for byte in digest {
      bits = bits << 8 | UInt64(byte)
      count += 8
      while count >= 5, out.count < length {
        count -= 5
        out.append(alphabet[Int((bits >> UInt64(count)) & 31)])
      }
      if out.count == length { break }
    }
    return out
  }

  // MARK: On UTF-8 bytes (the masker's hot path: no String is made)

  /// `name` on UTF-8 bytes, appended to `out`: the first scalar, then `*` for every other scalar
  /// (spaces kept).
  static func appendName(_ value: ArraySlice<UInt8>, to out: inout [UInt8]) {
    var index = value.startIndex
    guard index < value.endIndex else { return }
    // The first scalar: its lead byte and continuation bytes.
    repeat {
      out.append(value[index])
      index += 1
    } while index < value.endIndex && value[index] & 0xC0 == 0x80
    while index < value.endIndex {
      let byte = value[index]
      if byte & 0xC0 != 0x80 { out.append(byte == 0x20 ? 0x20 : UInt8(ascii: "*")) }
      index += 1
    }
  }

  /// `phone` on bytes for an all-ASCII number (nil otherwise, for the String path).
  static func appendPhone(_ value: ArraySlice<UInt8>, to out: inout [UInt8]) -> Bool {
    guard value.allSatisfy({ $0 < 0x80 }) else { return false }
    let count = value.count
    let star = UInt8(ascii: "*")
    if count >= 11 {
      out.append(contentsOf: value.prefix(3))
      out.append(contentsOf: repeatElement(star, count: count - 7))
      out.append(contentsOf: value.suffix(4))
    } else if count <= 2 {
      out.append(contentsOf: repeatElement(star, count: count))
    } else {
      out.append(contentsOf: repeatElement(star, count: count - 2))
      out.append(contentsOf: value.suffix(2))
    }
    return true
  }
}
