import ArgumentParser
import EduHubCore
import EduHubCrypto
import EduHubNode
import EduHubStorage
import Foundation
import Logging

/// The backup key: a key file of its own (`eduhub keygen`), kept away from the node and the target.
struct BackupKeyOption: ParsableArguments {
  @Option(help: "The backup key file (32 bytes, mode 0600; see eduhub keygen). Keep it off the node and off the target.")
  var backupKey: String

  func read() throws -> SecretBytes {
    do { return try KeyFile.read(from: backupKey) } catch { throw FailureMessage(error.message) }
  }
}

extension BackupKeyOption {
  init(backupKey: String) {
    self.init()
    self.backupKey = backupKey
  }
}

/// Runs `body`, turning a storage or node failure into one line.
private func failing<T>(_ doing: String, _ body: () throws -> T) throws -> T {
  do { return try body() } catch let error as StorageError {
    throw FailureMessage("cannot \(doing): \(error.message)")
  } catch let error as NodeDataError {
    throw FailureMessage("cannot \(doing): \(error.message)")
  }
}

extension EduHubCommand {
  struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Back up a node: a snapshot now, checks, restore drills and pruning of a backup target.",
      discussion: """
        Continuous shipping (every committed transaction on the target within a second) runs inside \
        the node: eduhub serve --backup-to TARGET --backup-key FILE. Restore with eduhub restore.
        """,
      subcommands: [Init.self, Take.self, Verify.self, Drill.self, Drills.self, Prune.self], defaultSubcommand: Take.self)

    struct Init: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Make a new backup target (a node ships only to one that exists, so a volume that failed to mount is an error).")

      @Option(help: "The backup target: a new directory, or an empty one (a mounted off-site volume).")
      var to: String

      @OptionGroup var key: BackupKeyOption

      func run() async throws {
        let backupKey = try key.read()
        let publicKey = try failing("make a backup target at \(to)") { try BackupRestore.createTarget(at: to, key: backupKey) }
        print("made backup target \(to)")
        print("drill records are signed by \(publicKey): keep this public key where assessors check drills (eduhub backup drills --public-key)")
      }
    }

    struct Take: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        commandName: "now",
        abstract: "Take a consistent snapshot of a node's database while it serves, as a new generation of the target (made if new).")

      @Option(help: "The node's data directory.")
      var data: String

      @Option(help: "The backup target: a directory, created if new.")
      var to: String

      @OptionGroup var key: BackupKeyOption

      @Flag(help: "Ship every transaction continuously (runs in the node: see eduhub serve --backup-to).")
      var continuous = false

      func run() async throws {
        if continuous {
          throw FailureMessage(
            "continuous shipping runs inside the node, which alone can order checkpoints after shipping: eduhub serve --data \(data) --backup-to \(to) --backup-key \(key.backupKey)")
        }
        let backupKey = try key.read()
        let (generation, bytes) = try failing("back up \(data)") {
          let node = try NodeData.load(data)
          let database = try EncryptedDatabase.open(path: node.databasePath, key: .keyFile(data + "/" + NodeData.databaseKeyFile))
          defer { try? database.close() }
          return try database.backUp(to: to, key: backupKey, bundle: try node.bundleFiles())
        }
        print("backed up \(data) to \(to): generation \(generation), snapshot \(bytes) bytes")
      }
    }

    struct Verify: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Check a backup target without restoring: every chain, file, page and segment; exit 1 at the first fault.")

      @Option(help: "The backup target.")
      var from: String

      @OptionGroup var key: BackupKeyOption

      func run() async throws {
        let backupKey = try key.read()
        let summaries = try failing("verify \(from)") { try BackupRestore.verify(from: from, key: backupKey) }
        for summary in summaries {
          print(
            "generation \(summary.generation): transactions \(summary.firstTransaction)–\(summary.lastTransaction), "
              + "\(BackupPoint.format(summary.firstTimeMs)) – \(BackupPoint.format(summary.lastTimeMs)), "
              + "\(summary.segments) segments, \(summary.bytes) bytes\(summary.continuable ? "" : " (snapshot only)"): ok")
        }
        print(summaries.isEmpty ? "\(from) holds no generation yet" : "\(from) verified: \(summaries.count) generations")
      }
    }

    struct Drill: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Restore the latest point into a scratch directory, check it, and append a signed drill record to the target.")

      @Option(help: "The backup target.")
      var from: String

      @OptionGroup var key: BackupKeyOption

      @Option(help: "Where to restore (created, then removed; default: a new temporary directory).")
      var scratch: String?

      func run() async throws {
        let backupKey = try key.read()
        let record = try failing("run a restore drill from \(from)") {
          try BackupDrill.run(
            from: from, key: backupKey, scratch: scratch, databaseFile: NodeData.databaseFile, databaseKeyFile: NodeData.databaseKeyFile)
        }
        print(
          "drill ok: restored transaction \(record.transaction) of generation \(record.generation) "
            + "(\(record.records) records, \(record.pages) pages) in \(String(format: "%.1f", record.seconds)) s; recorded in \(from)/drills")
      }
    }

    struct Drills: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "List the target's restore drills, each signature checked (with the public key in backup.json, or the backup key).")

      @Option(help: "The backup target.")
      var from: String

      @Option(help: "The backup key file, or:")
      var backupKey: String?

      @Option(help: "The drill key's public half (hex) as `eduhub backup init` printed it: an assessor's pinned copy.")
      var publicKey: String?

      func validate() throws {
        guard (backupKey == nil) != (publicKey == nil) else {
          throw ValidationError("give --backup-key or --public-key (backup.json's copy of the key is not trusted: whoever can write the target could replace it)")
        }
      }

      func run() async throws {
        let key = try backupKey.map { try BackupKeyOption(backupKey: $0).read() }
        let records = try failing("read the drills of \(from)") { try BackupDrill.records(from: from, key: key, publicKey: publicKey) }
        var invalid = 0
        for (record, valid) in records {
          if !valid { invalid += 1 }
          print(
            "\(BackupPoint.format(record.timeMs))  \(record.result)  generation \(record.generation) transaction \(record.transaction) "
              + "(shipped \(BackupPoint.format(record.pointTimeMs)))  \(String(format: "%.1f", record.seconds)) s  \(record.records) records"
              + (record.detail.isEmpty ? "" : "  \(record.detail)") + (valid ? "  signature ok" : "  SIGNATURE INVALID"))
        }
        if records.isEmpty { print("no drills recorded in \(from)") }
        if invalid > 0 { throw ExitCode(1) }
      }
    }

    struct Prune: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Remove generations no point inside the retention window needs (the node's shipper also does this hourly).")

      @Option(help: "The backup target.")
      var from: String

      @OptionGroup var key: BackupKeyOption

      @Option(help: "Days every point stays restorable.")
      var retentionDays = 30

      func validate() throws {
        guard (1...36_500).contains(retentionDays) else { throw ValidationError("--retention-days must be from 1 to 36500") }
      }

      func run() async throws {
        let backupKey = try key.read()
        let pruned = try failing("prune \(from)") {
          try BackupRestore.prune(from: from, key: backupKey, retentionDays: retentionDays)
        }
        print(pruned.isEmpty ? "nothing to prune" : "pruned generations \(pruned.joined(separator: ", "))")
      }
    }
  }

  struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Rebuild a node from a backup target, as of a point in time or a transaction, into a new directory.",
      discussion: """
        Every segment up to the point is checked against the target's manifest; a missing or changed \
        one stops the restore with its name. Without --at or --sequence, restores the latest point.
        """)

    @Option(help: "The backup target.")
    var from: String

    @OptionGroup var key: BackupKeyOption

    @Option(help: "The new node directory (must not exist or be empty).")
    var data: String

    @Option(help: "Restore every transaction shipped by this time: ISO 8601 (2026-12-07T12:00:00+08:00) or milliseconds since the epoch.")
    var at: String?

    @Option(help: "Restore up to and including this transaction number (see eduhub backup verify).")
    var sequence: Int64?

    func validate() throws {
      guard at == nil || sequence == nil else { throw ValidationError("give --at or --sequence, not both") }
      if let at, Self.milliseconds(at) == nil {
        throw ValidationError("--at takes an ISO 8601 time such as 2026-12-07T12:00:00+08:00, or milliseconds since the epoch")
      }
      if let sequence, sequence < 0 { throw ValidationError("--sequence must not be negative") }
    }

    func run() async throws {
      let backupKey = try key.read()
      let point: BackupPoint = if let sequence { .transaction(sequence) } else if let at, let ms = Self.milliseconds(at) { .time(ms) } else { .latest }
      let report: RestoreReport
      do {
        report = try await NodeData.restore(from: from, key: backupKey, to: point, into: data, logger: Logger(label: "eduhub.restore"))
      } catch let error as NodeDataError {
        throw FailureMessage("cannot restore from \(from): \(error.message)")
      }
      print(
        "restored \(data) to transaction \(report.transaction) of generation \(report.generation) "
          + "(shipped \(BackupPoint.format(report.timeMs))): \(report.records) records, change sequence \(report.changeSequence), "
          + "\(report.pages) snapshot pages, \(report.segments) segments, \(String(format: "%.1f", report.seconds)) s")
      let later = report.targetLastTransaction - report.transaction
      if later > 0 {
        print(
          "note: the target holds \(later) later transactions that this node does not; whatever they did is undone here, "
            + "revocations included (disabled accounts, revoked roles or nodes, ended sessions): review them before serving")
      }
    }

    static func milliseconds(_ text: String) -> Int64? {
      if let ms = Int64(text) { return ms }
      let formatter = ISO8601DateFormatter()
      formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
      if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
      formatter.formatOptions = [.withInternetDateTime]
      return formatter.date(from: text).map { Int64($0.timeIntervalSince1970 * 1000) }
    }
  }
}
