import Foundation
import GRDB
import GRDBSQLite

/// Checkpoints a bulk load's WAL on a thread and connection of its own, so the single writer
/// keeps writing while its earlier commits are copied (decrypted from the WAL, encrypted again)
/// into the database file: a second core's work instead of an eighth of the writer's.
///
/// The writer's own checkpoints are off meanwhile (`wal_autocheckpoint = 0`); a WAL hook on the
/// writer tells this checkpointer how long the log is after each commit. From `startFrames` on
/// it starts a passive checkpoint whenever none runs. A passive checkpoint never blocks the
/// writer, but the log only starts over once a checkpoint has copied all of it before the
/// writer's next transaction; so at `limitFrames` the writer waits in its hook for a checkpoint
/// that began after its commit, and the log restarts. The WAL stays below about `limitFrames`.
final class BackgroundCheckpointer: @unchecked Sendable {
  // The fields below `condition` are read and written only while it is locked.
  private let condition = NSCondition()
  private var requested = false
  private var running = false
  private var stopping = false
  private var completed = 0
  private let connection: OpaquePointer
  private let startFrames: Int
  private let limitFrames: Int
  private let finished = DispatchSemaphore(value: 0)

  /// Opens the checkpointer's connection to `path` (through the same encrypting VFS and key) and
  /// starts its thread.
  init(path: String, startMiB: Int, limitMiB: Int) throws {
    // A connection that has not opened the WAL yet checkpoints nothing and says OK: the raw
    // connection has read the schema.
    connection = try EncryptedDatabase.openRawConnection(path: path, purpose: "checkpoint it")
    startFrames = startMiB * 1024 * 1024 / EncryptedDatabase.pageSize
    limitFrames = max(startFrames, limitMiB * 1024 * 1024 / EncryptedDatabase.pageSize)
    let thread = Thread { [self] in loop() }
    thread.name = "eduhub-checkpoint"
    thread.start()
  }

  /// Hooks the checkpointer on the writer `db`, whose own checkpoints must be off: the hook
  /// replaces theirs. The hook keeps the checkpointer alive until ``uninstall(_:)``.
  func install(_ db: Database) {
    let context = Unmanaged.passRetained(self).toOpaque()
    _ = sqlite3_wal_hook(
      db.sqliteConnection,
      { context, _, _, frames in
        if let context { Unmanaged<BackgroundCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(walFrames: Int(frames)) }
        return SQLITE_OK
      }, context)
  }

  /// Takes the hook off the writer `db` (installed there by ``install(_:)``) and lets go of it.
  func uninstall(_ db: Database) {
    _ = sqlite3_wal_hook(db.sqliteConnection, nil, nil)
    Unmanaged.passUnretained(self).release()
  }

  /// Called on the writer after each commit with the WAL's length in frames.
  private func committed(walFrames frames: Int) {
    condition.lock()
    defer { condition.unlock() }
    guard frames >= startFrames, !stopping else { return }
    if frames >= limitFrames {
      // A run under way may have started before this commit: wait for the one after it too.
      let target = completed + (running ? 2 : 1)
      requested = true
      condition.broadcast()
      while completed < target, !stopping { condition.wait() }
    } else if !running {
      requested = true
      condition.broadcast()
    }
  }

  private func loop() {
    while true {
      condition.lock()
      while !requested, !stopping { condition.wait() }
      if stopping {
        condition.unlock()
        break
      }
      requested = false
      running = true
      condition.unlock()
      // Busy (another checkpoint, say a backup's) or failed: the next commit asks again, and
      // the writer's own checkpoints take over after the load.
      _ = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
      condition.lock()
      running = false
      completed += 1
      condition.broadcast()
      condition.unlock()
    }
    sqlite3_close_v2(connection)
    finished.signal()
  }

  /// Stops the thread after the checkpoint under way (the hook must be off the writer by then)
  /// and closes the connection.
  func stop() {
    condition.lock()
    stopping = true
    condition.broadcast()
    condition.unlock()
    finished.wait()
  }
}
