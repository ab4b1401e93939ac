import EduHubAPI
import EduHubCore
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import Foundation
import SwiftProtobuf

/// Writes a realistic synthetic Dazhou: the real county-level divisions, towns, schools by level,
/// classes, students whose birth dates fit their grade and whose ID numbers carry valid check digits,
/// guardians with phones (siblings share theirs), teachers with subjects.
///
/// Deterministic for a given seed: the same scale and seed always write the same people. It writes
/// school by school, so memory stays bounded whatever the scale.
public struct CitySeeder: Sendable {
  public enum Scale: String, Sendable, CaseIterable {
    /// 7 counties, 14 towns, 14 schools, about 3,100 people: for tests and the demo.
    case small
    /// 1,353 schools, about 916,000 students, 60,000 teachers and 1.8 million guardians.
    case city
  }

  public struct Summary: Sendable, Hashable {
    public var orgs = 0
    public var schools = 0
    public var students = 0
    public var teachers = 0
    public var guardians = 0
    public var bindings = 0
    public var people: Int { students + teachers + guardians }
  }

  public static let cityCode = "511700"
  /// Dazhou's county-level divisions, with each one's share of the city's schools.
  public static let counties: [(code: String, name: String, weight: Double)] = [
    ("511702", "通川区", 0.11), ("511703", "达川区", 0.16), ("511722", "宣汉县", 0.19), ("511723", "开江县", 0.07),
    ("511724", "大竹县", 0.14), ("511725", "渠县", 0.20), ("511781", "万源市", 0.13),
  ]

  public let scale: Scale
  public let seed: UInt64
  /// The school year the grades are for (it starts on 1 September of this year).
  public let schoolYear: Int

  public init(scale: Scale, seed: UInt64 = 2026, schoolYear: Int = 2026) {
    self.scale = scale
    self.seed = seed
    self.schoolYear = schoolYear
  }

  var totalSchools: Int { scale == .city ? 1353 : 14 }
  var townsPerCounty: Int { scale == .city ? 24 : 2 }
  /// Students per class and classes per grade, by scale.
  var classSize: Int { scale == .city ? 45 : 12 }
  var targetStudents: Int { scale == .city ? 916_000 : 1_000 }
  var targetTeachers: Int { scale == .city ? 60_000 : 90 }

  /// How many people the run will write, roughly (for a progress bar).
  public var expectedPeople: Int { targetStudents + targetTeachers + targetStudents * 196 / 100 }

  /// Writes the city through `identity`'s replica. Calls `progress` after each school with the
  /// running summary.
  @discardableResult
  public func run(into identity: IdentityService, progress: (Summary) -> Void = { _ in }) throws -> Summary {
    try run(into: identity.replica, progress: progress)
  }

  /// Writes the city straight into `replica` as a bulk load (`EncryptedDatabase.bulkLoad`).
  ///
  /// Two threads share the work: one generates the people and serialises them (and, into a store
  /// holding no orgs, people or bindings yet, stamps them too, since none can exist), the caller's
  /// stores each batch while the next is made. `progress` is called on the caller's thread.
  @discardableResult
  public func run(into replica: Replica, progress: (Summary) -> Void = { _ in }) throws -> Summary {
    try replica.store.database.bulkLoad {
      let fresh = try replica.store.database.read { db in
        try [IdentityCollections.org.name, IdentityCollections.person.name, IdentityCollections.guardianship.name]
          .allSatisfy { try replica.store.isEmpty($0, in: db) }
      }
      let batches = Handoff<Batch>(capacity: 2)
      batches.produce(on: "eduhub-seed") { batches in
        try generate { writes, summary in
          let batch = fresh ? Batch(records: try replica.stampNew(writes), summary: summary) : Batch(writes: writes, summary: summary)
          guard batches.send(batch) else { throw CancellationError() }
        }
      }
      var summary = Summary()
      do {
        while let batch = try batches.receive() {
          if let records = batch.records {
            try replica.store.database.write { db in try replica.insert(records, in: db, deferIndexes: true) }
          } else {
            try replica.write(batch.writes, deferIndexes: true)
          }
          summary = batch.summary
          progress(summary)
        }
      } catch {
        batches.cancel()
        throw error
      }
      try replica.store.buildDeferredIndexes()
      return summary
    }
  }

  /// What the generating thread hands the writer: writes, or (into a fresh store) records stamped
  /// already; and the summary once they are stored.
  private struct Batch: Sendable {
    var writes: [Replica.Write] = []
    var records: [StoredRecord]?
    var summary: Summary
  }

