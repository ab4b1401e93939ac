import EduHubAPI
import EduHubCore
import EduHubPrivacy
import EduHubRPC
import Foundation
import SwiftProtobuf

/// Input checks shared by the methods: every message is hostile until checked, and the error says
/// which field is wrong without echoing personal values.
package enum Validate {
  package static func invalid(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }

  /// An identifier: 1 to `maxLength` letters, digits, '-' or '_'.
  package static func identifier(_ value: String, _ field: String, maxLength: Int = 40) throws {
    guard !value.isEmpty else { throw invalid("\(field) is required") }
    guard value.utf8.count <= maxLength,
      value.utf8.allSatisfy({ byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
          || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
      })
    else { throw invalid("\(field) must be 1 to \(maxLength) letters, digits, '-' or '_'") }
  }

  /// Free text of at most `maxLength` characters, without control characters (but line breaks
  /// where `multiline`).
  package static func text(
    _ value: String, _ field: String, maxLength: Int, required: Bool = false, multiline: Bool = false
  ) throws {
    if required && value.trimmingCharacters(in: .whitespaces).isEmpty { throw invalid("\(field) is required") }
    guard value.count <= maxLength else { throw invalid("\(field) has at most \(maxLength) characters") }
    guard !value.unicodeScalars.contains(where: { ($0.value < 0x20 || $0.value == 0x7F) && !(multiline && $0 == "\n") }) else {
      throw invalid("\(field) may not contain control characters")
    }
  }

  static func orgCode(_ code: String, kind: Eduhub_Identity_V1_OrgKind) throws {
    let digits = code.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    switch kind {
    case .city, .county:
      guard digits, code.utf8.count == 6 else { throw invalid("a city or county code is a 6-digit division code") }
    case .town:
      guard digits, code.utf8.count == 9 else { throw invalid("a town code is a 9-digit division code") }
    case .school:
      guard digits, code.utf8.count == 10 else { throw invalid("a school code has 10 digits") }
    case .bureau, .otherUnit:
      try identifier(code, "org code", maxLength: 32)
    case .unspecified, .UNRECOGNIZED:
      throw invalid("org kind is required")
    }
  }

  /// A mainland mobile number: 11 digits starting with 1.
  static func phone(_ phone: String) throws {
    guard phone.isEmpty || (phone.utf8.count == 11 && phone.hasPrefix("1") && phone.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }))
    else { throw invalid("phone must be an 11-digit mobile number") }
  }

  /// A person id holds no ID number: ids go out unmasked (lists, audit targets, bindings, a view's
  /// row keys), so one made of a national ID would be that number in clear.
  static func personID(_ id: String) throws {
    let refused = invalid("id must not contain an ID number (nor 15 digits in a row)")
    // Fifteen digits in a row hold an old-style number, or seventeen of a new one (its check
    // character can be worked out); separators do not hide a valid one.
    var run = 0
    for byte in id.utf8 {
      run = (0x30...0x39).contains(byte) ? run + 1 : 0
      if run >= 15 { throw refused }
    }
    let bytes = Array(id.utf8.filter { $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: "_") && $0 != UInt8(ascii: ".") })
    guard bytes.count >= 18 else { return }
    for start in 0...(bytes.count - 18) {
      if (try? NationalID(String(decoding: bytes[start..<(start + 18)], as: UTF8.self))) != nil { throw refused }
    }
  }

  static func person(_ person: Eduhub_Identity_V1_Person) throws {
    switch person.kind {
    case .student, .teacher, .staff, .guardian: break
    case .unspecified, .UNRECOGNIZED: throw invalid("person kind is required")
    }
    try text(person.name, "name", maxLength: 64, required: true)
    if case .UNRECOGNIZED = person.gender { throw invalid("gender is not a known value") }
    var birthDate: CivilDate?
    if !person.birthDate.isEmpty {
      guard let date = CivilDate(iso: person.birthDate) else { throw invalid("birth_date must be a date as YYYY-MM-DD") }
      birthDate = date
    }
    if !person.nationalID.isEmpty {
      let id: NationalID
      do { id = try NationalID(person.nationalID) } catch { throw invalid("national_id is not valid: \(error.message)") }
      if let birthDate, birthDate != id.birthDate { throw invalid("birth_date does not match the national_id") }
    }
    try text(person.ethnicity, "ethnicity", maxLength: 32)
    try phone(person.phone)
    try text(person.address, "address", maxLength: 200)
    try text(person.email, "email", maxLength: 254)
    if !person.email.isEmpty, !person.email.contains("@") { throw invalid("email must contain @") }
    try identifier(person.orgCode, "org_code", maxLength: 32)
    guard (0...12).contains(person.grade) else { throw invalid("grade must be 0 to 12") }
    if person.kind != .student, person.grade != 0 || !person.className.isEmpty {
      throw invalid("only students have a grade and class")
    }
    try text(person.className, "class_name", maxLength: 32)
    try text(person.title, "title", maxLength: 64)
    guard person.subjects.count <= 16 else { throw invalid("at most 16 subjects") }
    for subject in person.subjects { try text(subject, "subject", maxLength: 32, required: true) }
  }

  static func username(_ username: String) throws {
    guard (3...32).contains(username.utf8.count),
      username.utf8.allSatisfy({ byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
          || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
      })
    else { throw invalid("username must be 3 to 32 letters, digits, '.', '_' or '-'") }
    guard !username.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
      throw invalid("username may not be all digits (that is a phone login)")
    }
  }

  package static func pageSize(_ requested: Int32, default defaultSize: Int, maximum: Int) throws -> Int {
    guard requested >= 0 else { throw invalid("page_size may not be negative") }
    return requested == 0 ? defaultSize : min(Int(requested), maximum)
  }
}

/// Page tokens: the position after which the next page starts, base64url of its parts.
package enum PageToken {
  package static func make(_ parts: [String]) -> String {
    Base64URL.encode(Array(parts.joined(separator: "\u{0}").utf8))
  }

  package static func parse(_ token: String, parts count: Int) throws -> [String]? {
    guard !token.isEmpty else { return nil }
    guard token.utf8.count <= 512, let bytes = Base64URL.decode(token) else {
      throw RPCError(.invalidArgument, "page_token is not valid")
    }
    let parts = String(decoding: bytes, as: UTF8.self).split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == count else { throw RPCError(.invalidArgument, "page_token is not valid") }
    return parts
  }
}
