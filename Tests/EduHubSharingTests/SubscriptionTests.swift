import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

@Suite("Sharing: subscription streams (revocation, resume, views over people, slow consumers, pseudonyms)")
struct SubscriptionTests {
  @Test("revocation ends an open stream with PERMISSION_DENIED on its next message", .timeLimit(.minutes(1)))
  func revocationEndsStream() async throws {
    try await withSharing { fixture in
      let grant = try await fixture.granted()
      let bureau = try await fixture.world.options("bureau")
      let received = Mutex(0)
      let stream = Task {
        try await fixture.subscribe(options: bureau) { messages in
          received.withLock { $0 = messages.count }
          return false
        }
      }
      while received.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(20)) }
      // The stream is idle (no new rows): the revocation's own commit must wake it. How fast is
      // the sharing benchmark's business (change-to-subscriber latency), not a unit test's.
      _ = try await fixture.change(grant, .revoke)
      await expectStatus(.permissionDenied) { try await stream.value }
    }
  }

  @Test("a dropped stream resumed from its cursor delivers every change exactly once")
  func resumeExactlyOnce() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 30)
      let bureau = try await fixture.world.options("bureau")
      // First session: the snapshot in batches of 7, then some changes; dropped mid-way.
      let firstWrites = Task { try await fixture.ingest((31...40).map { SharingFixture.student($0, score: "70") }) }
      let first = try await fixture.subscribe(options: bureau, batch: 7) { messages in
        messages.flatMap(\.changes).count >= 35
      }
      try await firstWrites.value
      // While away: updates of seen rows, new rows and a deletion.
      try await fixture.ingest((41...50).map { SharingFixture.student($0) } + [SharingFixture.student(1, score: "99")])
      let options = try await fixture.world.options("steward")
      _ = try await fixture.catalog.ingestRows(options: options) { writer in
        var message = Eduhub_Catalog_V1_IngestRowsRequest()
        message.resourceCode = SharingFixture.roster
        message.columns = ["student_id"]
        var row = Eduhub_Catalog_V1_IngestRow()
        row.values = [SharingFixture.value("S0002")]
        row.delete = true
        message.rows = [row]
        try await writer.write(message)
      }
      let cursor = try #require(first.last?.cursor)
      let second = try await fixture.subscribe(cursor: cursor, options: bureau, batch: 7) { messages in
        messages.flatMap(\.changes).contains { $0.key == "S0002" && $0.deleted }
      }
      let all = (first + second).flatMap(\.changes)
      // Each of the 50 keys arrived, none twice except as a later change (S0001 updated, S0002 deleted).
      var seen: [String: Int] = [:]
      for change in all { seen[change.key, default: 0] += 1 }
      #expect(seen.count == 50)
      #expect(seen.filter { $0.value > 1 }.keys.sorted() == ["S0001", "S0002"])
      #expect(all.last { $0.key == "S0001" }?.row.values.last?.decimal == "99")
      #expect(first.contains { $0.snapshotDone })
    }
  }

  @Test("a subscription to a view over people: rows as the grant shows them (masked); a pupil who moves to another school is deleted from it")
  func viewSubscription() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      var view = SharingFixture.resource("school.pupils", .conditional)
      view.dataset.view.collection = "person"
      view.dataset.view.personKind = "student"
      view.dataset.view.orgCode = IdentityWorld.school
      view.fields = [
        SharingFixture.field("name", .string, .sensitive, .name), SharingFixture.field("grade", .integer),
        SharingFixture.field("class_name", .string),
      ]
      _ = try await fixture.publish(view)
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(SharingFixture.terms("school.pupils", fields: ["name", "grade"]), options: bureau)
      _ = try await fixture.decide(asked.id, .approve, as: "steward")
      #expect(try await fixture.decide(asked.id, .approve, as: "officer").state == .approved)
      let moved = IdentityWorld.student
      let seen = Mutex<(keys: Set<String>, deleted: Set<String>, snapshot: Bool)>(([], [], false))
      let stream = Task {
        try await fixture.subscribe("school.pupils", options: bureau) { messages in
          seen.withLock { state in
            for change in messages.last?.changes ?? [] {
              if change.deleted { state.deleted.insert(change.key) } else { state.keys.insert(change.key) }
              if !change.deleted { #expect(change.row.values[0].text.hasSuffix("*") && change.row.masked) }  // minors' names masked
            }
            if messages.last?.snapshotDone == true { state.snapshot = true }
            return state.deleted.contains(moved)
          }
        }
      }
      while !seen.withLock({ $0.snapshot }) { try await Task.sleep(for: .milliseconds(20)) }
      #expect(seen.withLock { $0.keys.contains(moved) })
      var update = Eduhub_Identity_V1_UpdatePersonRequest()
      update.person.id = moved
      update.person.orgCode = IdentityWorld.otherSchool
      update.updateMask = ["org_code"]
      _ = try world.identity.updatePerson(update, caller: .operator(name: "test"), peer: "test")
      _ = try await stream.value
      #expect(seen.withLock { $0.deleted } == [moved])
    }
  }

  @Test("a slow consumer holds the server to a bounded amount of unsent rows")
  func slowConsumer() async throws {
    try await withSharing { fixture in
      _ = try await fixture.granted(count: 0)
      // 20,000 rows of about 1 KB.
      let long = String(repeating: "很", count: 300)
      for start in stride(from: 1, to: 20_001, by: 2000) {
        try await fixture.ingest((start..<start + 2000).map { SharingFixture.student($0, className: long) })
      }
      let bureau = try await fixture.world.options("bureau")
      let messages = try await fixture.subscribe(fields: ["student_id", "class_name"], options: bureau, batch: 100) { messages in
        if messages.count == 1 { Thread.sleep(forTimeInterval: 1.5) }  // stall: the server must wait
        return messages.count == 2
      }
      #expect(messages.count == 2)
      try fixture.world.node.sharing.callLog.flush()
      // The session's log: what the server had written when the client went away.
      var stats = Eduhub_Sharing_V1_CallStatsRequest()
      stats.resourceCode = SharingFixture.roster
      // The server logs the session when it notices the client gone: wait for it, however busy the machine.
      var stat: Eduhub_Sharing_V1_CallStat?
      let deadline = ContinuousClock.now + .seconds(60)
      repeat {
        try fixture.world.node.sharing.callLog.flush()
        stat = try await fixture.sharing.getCallStats(stats, options: bureau).stats.first
        if stat?.sessions == 1 { break }
        try await Task.sleep(for: .milliseconds(20))
      } while ContinuousClock.now < deadline
      #expect(stat?.sessions == 1)
      #expect((stat?.rows ?? .max) < 8000, "rows the server produced for a stalled reader: \(stat?.rows ?? -1)")
    }
  }

  @Test("de-identified grants: pseudonyms differ per consumer and stay stable; names removed")
  func pseudonyms() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...3).map { SharingFixture.student($0) })
      try await world.account("bureau2", role: .dataConsumer, org: "511722")
      func grant(_ user: String, _ org: String) async throws {
        let asked = try await fixture.sharing.requestAccess(
          SharingFixture.terms(SharingFixture.roster, org: org, fields: ["student_id", "name", "national_id"], masking: .deidentified),
          options: try await world.options(user))
        _ = try await fixture.decide(asked.id, .approve, as: "steward")
        #expect(try await fixture.decide(asked.id, .approve, as: "officer").state == .approved)
      }
      try await grant("bureau", SharingFixture.county)
      try await grant("bureau2", "511722")
      func ids(_ user: String) async throws -> [String] {
        let rows = try await fixture.subscribe(options: try await world.options(user)) { $0.last?.snapshotDone == true }.flatMap(\.changes)
        #expect(rows.allSatisfy { $0.row.values[1].null && $0.row.masked })  // names removed
        return rows.map { $0.row.values[2].text }
      }
      let first = try await ids("bureau")
      let again = try await ids("bureau")
      let other = try await ids("bureau2")
      #expect(first == again)
      #expect(Set(first).count == 3 && Set(first).isDisjoint(with: other))
      #expect(!first.contains { $0.contains("511702") })
      // Nor can a node that holds the region's pseudonym key (every clear node) compute them: a
      // consumer's key comes from a key of central's own.
      let derived = try SecretBytes(KeyedHash.hash(Array("consumer:org:\(SharingFixture.county)".utf8), key: world.identity.regionPseudonymKey))
      let guessed = try (1...3).map { try Masking.nationalID(SharingFixture.student($0)[2], key: derived) }
      #expect(Set(first).isDisjoint(with: guessed))
    }
  }

  /// Publishes an API over the roster: counts and mean scores by class, or rows by id.
}