  /// Generates the city in order, calling `emit` with batches of about ``transactionRecords``
  /// writes (whole schools) and the running summary.
  private func generate(_ emit: (_ writes: [Replica.Write], _ summary: Summary) throws -> Void) throws {
    var random = SplitMix64(seed: seed)
    var summary = Summary()
    var issued: [String: Int] = [:]
    let city = org(Self.cityCode, "达州市", .city, parent: "")
    var writes: [Replica.Write] = [write(IdentityCollections.org.name, Self.cityCode, Self.cityCode, city)]
    writes.append(write(IdentityCollections.org.name, "EDU-511700", "511700/EDU-511700", org("EDU-511700", "达州市教育局", .bureau, parent: Self.cityCode)))
    summary.orgs += 2
    // Schools per county, by weight, summing to the total.
    var schoolCounts = Self.counties.map { max(1, Int(Double(totalSchools) * $0.weight)) }
    schoolCounts[schoolCounts.count - 1] += totalSchools - schoolCounts.reduce(0, +)
    var pending: [Replica.Write] = writes
    let studentsPerSchool = Double(targetStudents) / Double(totalSchools)
    let teachersPerSchool = Double(targetTeachers) / Double(totalSchools)
    for (countyIndex, county) in Self.counties.enumerated() {
      let countyPath = Self.cityCode + "/" + county.code
      pending.append(write(IdentityCollections.org.name, county.code, countyPath, org(county.code, county.name, .county, parent: Self.cityCode)))
      summary.orgs += 1
      var towns: [(code: String, path: String, name: String)] = []
      for townIndex in 0..<townsPerCounty {
        let code = county.code + Self.padded(townIndex + 1, 3)
        let name = Names.place(&random) + (townIndex == 0 ? "街道" : random.next(100) < 70 ? "镇" : "乡")
        towns.append((code, countyPath + "/" + code, name))
        var town = org(code, name, .town, parent: county.code)
        town.divisionCode = county.code
        pending.append(write(IdentityCollections.org.name, code, countyPath + "/" + code, town))
        summary.orgs += 1
      }
      for schoolIndex in 0..<schoolCounts[countyIndex] {
        let town = towns[schoolIndex % towns.count]
        let level = Self.level(for: schoolIndex, &random)
        let code = county.code + Self.padded(schoolIndex + 1, 4)
        let path = town.path + "/" + code
        var school = org(code, town.name + Self.suffix(level, schoolIndex), .school, parent: town.code)
        school.divisionCode = county.code
        school.schoolLevel = level
        school.address = "四川省达州市\(county.name)\(town.name)\(Names.street(&random))\(random.next(200) + 1)号"
        pending.append(write(IdentityCollections.org.name, code, path, school))
        summary.orgs += 1
        summary.schools += 1
        let students = max(1, Int(studentsPerSchool * Self.sizeFactor(level) * (0.7 + Double(random.next(61)) / 100)))
        let teachers = max(2, Int(teachersPerSchool * Self.sizeFactor(level) * (0.8 + Double(random.next(41)) / 100)))
        try people(
          school: code, path: path, county: county, level: level, students: students, teachers: teachers,
          random: &random, issued: &issued, batch: &pending, summary: &summary)
        // Schools share transactions of about `Self.transactionRecords`: each commit writes every
        // page it touched to the WAL and again at the checkpoint, so fewer, larger ones write (and
        // encrypt) each page fewer times.
        if pending.count >= Self.transactionRecords {
          try emit(pending, summary)
          pending = []
          pending.reserveCapacity(Self.transactionRecords + 2_000)
        }
      }
    }
    if !pending.isEmpty { try emit(pending, summary) }
  }

