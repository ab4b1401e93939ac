import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation

/// What the seeded datasets are derived from: the students and teachers of each school, read
/// from the wire without decoding people (a city has close to a million).
struct SeededPeople {
  struct School {
    var students = 0
    var teachers = 0
    var classes = Set<String>()
  }

  var schools: [String: School] = [:]
  /// Grade 9 students (ids), for the evaluation scores: at most 20,000.
  var ninthGraders: [String] = []

  static func read(_ catalog: CatalogService) throws -> SeededPeople {
    var people = SeededPeople()
    // The operator's own summary, in process: only unclassified fields are read (kind, school,
    // grade, class), straight from the stored bodies, and only counts and ids leave here.
    try catalog.store.read { db in
      // Consecutive people mostly share a school (stored school by school): its code is made
      // into a String once per run of them.
      var lastOrg: ArraySlice<UInt8> = []
      var lastCode = ""
      try catalog.store.records.forEachLive(IdentityCollections.person.name, inScope: nil, in: db) { id, body in
        // 2 kind, 11 org_code, 13 grade, 14 class_name (the last occurrence of each counts); one
        // pass over the wire, as WireFields' map per body was a third of the whole scan.
        var kind: UInt64 = 0
        var grade: UInt64 = 0
        var org: Range<Int>?
        var className: Range<Int>?
        var index = 0
        while index < body.count {
          guard let field = try? WireFields.nextField(body, &index) else { return }
          var at = field.value.lowerBound
          switch (field.number, field.wireType) {
          case (2, 0): kind = (try? WireFields.varint(body, &at)) ?? 0
          case (13, 0): grade = (try? WireFields.varint(body, &at)) ?? 0
          case (11, 2): org = field.value
          case (14, 2): className = field.value
          default: break
          }
        }
        guard let org, !org.isEmpty, kind == 1 || kind == 2 else { return }
        if body[org] != lastOrg {
          lastOrg = body[org]
          lastCode = String(decoding: lastOrg, as: UTF8.self)
        }
        if kind == 1 {
          people.schools[lastCode, default: School()].students += 1
          let klass = className.map { String(decoding: body[$0], as: UTF8.self) } ?? ""
          people.schools[lastCode, default: School()].classes.insert("\(grade)/" + klass)
          if grade == 9, people.ninthGraders.count < 20_000 { people.ninthGraders.append(id) }
        } else {
          people.schools[lastCode, default: School()].teachers += 1
        }
      }
    }
    return people
  }

  static func schoolRows(_ people: SeededPeople) -> [[String]] {
    people.schools.keys.sorted().map { code in
      let school = people.schools[code] ?? School()
      return [code, "2026", String(school.students), String(school.teachers), String(school.classes.count)]
    }
  }

  static func scoreRows(_ people: SeededPeople) -> [[String]] {
    var random = SystemRandomNumberGenerator()
    return people.ninthGraders.flatMap { id in
      ["语文", "数学", "英语"].map { subject in
        [id, subject, String(format: "%.1f", Double.random(in: 45...120, using: &random)), "2026-06-18"]
      }
    }
  }

  static func inspectionRows(_ people: SeededPeople) -> [[String]] {
    let hazards = ["消防通道堆放杂物", "教学楼护栏松动", "食堂燃气管道老化", "监控摄像头故障", "无隐患"]
    return people.schools.keys.sorted().enumerated().flatMap { index, code in
      [("2026-03-10", index), ("2026-09-08", index + 2)].map { date, pick in
        let hazard = hazards[pick % hazards.count]
        return [code, date, hazard, hazard == "无隐患" ? "无需整改" : (date.hasPrefix("2026-03") ? "已整改" : "整改中")]
      }
    }
  }
}
