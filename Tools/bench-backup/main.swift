// eduhub-bench-backup: the backup benchmark's measuring half (Tools/bench-backup/run prepares the
// node). On a copy of the city-scale node: the full backup (the first generation's snapshot) while
// the node's database is open; then a paced writer (--rate commits/s for --seconds) with the
// shipper running as in `serve --backup-to`, each commit's lag being the time from its commit until
// the segment holding it is durable on the target; then a restore of the latest point.
import EduHubBenchSupport
import EduHubCrypto
import EduHubNode
import EduHubStorage
import Foundation
import GRDB
import Logging
import Synchronization

let data = option("data", "")
let target = option("target", "")
let backupKeyFile = option("backup-key", "")
let restoreTo = option("restore-to", "")
let rate = Double(option("rate", "1000")) ?? 1000
let seconds = Double(option("seconds", "30")) ?? 30
guard !data.isEmpty, !target.isEmpty, !backupKeyFile.isEmpty, !restoreTo.isEmpty else {
  print("usage: eduhub-bench-backup --data NODE --target DIR --backup-key FILE --restore-to DIR [--rate N] [--seconds N]")
  exit(2)
}

func now() -> Double { Date().timeIntervalSince1970 }

do {
  let node = try NodeData.load(data)
  let database = try EncryptedDatabase.open(path: node.databasePath, key: .keyFile(data + "/" + NodeData.databaseKeyFile))
  let databaseBytes = (try FileManager.default.attributesOfItem(atPath: node.databasePath)[.size] as? NSNumber)?.int64Value ?? 0
  let shipped = Mutex<[(transaction: Int64, durable: Double)]>([])
  var logger = Logger(label: "bench")
  logger.logLevel = .warning

  _ = try BackupRestore.createTarget(at: target, key: try KeyFile.read(from: backupKeyFile))
  let started = now()
  let backup = try ContinuousBackup.start(
    database: database, databaseKey: try node.key("db"), target: target, backupKey: try KeyFile.read(from: backupKeyFile),
    bundle: { try node.bundleFiles() }, logger: logger,
    onShipped: { report in shipped.withLock { $0.append((report.transaction, Double(report.durableMs) / 1000)) } })
  let fullBackup = now() - started
  let first = backup.status.lastTransaction
  print(String(format: "full backup (snapshot of %.2f GiB, while open): %.1f s", Double(databaseBytes) / Double(1 << 30), fullBackup))

  try database.write { db in
    try db.execute(sql: "CREATE TABLE IF NOT EXISTS bench_backup_writes (id INTEGER PRIMARY KEY, at REAL, payload BLOB)")
  }
  // The CREATE TABLE above is one transaction too.
  let base = first + 1
  var commits: [Double] = []
  let count = Int(rate * seconds)
  commits.reserveCapacity(count)
  let loadStart = now()
  for i in 0..<count {
    let due = loadStart + Double(i) / rate
    let wait = due - now()
    if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
    try database.write { db in
      try db.execute(sql: "INSERT INTO bench_backup_writes (at, payload) VALUES (?, randomblob(200))", arguments: [now()])
    }
    commits.append(now())
  }
  let loadSeconds = now() - loadStart
  Thread.sleep(forTimeInterval: 1.5)
  let status = backup.status
  try database.close()

  let reports = shipped.withLock { $0 }
  var lags: [Double] = []
  var next = 0
  for (i, committed) in commits.enumerated() {
    let transaction = base + Int64(i) + 1
    while next < reports.count && reports[next].transaction < transaction { next += 1 }
    guard next < reports.count else { break }
    lags.append((reports[next].durable - committed) * 1000)
  }
  lags.sort()
  print(
    String(
      format: "continuous shipping at %.0f commits/s (%.0f achieved) for %.0f s: %d segments, lag p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d of %d commits shipped; target p99 <= 1000 ms: %@)",
      rate, Double(count) / loadSeconds, seconds, status.segments, percentile(lags, 0.5), percentile(lags, 0.99), lags.last ?? 0,
      lags.count, count, lags.count == count && percentile(lags, 0.99) <= 1000 ? "met" : "MISSED"))

  let restoreStart = now()
  let report = try BackupRestore.restore(
    from: target, key: try KeyFile.read(from: backupKeyFile), to: .latest, into: restoreTo, databaseFile: NodeData.databaseFile,
    databaseKeyFile: NodeData.databaseKeyFile)
  let restoreSeconds = now() - restoreStart
  let restoredBytes = Double(report.pages) * Double(EncryptedDatabase.pageSize) / Double(1 << 30)
  print(
    String(
      format: "restore of the latest point: %.2f GiB snapshot + %d segments in %.1f s (%.1f s per GiB; target <= 30 s for 1 GiB: %@), %d records, integrity ok",
      restoredBytes, report.segments, restoreSeconds, restoreSeconds / restoredBytes, restoreSeconds / restoredBytes <= 30 ? "met" : "MISSED",
      report.records))
  print(String(format: "peak RSS of the benchmark process: %.0f MiB", processMemory(pid: "self").peak))
} catch {
  print("bench-backup: \(error)")
  exit(1)
}
