// eduhub-storage-torture DB KEYFILE [TARGET BACKUPKEY]: writes transactions to an encrypted database as
// fast as it can, printing the number of each transaction once it has committed, until it is killed.
// The storage tests kill it with SIGKILL mid-write and check that every printed transaction survived;
// with a backup target, it ships to it as a node does, and the backup tests check that the target,
// after the shipper resumes, holds every printed transaction with no gap.
import EduHubCrypto
import EduHubStorage
import Foundation
import GRDB
import Logging

let arguments = CommandLine.arguments
guard arguments.count == 3 || arguments.count == 5 else {
  FileHandle.standardError.write(Data("usage: eduhub-storage-torture DB KEYFILE [TARGET BACKUPKEY]\n".utf8))
  exit(2)
}
do {
  let database = try EncryptedDatabase.open(path: arguments[1], key: .keyFile(arguments[2]), create: true)
  try database.write { db in
    try db.execute(sql: "CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY, name TEXT, id_number TEXT, pad BLOB)")
  }
  if arguments.count == 5 {
    var options = ContinuousBackup.Options()
    options.interval = 0.02
    options.checkpointFrames = 300
    options.segmentFrames = 64
    let keyFile = try [UInt8](Data(contentsOf: URL(fileURLWithPath: arguments[2])))
    if !FileManager.default.fileExists(atPath: arguments[3] + "/backup.json") {
      _ = try BackupRestore.createTarget(at: arguments[3], key: try KeyFile.read(from: arguments[4]))
    }
    _ = try ContinuousBackup.start(
      database: database, databaseKey: try KeyFile.read(from: arguments[2]), target: arguments[3],
      backupKey: try KeyFile.read(from: arguments[4]), bundle: { [BackupBundleFile(path: "keys/db.key", contents: keyFile)] },
      options: options, logger: Logger(label: "torture"))
  }
  var n = try database.read { try Int.fetchOne($0, sql: "SELECT coalesce(max(n) / 100, 0) FROM log") } ?? 0
  while true {
    n += 1
    let value = n
    try database.write { db in
      for k in 0..<20 {
        try db.execute(
          sql: "INSERT INTO log (n, name, id_number, pad) VALUES (?, ?, ?, randomblob(300))",
          arguments: [value * 100 + k, "学生\(value)", "51170220100101\(value % 10000)"])
      }
    }
    FileHandle.standardOutput.write(Data("\(value)\n".utf8))
  }
} catch {
  FileHandle.standardError.write(Data("torture: \(error)\n".utf8))
  exit(1)
}
