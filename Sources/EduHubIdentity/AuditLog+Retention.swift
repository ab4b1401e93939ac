import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB

/// Retention of the audit log: entries are kept at least 184 days (the Cybersecurity Law's six
/// months at their longest, art. 21), pruned after that with the chain still verifiable, and
/// exported as a verifiable archive before they go.
extension AuditLog {
  /// The shortest retention allowed, in days.
  public static let minimumRetentionDays = 184

  /// Where the chain continues after a prune.
  struct Anchor {
    var sequence: Int64
    var hash: [UInt8]
    var beforeMs: Int64
    var mac: [UInt8]

    static func mac(sequence: Int64, hash: [UInt8], beforeMs: Int64, key: SecretBytes) throws -> [UInt8] {
      var message = Array("eduhub-audit-anchor".utf8) + [0]
      WireFields.appendVarint(UInt64(bitPattern: sequence), to: &message)
      WireFields.appendVarint(UInt64(bitPattern: beforeMs), to: &message)
      message += hash
      return try KeyedHash.hash(message, key: key, length: 32)
    }

    func holds(key: SecretBytes) throws -> Bool {
      ConstantTime.equals(try Self.mac(sequence: sequence, hash: hash, beforeMs: beforeMs, key: key), mac)
    }
  }

  static func anchor(in db: Database) throws -> Anchor? {
    try Row.fetchOne(db, sql: "SELECT sequence, hash, before_ms, mac FROM audit_anchor WHERE id = 1").map { row in
      Anchor(sequence: row["sequence"], hash: [UInt8](row["hash"] as Data), beforeMs: row["before_ms"], mac: [UInt8](row["mac"] as Data))
    }
  }

  /// What a prune did.
  public struct Pruned: Sendable, Hashable {
    /// Entries removed (0: none was older than the retention).
    public var entries: Int64
    /// The last sequence removed.
    public var through: Int64?
  }

