import EduHubCore
/// An 18-digit resident identity number (GB 11643-1999): 6-digit region code, 8-digit birth date
/// (YYYYMMDD), 3-digit sequence (odd for men), and a check character (0-9 or X) computed with
/// ISO 7064 MOD 11-2.
public struct NationalID: Sendable, Hashable {
  public let value: String

  /// Parses and validates `text` (an `x` check character is accepted as `X`).
  /// - Throws: ``NationalIDError`` naming what is wrong, never echoing the number.
  public init(_ text: String) throws(NationalIDError) {
    let upper = text.uppercased()
    let characters = Array(upper.utf8)
    guard characters.count == 18 else { throw NationalIDError("an ID number has 18 characters") }
    guard characters[0..<17].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
      throw NationalIDError("the first 17 characters of an ID number are digits")
    }
    let last = characters[17]
    guard (last >= 0x30 && last <= 0x39) || last == UInt8(ascii: "X") else {
      throw NationalIDError("the last character of an ID number is a digit or X")
    }
    guard Self.checkCharacter(characters[0..<17].map { Int($0 - 0x30) }) == last else {
      throw NationalIDError("the check digit does not match")
    }
    guard Self.birthDate(characters) != nil else { throw NationalIDError("the birth date in the ID number is not a date") }
    value = upper
  }

  /// The birth date the number carries.
  public var birthDate: CivilDate { Self.birthDate(Array(value.utf8))! }

  /// The check character (ASCII) for 17 digits.
  public static func checkCharacter(_ digits: [Int]) -> UInt8 {
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    let sum = zip(digits, weights).reduce(0) { $0 + $1.0 * $1.1 }
    return Array("10X98765432".utf8)[sum % 11]
  }

  private static func birthDate(_ characters: [UInt8]) -> CivilDate? {
    func number(_ range: Range<Int>) -> Int { range.reduce(0) { $0 * 10 + Int(characters[$1] - 0x30) } }
    return CivilDate(year: number(6..<10), month: number(10..<12), day: number(12..<14))
  }
}

/// Why a national ID number is not valid.
public typealias NationalIDError = Failure<NationalIDFailure>
public enum NationalIDFailure {}
