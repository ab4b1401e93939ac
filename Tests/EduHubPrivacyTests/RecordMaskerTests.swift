import EduHubAPI
import EduHubCrypto
import EduHubPrivacy
import EduHubStorage
import Foundation
import SwiftProtobuf
import Testing

/// The policy applied to real protobuf bodies through the classification table the code generator
/// emits for `Person`.
@Suite("Masking Person records from the generated classification")
struct RecordMaskerTests {
  let masker = RecordMasker(classified: Eduhub_Identity_V1_Person.classifiedFields, pseudonymKey: SecretBytes(randomCount: 32))

  static func person(born: String?, nationalID: String = "") -> Eduhub_Identity_V1_Person {
    var person = Eduhub_Identity_V1_Person()
    person.id = "stu-1"
    person.kind = .student
    person.name = "张三丰"
    person.gender = .male
    if let born { person.birthDate = born }
    person.nationalID = nationalID
    person.ethnicity = "汉族"
    person.phone = "13812345663"
    person.address = "四川省达州市通川区朝阳街12号"
    person.email = "zhang@example.cn"
    person.orgCode = "5117020001"
    person.grade = 9
    person.className = "2班"
    return person
  }

  func read(_ person: Eduhub_Identity_V1_Person, as reader: Reader, on day: String = "2026-11-30") throws
    -> (person: Eduhub_Identity_V1_Person, result: RecordMasker.Result)
  {
    let result = try masker.mask(try person.serializedBytes(), personID: person.id, scope: school, for: reader, on: date(day))
    return (try Eduhub_Identity_V1_Person(serializedBytes: result.body), result)
  }

  @Test(
    "ages at the boundaries decide minor or adult",
    arguments: [
      // 17 years 364 days: still a minor; 18 today: an adult.
      ("2008-12-01", "2026-11-30", true), ("2008-11-30", "2026-11-30", false),
      // Born on 29 February: 18 on 1 March in a common year, not on 28 February.
      ("2008-02-29", "2026-02-28", true), ("2008-02-29", "2026-03-01", false),
    ])
  func adulthood(born: String, day: String, minor: Bool) throws {
    let (seen, result) = try read(Self.person(born: born), as: countyOfficial, on: day)
    #expect(seen.name == "张**" && seen.birthDate == String(born.prefix(4)))
    #expect(seen.nationalID.isEmpty)  // No ID in this record.
    // Adults and minors from 14 keep a masked phone and an address down to the county.
    #expect(seen.phone == "138****5663")
    #expect(seen.address == "四川省达州市通川区")
    #expect(result.changed)
    // For their own teacher, the clear read is audited only while they are a minor.
    let (clear, audit) = try read(Self.person(born: born), as: ownTeacher, on: day)
    #expect(!audit.changed && clear.phone == "13812345663")
    #expect(audit.auditedFields.isEmpty == !minor)
  }

  @Test("13 is a child (contact details removed), 14 is not")
  func childBoundary() throws {
    let (thirteen, _) = try read(Self.person(born: "2012-12-01"), as: countyOfficial)
    #expect(thirteen.phone.isEmpty && thirteen.address.isEmpty && thirteen.email.isEmpty)
    #expect(thirteen.name == "张**" && thirteen.birthDate == "2012")
    let (fourteen, _) = try read(Self.person(born: "2012-11-30"), as: countyOfficial)
    #expect(fourteen.phone == "138****5663" && fourteen.email == "z***@example.cn")
  }

  @Test("no birth date but a valid ID: the ID's date decides, and the ID becomes a pseudonym")
  func ageFromID() throws {
    // Born 2015-03-07 per the ID: a child.
    let (seen, result) = try read(Self.person(born: nil, nationalID: "511702201503070020"), as: otherTeacher)
    #expect(seen.nationalID.hasPrefix("ID-") && !seen.nationalID.contains("20150307"))
    #expect(seen.phone.isEmpty)
    #expect(seen.ethnicity.isEmpty)
    #expect(result.changed)
  }

