import EduHubPrivacy
import Foundation
import Testing

let today = date("2026-11-30")
let school = "511700/511702/5117020001"
let otherSchool = "511700/511702/5117020002"

let fields = (
  name: FieldPolicy(number: 1, name: "name", sensitivity: .sensitive, masking: .name),
  id: FieldPolicy(number: 2, name: "national_id", sensitivity: .highlySensitive, masking: .nationalID),
  phone: FieldPolicy(number: 3, name: "phone", sensitivity: .sensitive, masking: .phone),
  address: FieldPolicy(number: 4, name: "address", sensitivity: .sensitive, masking: .address),
  birth: FieldPolicy(number: 5, name: "birth_date", sensitivity: .sensitive, masking: .birthDate),
  grade: FieldPolicy(number: 6, name: "grade", sensitivity: .internal, masking: .none)
)

func student(born: String) -> DataSubject {
  DataSubject(personID: "stu-1", scope: school, birthDate: date(born))
}

let ownTeacher = Reader.staff(subject: "t1", grants: [Grant(permission: "people.read.clear", scope: school)])
let otherTeacher = Reader.staff(subject: "t2", grants: [Grant(permission: "people.read.clear", scope: otherSchool)])
let countyOfficial = Reader.staff(subject: "c1", grants: [Grant(permission: "people.read", scope: "511700/511702")])
let countyDataOfficer = Reader.staff(subject: "c2", grants: [Grant(permission: "people.read.clear", scope: "511700/511702")])
let ownGuardian = Reader.guardian(subject: "g1", children: ["stu-1"])
let otherGuardian = Reader.guardian(subject: "g2", children: ["stu-9"])
let herself = Reader.person(subject: "u1", personID: "stu-1")
let consumer = Reader.consumer(id: "big-data-center")
let schoolNode = Reader.node(id: "school-1", clearScope: school)
let countyNode = Reader.node(id: "county", clearScope: nil)

@Suite("The privacy policy: readers × fields × ages")
struct PrivacyPolicyTests {
  let policy = PrivacyPolicy()

  @Test("owners see a minor's data in clear", arguments: [ownTeacher, countyDataOfficer, ownGuardian, herself, schoolNode])
  func owners(reader: Reader) {
    for field in [fields.name, fields.id, fields.phone, fields.address, fields.birth] {
      #expect(policy.decide(reader, student(born: "2012-06-01"), field, on: today) == .clear)
    }
  }

  @Test("everyone else in the region sees a 15-year-old masked, the ID as a pseudonym", arguments: [
    otherTeacher, countyOfficial, otherGuardian, countyNode,
  ])
  func othersSeeMinorMasked(reader: Reader) {
    let subject = student(born: "2011-06-01")
    #expect(policy.decide(reader, subject, fields.name, on: today) == .masked)
    #expect(policy.decide(reader, subject, fields.id, on: today) == .pseudonymized)
    #expect(policy.decide(reader, subject, fields.phone, on: today) == .masked)
    #expect(policy.decide(reader, subject, fields.address, on: today) == .masked)
    #expect(policy.decide(reader, subject, fields.birth, on: today) == .masked)
    #expect(policy.decide(reader, subject, fields.grade, on: today) == .clear)
  }

  @Test("a child under 14 is masked harder: contact details removed", arguments: [
    ("2012-12-01", FieldDecision.removed),  // 13 years 364 days
    ("2012-11-30", FieldDecision.masked),  // 14 today
  ])
  func childBoundary(born: String, phone: FieldDecision) {
    let subject = student(born: born)
    #expect(policy.decide(otherTeacher, subject, fields.phone, on: today) == phone)
    #expect(policy.decide(otherTeacher, subject, fields.address, on: today) == phone)
    #expect(policy.decide(otherTeacher, subject, fields.name, on: today) == .masked)
  }

  @Test("external consumers get de-identified data")
  func consumers() {
    let subject = student(born: "2011-06-01")
    #expect(policy.decide(consumer, subject, fields.name, on: today) == .removed)
    #expect(policy.decide(consumer, subject, fields.phone, on: today) == .removed)
    #expect(policy.decide(consumer, subject, fields.id, on: today) == .pseudonymized)
    #expect(policy.decide(consumer, subject, fields.address, on: today) == .masked)
    #expect(policy.decide(consumer, subject, fields.grade, on: today) == .clear)
  }

  @Test("a person with no birth date and no valid ID is treated as a child")
  func unknownAge() {
    let subject = DataSubject(personID: "x", scope: school)
    #expect(policy.decide(otherTeacher, subject, fields.phone, on: today) == .removed)
  }

  @Test("filtering, sorting or searching by a field the reader sees masked is refused")
  func inference() {
    #expect(!policy.allowsQuery(by: fields.id, for: countyOfficial, over: "511700/511702"))
    #expect(!policy.allowsQuery(by: fields.birth, for: otherTeacher, over: school))
    #expect(!policy.allowsQuery(by: fields.phone, for: ownGuardian, over: school))
    #expect(!policy.allowsQuery(by: fields.id, for: consumer, over: ""))
    #expect(policy.allowsQuery(by: fields.id, for: ownTeacher, over: school))
    #expect(!policy.allowsQuery(by: fields.id, for: ownTeacher, over: "511700/511702"))
    #expect(policy.allowsQuery(by: fields.grade, for: consumer, over: ""))
  }

  @Test("every clear read of a minor's sensitive field is audited, adults' and masked ones are not")
  func audit() {
    let minor = student(born: "2011-06-01")
    let adult = student(born: "2000-06-01")
    #expect(policy.requiresAudit(.clear, minor, fields.id, on: today))
    #expect(!policy.requiresAudit(.masked, minor, fields.name, on: today))
    #expect(!policy.requiresAudit(.clear, adult, fields.id, on: today))
    #expect(!policy.requiresAudit(.clear, minor, fields.grade, on: today))
  }
}
