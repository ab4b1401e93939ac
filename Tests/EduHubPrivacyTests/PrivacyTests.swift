import EduHubCore
import EduHubCrypto
import EduHubPrivacy
import Foundation
import Testing

/// A valid ID number for a person born on `date` (region 511702, sequence 123).
func idNumber(born date: String) -> String {
  let seventeen = "511702" + date.replacingOccurrences(of: "-", with: "") + "123"
  let check = NationalID.checkCharacter(seventeen.map { Int(String($0))! })
  return seventeen + String(UnicodeScalar(check))
}

func date(_ text: String) -> CivilDate {
  let parts = text.split(separator: "-").map { Int($0)! }
  return CivilDate(year: parts[0], month: parts[1], day: parts[2])!
}

@Suite("Age classes at the moment of reading")
struct AgeClassTests {
  @Test("boundaries by birth date", arguments: [
    // (born, today, expected)
    ("2008-11-30", "2026-11-29", AgeClass.minor),  // 17 years 364 days
    ("2008-11-30", "2026-11-30", AgeClass.adult),  // 18 today
    ("2012-11-30", "2026-11-29", AgeClass.child),  // 13 years 364 days
    ("2012-11-30", "2026-11-30", AgeClass.minor),  // 14 today
    ("2008-02-29", "2026-02-28", AgeClass.minor),  // born 29 Feb: not yet 18 on 28 Feb
    ("2008-02-29", "2026-03-01", AgeClass.adult),  // 18 on 1 March of a common year
    ("2012-02-29", "2026-02-28", AgeClass.child),
    ("2012-02-29", "2026-03-01", AgeClass.minor),
    ("1980-06-15", "2026-11-30", AgeClass.adult),
    ("2026-12-01", "2026-11-30", AgeClass.unknown),  // born in the future: not trusted
  ])
  func byBirthDate(born: String, today: String, expected: AgeClass) {
    #expect(AgeClass.of(birthDate: date(born), nationalID: nil, on: date(today)) == expected)
  }

  @Test("a person with no birth date but a valid ID number is classed by the ID's date")
  func byNationalID() {
    #expect(AgeClass.of(birthDate: nil, nationalID: idNumber(born: "2013-05-02"), on: date("2026-11-30")) == .child)
    #expect(AgeClass.of(birthDate: nil, nationalID: idNumber(born: "2000-05-02"), on: date("2026-11-30")) == .adult)
    // An invalid number and no date: the safest reading.
    #expect(AgeClass.of(birthDate: nil, nationalID: "511702200005021230", on: date("2026-11-30")) == .unknown)
    #expect(AgeClass.of(birthDate: nil, nationalID: nil, on: date("2026-11-30")).isMinor)
  }

  @Test("the day changes at midnight in China, not in UTC")
  func chinaTime() {
    // 2026-11-29T16:00:00Z is midnight of 30 November in Beijing.
    #expect(CivilDate(chinaTimeAt: 1_795_968_000) == date("2026-11-30"))
    #expect(CivilDate(chinaTimeAt: 1_795_967_999) == date("2026-11-29"))
    #expect(CivilDate(chinaTimeAt: 0) == date("1970-01-01"))
    #expect(CivilDate(chinaTimeAt: 951_753_600) == date("2000-02-29"))
  }
}

@Suite("National ID numbers (GB 11643)")
struct NationalIDTests {
  @Test("valid numbers parse, with their birth date; x is accepted as X")
  func valid() throws {
    let number = idNumber(born: "2010-01-01")
    #expect(try NationalID(number).birthDate == date("2010-01-01"))
    #expect(try NationalID("11010519491231002X").value == "11010519491231002X")
    #expect(try NationalID("11010519491231002x").value == "11010519491231002X")
  }

  @Test("invalid numbers are refused with a reason that does not repeat them", arguments: [
    "", "12345", "11010519491231002Y", "110105194912310021", "1101051949123100AX", "110105194913310024",
  ])
  func invalid(text: String) {
    do {
      _ = try NationalID(text)
      Issue.record("accepted")
    } catch {
      #expect(!text.isEmpty ? !error.description.contains(text) : true)
    }
  }
}

@Suite("Masking")
struct MaskingTests {
  @Test("each kind reveals only what it should")
  func kinds() throws {
    #expect(Masking.name("张三丰") == "张**")
    #expect(Masking.name("王芳") == "王*")
    #expect(Masking.name("") == "")
    #expect(Masking.phone("13812345663") == "138****5663")
    #expect(Masking.phone("5663") == "**63")
    #expect(Masking.address("四川省达州市通川区朝阳街12号") == "四川省达州市通川区")
    #expect(Masking.address("四川省达州市宣汉县东乡镇") == "四川省达州市宣汉县")
    #expect(Masking.address("somewhere") == "")
    #expect(Masking.birthDate(date("2012-02-29")) == "2012")
    #expect(Masking.email("wangfang@example.cn") == "w***@example.cn")
    #expect(Masking.email("nobody") == "***")
  }

  @Test("ID pseudonyms are stable per key, differ across keys, and keep no digit of the number")
  func pseudonyms() throws {
    let number = idNumber(born: "2012-02-29")
    let countyKey = SecretBytes(randomCount: 32)
    let consumerKey = SecretBytes(randomCount: 32)
    let a = try Masking.nationalID(number, key: countyKey)
    #expect(a == (try Masking.nationalID(number.lowercased(), key: countyKey)))
    #expect(a != (try Masking.nationalID(number, key: consumerKey)))
    #expect(a.hasPrefix("ID-") && a.count == 19)
    #expect(!a.contains("20120229"))
    #expect(a.dropFirst(3).allSatisfy { !$0.isNumber || "23456789".contains($0) })
  }
}