  @Test("who sees a 15-year-old in clear", arguments: [
    (ownTeacher, true), (ownGuardian, true), (herself, true), (otherGuardian, false), (otherTeacher, false),
    (countyOfficial, false), (consumer, false),
  ])
  func readers(reader: Reader, clear: Bool) throws {
    let original = Self.person(born: "2011-05-01", nationalID: "511702201105010017")
    let (seen, result) = try read(original, as: reader)
    #expect(result.changed == !clear)
    #expect((seen.name == original.name) == clear)
    #expect((seen.nationalID == original.nationalID) == clear)
    // Fields that are not personal pass untouched.
    #expect(seen.grade == 9 && seen.className == "2班" && seen.orgCode == "5117020001" && seen.gender == .male)
    if clear { #expect(seen == original) }
  }

  @Test("consumers get de-identified records: names and contacts removed, IDs pseudonymised per consumer")
  func consumers() throws {
    let original = Self.person(born: "2011-05-01", nationalID: "511702201105010017")
    let (first, _) = try read(original, as: .consumer(id: "big-data-center"))
    let (again, _) = try read(original, as: .consumer(id: "big-data-center"))
    let (other, _) = try read(original, as: .consumer(id: "dashboard"))
    let (region, _) = try read(original, as: countyOfficial)
    #expect(first.name.isEmpty && first.phone.isEmpty && first.email.isEmpty)
    #expect(first.nationalID.hasPrefix("ID-") && first.nationalID == again.nationalID)
    #expect(first.nationalID != other.nationalID && first.nationalID != region.nationalID)
    #expect(first.birthDate == "2011" && first.address == "四川省达州市通川区")
  }

  @Test("a body that is not protobuf is an error, not a pass-through")
  func malformed() {
    #expect(throws: (any Error).self) {
      try masker.mask([0x0A, 0xFF], personID: "x", scope: school, for: countyOfficial, on: today)
    }
  }

  /// Words of field names that carry personal data or secrets wherever they appear.
  static let personalWords: Set<String> = [
    "name", "phone", "mobile", "birth", "address", "email", "ethnicity", "password", "secret", "relation", "health",
    "photo", "hash",
  ]
  /// Fields with such a word that hold nothing personal.
  static let notPersonal: Set<String> = [
    "eduhub.identity.v1.Person.class_name", "eduhub.identity.v1.ListPeopleRequest.class_name",
    // The audit chain's hash is over event fields that hold ids only.
    "eduhub.identity.v1.AuditEvent.hash",
  ]

  static func looksPersonal(_ field: String) -> Bool {
    let words = field.split(separator: "_").map(String.init)
    return words.contains(where: personalWords.contains) || field.contains("national_id") || field.contains("id_number")
  }

  @Test("every personal field of every EduHub message carries a classification")
  func everyPersonalFieldIsClassified() {
    var unclassified: [String] = []
    for (message, fields) in EduHubClassification.allFields {
      for field in fields where !field.isClassified {
        let qualified = message + "." + field.name
        if Self.looksPersonal(field.name) && !Self.notPersonal.contains(qualified) {
          unclassified.append(qualified)
        }
      }
    }
    #expect(unclassified.sorted() == [], "classify these with (eduhub.common.v1.privacy)")
    // A classified personal field must say how it is masked.
    for (message, fields) in EduHubClassification.allFields {
      for field in fields where field.sensitivity.rawValue >= 3 {
        #expect(field.masking != .unspecified && field.masking != .none, "\(message).\(field.name)")
      }
    }
  }

  @Test("a sync batch to a school node: its own school's children clear, another school's masked")
  func syncBatch() throws {
    let child = Self.person(born: "2015-03-07", nationalID: "511702201503070020")
    let body: [UInt8] = try child.serializedBytes()
    let records = [
      StoredRecord(collection: "person", id: "stu-1", scope: school, body: body),
      StoredRecord(collection: "person", id: "stu-2", scope: otherSchool, body: body),
      StoredRecord(collection: "person", id: "stu-3", scope: otherSchool, body: body, deleted: true),
    ]
    let (masked, audited) = try masker.mask(records, for: schoolNode, on: today)
    #expect(masked[0].body == body)
    let other = try Eduhub_Identity_V1_Person(serializedBytes: masked[1].body)
    #expect(other.name == "张**" && other.nationalID.hasPrefix("ID-") && other.phone.isEmpty)
    #expect(masked[2] == records[2])
    #expect(audited.map { $0.recordID } == ["stu-1"])
  }
}
