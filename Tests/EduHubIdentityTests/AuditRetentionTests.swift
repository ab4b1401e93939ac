import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubStorage
import EduHubTestSupport
import Foundation
import GRDB
import Testing

/// Audit retention: at least 184 days kept, the older pruned with the chain still verifiable, and
/// periods exported as archives that the node's audit key checks.
@Suite("Audit retention and export")
struct AuditRetentionTests {
  static let day: Int64 = 86_400_000
  static let now: Int64 = 1_796_000_000_000  // 2026-12

  /// Entries `days` ago, one per day given, written in that order.
  static func record(_ audit: AuditLog, daysAgo days: [Int64]) throws {
    for (index, ago) in days.enumerated() {
      audit.record(AuditLog.Entry(actor: "test", action: "test.event", target: "t\(index)", timeMs: now - ago * day))
    }
    try audit.flush()
  }

  @Test("a prune below 184 days is refused; entries older than the retention go, the rest still verify, and the prune is itself recorded")
  func prune() async throws {
    try await withWorld(seed: false) { world in
      let audit = world.node.audit
      #expect(throws: StorageError.self) { try audit.prune(retentionDays: 183, nowMs: Self.now) }
      // A chain of its own: the world's earlier entries were written by the clock of the test.
      try world.node.database.write { db in try db.execute(sql: "DELETE FROM audit_event") }
      try Self.record(audit, daysAgo: [400, 300, 200, 185, 100, 10])
      let pruned = try audit.prune(nowMs: Self.now)
      let events = try audit.events(after: 0, limit: 10_000)
      #expect(pruned.entries == 4)
      #expect(!events.contains { ["t0", "t1", "t2", "t3"].contains($0.target) })
      #expect(events.contains { $0.target == "t4" } && events.contains { $0.target == "t5" })
      #expect(events.contains { $0.action == "audit.pruned" })
      let verified = try audit.verify()
      #expect(verified.brokenAt == nil, "\(verified.reason ?? "")")
      // Nothing more to prune at the same time.
      let again = try audit.prune(nowMs: Self.now)
      #expect(again.entries == 0)
    }
  }

  @Test("after a prune, a changed or removed anchor, or a removed first entry, breaks verification")
  func anchorTampering() async throws {
    for tamper in [
      "UPDATE audit_anchor SET sequence = sequence - 1", "UPDATE audit_anchor SET before_ms = before_ms + 1", "DELETE FROM audit_anchor",
      "DELETE FROM audit_event WHERE sequence = (SELECT MIN(sequence) FROM audit_event)",
    ] {
      try await withWorld(seed: false) { world in
        let audit = world.node.audit
        try world.node.database.write { db in try db.execute(sql: "DELETE FROM audit_event") }
        try Self.record(audit, daysAgo: [300, 250, 5, 1])
        #expect(try audit.prune(nowMs: Self.now).entries == 2)
        #expect(try audit.verify().brokenAt == nil)
        try world.node.database.write { db in try db.execute(sql: tamper) }
        let broken = try audit.verify()
        #expect(broken.brokenAt != nil, "\(tamper) went unnoticed")
      }
    }
  }

  @Test("an exported period verifies with the node's key; a changed, removed or added line does not; the file is 0600")
  func export() async throws {
    try await withWorld(seed: false) { world in
      let audit = world.node.audit
      try world.node.database.write { db in try db.execute(sql: "DELETE FROM audit_event") }
      try Self.record(audit, daysAgo: [30, 20, 15, 12, 10, 5])
      let directory = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-audit-\(UUID())").path
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let path = directory + "/archive.jsonl"
      // Days 20 to 10 ago (10 excluded): the 20, 15 and 12 day old entries, continuing from the 30.
      #expect(try audit.export(sinceMs: Self.now - 20 * Self.day, untilMs: Self.now - 10 * Self.day, to: path) == 3)
      let intact = try audit.verifyArchive(path)
      #expect(intact.brokenAt == nil && intact.entries == 3, "\(intact.reason ?? "")")
      let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
      #expect(mode?.intValue == 0o600)
      let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
      func check(_ changed: [String]) throws -> AuditLog.Verification {
        let other = directory + "/changed.jsonl"
        try (changed.joined(separator: "\n") + "\n").write(toFile: other, atomically: true, encoding: .utf8)
        return try audit.verifyArchive(other)
      }
      var edited = lines
      edited[2] = edited[2].replacingOccurrences(of: "\"t2\"", with: "\"t9\"")
      #expect(try check(edited).reason?.contains("changed") == true)
      var removed = lines
      removed.remove(at: 2)
      #expect(try check(removed).brokenAt != nil)
      #expect(try check(lines + [lines[3]]).brokenAt != nil)
      #expect(try check(["{}"] + lines.dropFirst()).brokenAt != nil)
    }
  }
}