  /// Removes the entries older than `retentionDays` (at least ``minimumRetentionDays``) before
  /// `nowMs`: the oldest run of the chain, up to the first entry inside the retention. An entry
  /// saying what was pruned is appended first, and the last pruned entry's hash is kept as the
  /// chain's authenticated anchor, so ``verify()`` still checks every entry that remains.
  public func prune(retentionDays: Int = AuditLog.minimumRetentionDays, nowMs: Int64, actor: String = "system") throws -> Pruned {
    guard retentionDays >= Self.minimumRetentionDays else {
      throw StorageError(.rejected, "audit entries are kept at least \(Self.minimumRetentionDays) days, not \(retentionDays)")
    }
    try flush()
    let beforeMs = nowMs - Int64(retentionDays) * 86_400_000
    return try database.write { db in
      // The run to prune ends before the first entry inside the retention (an entry written with
      // an earlier clock later in the chain stays: the chain is cut only at its start).
      let keepFrom = try Int64.fetchOne(db, sql: "SELECT MIN(sequence) FROM audit_event WHERE time_ms >= ?", arguments: [beforeMs])
      let last = try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM audit_event") ?? 0
      let through = (keepFrom ?? (last + 1)) - 1
      let first = try Int64.fetchOne(db, sql: "SELECT MIN(sequence) FROM audit_event") ?? 1
      guard through >= first,
        let hashData = try Data.fetchOne(db, sql: "SELECT hash FROM audit_event WHERE sequence = ?", arguments: [through])
      else { return Pruned(entries: 0, through: nil) }
      let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(beforeMs) / 1000))
      try Self.append(
        Entry(
          actor: actor, action: "audit.pruned", target: "\(first)-\(through)",
          detail: "entries older than \(date) (retention \(retentionDays) days) removed", timeMs: nowMs),
        key: key, in: db)
      let hash = [UInt8](hashData)
      let mac = try Anchor.mac(sequence: through, hash: hash, beforeMs: beforeMs, key: key)
      try db.execute(
        sql: "INSERT OR REPLACE INTO audit_anchor (id, sequence, hash, before_ms, mac) VALUES (1, ?, ?, ?, ?)",
        arguments: [through, Data(hash), beforeMs, Data(mac)])
      try db.execute(sql: "DELETE FROM audit_event WHERE sequence <= ?", arguments: [through])
      return Pruned(entries: through - first + 1, through: through)
    }
  }

  /// One line of an archive.
  struct ArchiveLine: Codable {
    var sequence: Int64
    var timeMs: Int64
    var actor, action, target, outcome, detail, peer: String
    var hash: String
  }

  /// The first line of an archive.
  struct ArchiveHeader: Codable {
    var format = "eduhub-audit-archive/1"
    var sinceMs: Int64
    var untilMs: Int64
    /// The hash of the entry before the first one archived (hex; empty when it starts the chain).
    var previousHash: String
    var entries: Int64
  }

  /// Writes the entries from `sinceMs` up to (not including) `untilMs` — a contiguous run of the
  /// chain, from the first entry at or after `sinceMs` to the last before `untilMs` — as JSON lines
  /// after a header naming the hash they continue from: anyone holding the node's audit key can
  /// check with ``verifyArchive(_:)`` that none was changed, inserted or removed. The file is
  /// created with mode 0600 (entries name accounts, people's ids and addresses).
  @discardableResult
  public func export(sinceMs: Int64, untilMs: Int64, to path: String) throws -> Int64 {
    try flush()
    return try database.read { db in
      guard
        let first = try Int64.fetchOne(db, sql: "SELECT MIN(sequence) FROM audit_event WHERE time_ms >= ?", arguments: [sinceMs])
      else { return try write(ArchiveHeader(sinceMs: sinceMs, untilMs: untilMs, previousHash: "", entries: 0), [], to: path) }
      let end = try Int64.fetchOne(db, sql: "SELECT MIN(sequence) FROM audit_event WHERE time_ms >= ? AND sequence >= ?", arguments: [untilMs, first])
      let previous: [UInt8]
      if let data = try Data.fetchOne(db, sql: "SELECT hash FROM audit_event WHERE sequence = ?", arguments: [first - 1]) {
        previous = [UInt8](data)
      } else if let anchor = try Self.anchor(in: db), anchor.sequence == first - 1 {
        previous = anchor.hash
      } else {
        previous = []
      }
      var lines: [ArchiveLine] = []
      let rows = try Row.fetchCursor(
        db,
        sql: "SELECT sequence, time_ms, actor, action, target, outcome, detail, peer, hash FROM audit_event WHERE sequence >= ? AND sequence < ? ORDER BY sequence",
        arguments: [first, end ?? Int64.max])
      while let row = try rows.next() {
        lines.append(
          ArchiveLine(
            sequence: row["sequence"], timeMs: row["time_ms"], actor: row["actor"], action: row["action"], target: row["target"],
            outcome: row["outcome"], detail: row["detail"], peer: row["peer"], hash: IdentityService.hex([UInt8](row["hash"] as Data))))
      }
      let header = ArchiveHeader(sinceMs: sinceMs, untilMs: untilMs, previousHash: IdentityService.hex(previous), entries: Int64(lines.count))
      return try write(header, lines, to: path)
    }
  }

  private func write(_ header: ArchiveHeader, _ lines: [ArchiveLine], to path: String) throws -> Int64 {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var out = Data()
    out += try encoder.encode(header) + Data("\n".utf8)
    for line in lines { out += try encoder.encode(line) + Data("\n".utf8) }
    guard FileManager.default.createFile(atPath: path, contents: out, attributes: [.posixPermissions: 0o600]) else {
      throw StorageError(.io, "cannot write \(path)")
    }
    return header.entries
  }

  /// Checks an archive written by ``export(sinceMs:untilMs:to:)`` with this node's audit key.
  public func verifyArchive(_ path: String) throws -> Verification {
    guard let data = FileManager.default.contents(atPath: path) else { throw StorageError(.notFound, "no archive at \(path)") }
    let decoder = JSONDecoder()
    var lines = data.split(separator: UInt8(ascii: "\n")).makeIterator()
    guard let first = lines.next(), let header = try? decoder.decode(ArchiveHeader.self, from: Data(first)),
      header.format == "eduhub-audit-archive/1", let previousHash = Self.unhex(header.previousHash)
    else {
      return Verification(entries: 0, brokenAt: 0, reason: "not an EduHub audit archive")
    }
    var walk = ChainWalk(key: key, previous: previousHash, expected: nil)
    while let raw = lines.next() {
      guard let line = try? decoder.decode(ArchiveLine.self, from: Data(raw)), let stored = Self.unhex(line.hash) else {
        return Verification(entries: walk.count, brokenAt: (walk.expected ?? 0), reason: "line \(walk.count + 2) is not an entry")
      }
      let entry = Entry(
        actor: line.actor, action: line.action, target: line.target, outcome: line.outcome, detail: line.detail, peer: line.peer,
        timeMs: line.timeMs)
      if let broken = try walk.step(line.sequence, entry, stored: stored) { return broken }
    }
    guard walk.count == header.entries else {
      return Verification(
        entries: walk.count, brokenAt: walk.expected ?? 0, reason: "the archive holds \(walk.count) entries, its header says \(header.entries)")
    }
    return Verification(entries: walk.count, brokenAt: nil, reason: nil)
  }

  static func unhex(_ text: String) -> [UInt8]? {
    guard text.utf8.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
      let next = text.index(index, offsetBy: 2)
      guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
      out.append(byte)
      index = next
    }
    return out
  }
}