  private func people(
    school: String, path: String, county: (code: String, name: String, weight: Double), level: Eduhub_Identity_V1_SchoolLevel,
    students: Int, teachers: Int, random: inout SplitMix64, issued: inout [String: Int], batch: inout [Replica.Write],
    summary: inout Summary
  ) throws {
    let grades = Self.grades(level)
    let address = { (random: inout SplitMix64) in
      "四川省达州市\(county.name)\(Names.place(&random))\(["路", "街", "巷"][random.next(3)])\(random.next(300) + 1)号"
    }
    var previousGuardians: [String] = []
    for index in 0..<students {
      let grade = grades[index * grades.count / students]
      let classNumber = (index % max(1, students / grades.count)) / classSize + 1
      var student = Eduhub_Identity_V1_Person()
      student.id = "S\(school)-\(Self.padded(index + 1, 4))"
      student.kind = .student
      let surname = Names.surname(&random)
      student.name = surname + Names.given(&random)
      student.gender = random.next(2) == 0 ? .male : .female
      // Grade g in the school year starting in September Y: born from 1 Sep (Y-6-g) to 31 Aug (Y-5-g).
      let birth = Self.birthDate(grade: Int(grade), schoolYear: schoolYear, &random)
      student.birthDate = birth.description
      student.nationalID = Self.nationalID(region: county.code, birth: birth, male: student.gender == .male, issued: &issued)
      student.ethnicity = random.next(100) < 97 ? "汉族" : ["土家族", "回族", "苗族", "彝族"][random.next(4)]
      student.address = address(&random)
      student.orgCode = school
      student.grade = grade
      student.className = "\(classNumber)班"
      try Validate.person(student)
      batch.append(write(IdentityCollections.person.name, student.id, path, student))
      summary.students += 1
      // Siblings: about one student in twenty shares the guardians of the student before.
      var guardianIDs: [String] = []
      if !previousGuardians.isEmpty, random.next(100) < 5 {
        guardianIDs = previousGuardians
      } else {
        let count = random.next(100) < 96 ? 2 : 1
        for number in 0..<count {
          var guardian = Eduhub_Identity_V1_Person()
          guardian.id = "G\(school)-\(Self.padded(index + 1, 4))\(number == 0 ? "a" : "b")"
          guardian.kind = .guardian
          let father = number == 0
          guardian.name = (father ? surname : Names.surname(&random)) + Names.given(&random)
          guardian.gender = father ? .male : .female
          let born = Self.adultBirthDate(childBorn: birth, &random)
          guardian.birthDate = born.description
          guardian.nationalID = Self.nationalID(region: county.code, birth: born, male: father, issued: &issued)
          guardian.phone = Names.phone(&random)
          guardian.address = student.address
          guardian.orgCode = school
          batch.append(write(IdentityCollections.person.name, guardian.id, path, guardian))
          summary.guardians += 1
          guardianIDs.append(guardian.id)
        }
      }
      for (number, guardianID) in guardianIDs.enumerated() {
        var binding = Eduhub_Identity_V1_GuardianBinding()
        binding.guardianID = guardianID
        binding.childID = student.id
        binding.relation = number == 0 ? "父亲" : "母亲"
        binding.boundBy = "system"
        binding.confirmedBy = "system"
        batch.append(write(IdentityCollections.guardianship.name, guardianID + ":" + student.id, path, binding))
        summary.bindings += 1
      }
      previousGuardians = guardianIDs
    }
    let subjects = ["语文", "数学", "英语", "物理", "化学", "生物", "历史", "地理", "道德与法治", "音乐", "体育", "美术", "信息技术"]
    let titles = ["三级教师", "二级教师", "一级教师", "高级教师", "正高级教师"]
    for index in 0..<teachers {
      var teacher = Eduhub_Identity_V1_Person()
      teacher.id = "T\(school)-\(Self.padded(index + 1, 3))"
      teacher.kind = .teacher
      teacher.name = Names.surname(&random) + Names.given(&random)
      teacher.gender = random.next(100) < 65 ? .female : .male
      let born = CivilDate(year: schoolYear - 23 - random.next(37), month: random.next(12) + 1, day: random.next(28) + 1)!
      teacher.birthDate = born.description
      teacher.nationalID = Self.nationalID(region: county.code, birth: born, male: teacher.gender == .male, issued: &issued)
      teacher.phone = Names.phone(&random)
      teacher.address = address(&random)
      teacher.orgCode = school
      teacher.title = titles[random.next(titles.count)]
      teacher.subjects = [subjects[random.next(subjects.count)]]
      batch.append(write(IdentityCollections.person.name, teacher.id, path, teacher))
      summary.teachers += 1
    }
  }

  // MARK: Shapes of the region

  static func level(for index: Int, _ random: inout SplitMix64) -> Eduhub_Identity_V1_SchoolLevel {
    let roll = random.next(100)
    if roll < 52 { return .primary }
    if roll < 76 { return .juniorSecondary }
    if roll < 88 { return .nineYear }
    if roll < 96 { return .seniorSecondary }
    return .vocational
  }

  static func grades(_ level: Eduhub_Identity_V1_SchoolLevel) -> [Int32] {
    switch level {
    case .primary: return Array(1...6)
    case .juniorSecondary: return Array(7...9)
    case .nineYear: return Array(1...9)
    case .seniorSecondary, .vocational: return Array(10...12)
    default: return Array(1...6)
    }
  }

  /// Bigger schools for more grades and for secondary schools.
  static func sizeFactor(_ level: Eduhub_Identity_V1_SchoolLevel) -> Double {
    switch level {
    case .primary: return 0.8
    case .juniorSecondary: return 1.1
    case .nineYear: return 1.3
    case .seniorSecondary: return 1.6
    case .vocational: return 1.2
    default: return 1
    }
  }

  static func suffix(_ level: Eduhub_Identity_V1_SchoolLevel, _ index: Int) -> String {
    let ordinal = ["第一", "第二", "第三", "第四", "第五", "第六", "第七", "第八", "第九"][index % 9]
    switch level {
    case .primary: return ordinal + "小学"
    case .juniorSecondary: return ordinal + "初级中学"
    case .nineYear: return ordinal + "九年一贯制学校"
    case .seniorSecondary: return ordinal + "高级中学"
    case .vocational: return ordinal + "职业中学"
    default: return "学校"
    }
  }

