// eduhub-storage-torture DB KEYFILE: writes transactions to an encrypted database as fast as it can,
// printing the number of each transaction once it has committed, until it is killed. The storage
// tests kill it with SIGKILL mid-write and check that every printed transaction survived.
import EduHubStorage
import Foundation
import GRDB

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
  FileHandle.standardError.write(Data("usage: eduhub-storage-torture DB KEYFILE\n".utf8))
  exit(2)
}
do {
  let database = try EncryptedDatabase.open(path: arguments[1], key: .keyFile(arguments[2]), create: true)
  try database.write { db in
    try db.execute(sql: "CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY, name TEXT, id_number TEXT, pad BLOB)")
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
