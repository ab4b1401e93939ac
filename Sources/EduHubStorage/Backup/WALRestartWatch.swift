import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Watches the node's commits while the shipper's cursor lets the WAL restart (after the shipper's
/// own checkpoint, or a new generation's snapshot), so that a restart it may follow is told from one
/// it must not. The WAL alone cannot tell them apart: if a commit appended frames to the old
/// incarnation and someone else then checkpointed and restarted the WAL before the shipper's next
/// round, those frames are only in the database file, and the new incarnation looks exactly like
/// the one that may follow. SQLite's WAL hook runs on the writer after every commit; the watch
/// notes whether one such commit went past the cursor in the old incarnation, or a second new
/// incarnation began.
final class WALRestartWatch: Sendable {
  private struct State {
    /// The cursor that allows a restart (or adopts), while it is the shipper's.
    var armed: WALCursor?
    /// The first incarnation other than the armed cursor's that a commit was seen in.
    var next: (salt1: UInt32, salt2: UInt32)?
    var spoiled = false
  }

  private let walPath: String
  private let state = Mutex(State())

  init(databasePath: String) {
    walPath = databasePath + "-wal"
  }

  /// Hooks the watch on the writer `db`. `PRAGMA wal_autocheckpoint` replaces the hook, so this
  /// follows every change of it while shipping.
  func install(_ db: Database) {
    let context = Unmanaged.passUnretained(self).toOpaque()
    _ = sqlite3_wal_hook(
      db.sqliteConnection,
      { context, _, _, frames in
        if let context { Unmanaged<WALRestartWatch>.fromOpaque(context).takeUnretainedValue().committed(walFrames: Int(frames)) }
        return SQLITE_OK
      }, context)
  }

  /// Removes the hook from the writer `db` (the watch may go away after).
  static func uninstall(_ db: Database) {
    _ = sqlite3_wal_hook(db.sqliteConnection, nil, nil)
  }

  /// Starts watching from `cursor`. Call with the writer held, so no commit falls between the
  /// cursor's reading of the WAL and the watch.
  func arm(_ cursor: WALCursor) {
    state.withLock { $0 = State(armed: cursor) }
  }

  /// Stops watching: the shipper's cursor no longer lets the WAL restart.
  func disarm() {
    state.withLock { $0 = State() }
  }

  /// Whether the shipper may follow the armed cursor into the incarnation `header` tells.
  func mayFollow(into header: WALHeader) -> Bool {
    state.withLock { state in
      guard !state.spoiled else { return false }
      guard let next = state.next else { return true }
      return next == (header.salt1, header.salt2)
    }
  }

  private func committed(walFrames: Int) {
    guard state.withLock({ $0.armed != nil && !$0.spoiled }), let header = try? WALReader.header(at: walPath) else { return }
    state.withLock { state in
      guard let armed = state.armed else { return }
      if !armed.adopt && header.salt1 == armed.salt1 && header.salt2 == armed.salt2 {
        // Frames past the cursor in the old incarnation: a restart now would lose them.
        if walFrames > armed.frames { state.spoiled = true }
      } else if let next = state.next {
        if next != (header.salt1, header.salt2) { state.spoiled = true }
      } else {
        state.next = (header.salt1, header.salt2)
      }
    }
  }
}