  static func birthDate(grade: Int, schoolYear: Int, _ random: inout SplitMix64) -> CivilDate {
    // Day 0 is 1 September of the earliest year.
    let year = schoolYear - 6 - grade
    let offset = random.next(365)
    var month = 9
    var day = 1 + offset
    var current = year
    while day > CivilDate.daysIn(month: month, year: current) {
      day -= CivilDate.daysIn(month: month, year: current)
      month += 1
      if month > 12 {
        month = 1
        current += 1
      }
    }
    return CivilDate(year: current, month: month, day: day)!
  }

  static func adultBirthDate(childBorn: CivilDate, _ random: inout SplitMix64) -> CivilDate {
    CivilDate(year: childBorn.year - 22 - random.next(15), month: random.next(12) + 1, day: random.next(28) + 1)!
  }

  /// Records written per transaction, about (whole schools).
  static let transactionRecords = 20_000

  /// `value` in decimal, zero-padded to `width` digits (String(format:) was a tenth of the seed).
  static func padded(_ value: Int, _ width: Int) -> String {
    let digits = String(value)
    return digits.utf8.count >= width ? digits : String(repeating: "0", count: width - digits.utf8.count) + digits
  }

  /// A valid 18-digit ID number: region, birth date, sequence (odd for men), check character.
  /// Sequences count up per region, day and sex (as a registry office assigns them), so no two
  /// people share a number; `issued` remembers how many each has given.
  static func nationalID(region: String, birth: CivilDate, male: Bool, issued: inout [String: Int]) -> String {
    let key = region + birth.description + (male ? "m" : "f")
    let count = issued[key, default: 0]
    issued[key] = count + 1
    // 500 of each sex a day and region; beyond that (never at these sizes) the region's next code.
    let regionCode = count < 500 ? region : String(Int(region)! + count / 500)
    var sequence = (count % 500) * 2
    if male { sequence += 1 }
    let region = regionCode
    let body = region + padded(birth.year, 4) + padded(birth.month, 2) + padded(birth.day, 2) + padded(sequence, 3)
    let check = NationalID.checkCharacter(body.utf8.map { Int($0 - 0x30) })
    return body + String(UnicodeScalar(check))
  }

  // MARK: Records

  func org(_ code: String, _ name: String, _ kind: Eduhub_Identity_V1_OrgKind, parent: String) -> Eduhub_Identity_V1_Org {
    var org = Eduhub_Identity_V1_Org()
    org.code = code
    org.name = name
    org.kind = kind
    org.parentCode = parent
    org.divisionCode = kind == .city || kind == .county ? code : String(code.prefix(6))
    return org
  }

  func write(_ collection: String, _ id: String, _ scope: String, _ message: some Message) -> Replica.Write {
    // Generated messages with only strings and enums always serialize.
    Replica.Write(collection: collection, id: id, scope: scope, body: (try? message.serializedBytes()) ?? [])
  }
}

/// A small, fast, seedable generator (SplitMix64): the seeder's output is the same on every run.
public struct SplitMix64: Sendable, RandomNumberGenerator {
  private var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A number in 0..<bound.
  public mutating func next(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// Chinese names, places and phone numbers.
enum Names {
  static let surnames = Array(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
  static let given = Array(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文辉玉红志鹏宇浩然欣怡梓涵子轩雨婷佳琪俊杰思远晨阳博文嘉怡诗琪梦瑶一鸣天佑雅婷")
  static let placeParts = Array("东西南北中新金石龙凤马安和平福寿长青河山桥坝溪岩柏松花园")

  static func surname(_ random: inout SplitMix64) -> String { String(surnames[random.next(surnames.count)]) }

  static func given(_ random: inout SplitMix64) -> String {
    let first = String(given[random.next(given.count)])
    return random.next(100) < 30 ? first : first + String(given[random.next(given.count)])
  }

  static func place(_ random: inout SplitMix64) -> String {
    String(placeParts[random.next(placeParts.count)]) + String(placeParts[random.next(placeParts.count)])
  }

  static func street(_ random: inout SplitMix64) -> String { place(&random) + ["路", "街", "大道"][random.next(3)] }

  static let prefixes = ["138", "139", "135", "136", "137", "150", "151", "152", "157", "158", "159", "182", "183", "187", "188",
    "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "181", "189", "177", "199"]

  static func phone(_ random: inout SplitMix64) -> String {
    prefixes[random.next(prefixes.count)] + CitySeeder.padded(random.next(100_000_000), 8)
  }
}
