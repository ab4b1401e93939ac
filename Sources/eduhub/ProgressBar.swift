import Foundation

/// A progress bar on standard error: redrawn in place on a terminal (5 times a second), a line
/// every 5 seconds otherwise (logs of CI and scripts).
final class ProgressBar: @unchecked Sendable {
  // Only touched from the task that runs the command.
  let label: String
  let total: Int
  let start = Date()
  let interactive = isatty(STDERR_FILENO) != 0
  private var lastShown = Date.distantPast
  private var shownAny = false

  init(label: String, total: Int) {
    self.label = label
    self.total = total
  }

  /// Shows `done` of `total`, with `detail` after the bar.
  func show(_ done: Int, detail: String = "") {
    let now = Date()
    guard now.timeIntervalSince(lastShown) > (interactive ? 0.2 : 5) else { return }
    lastShown = now
    shownAny = true
    let percent = min(100, done * 100 / max(1, total))
    let bar = String(repeating: "#", count: percent / 4) + String(repeating: ".", count: 25 - percent / 4)
    let seconds = now.timeIntervalSince(start)
    let line = String(format: "%@ [%@] %3d%%  %@  %.0f s", label, bar, percent, detail.isEmpty ? "\(done)/\(total)" : detail, seconds)
    FileHandle.standardError.write(Data(((interactive ? "\r" : "") + line + (interactive ? "" : "\n")).utf8))
  }

  /// Ends the bar's line.
  func finish() {
    if interactive, shownAny { FileHandle.standardError.write(Data("\n".utf8)) }
  }
}
