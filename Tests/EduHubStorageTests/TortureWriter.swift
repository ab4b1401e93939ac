import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Runs `eduhub-storage-torture` with `arguments` until it has printed transaction `target` (or
/// stalled for 10 s), then kills it with SIGKILL wherever it is.
/// - Returns: the last transaction it printed as committed.
func runTortureUntilKilled(_ arguments: [String], from lastCommitted: Int, until target: Int) throws -> Int {
  let process = Process()
  process.executableURL = Bundle.main.bundleURL.appendingPathComponent("eduhub-storage-torture")
  if !FileManager.default.isExecutableFile(atPath: process.executableURL!.path) {
    process.executableURL = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("eduhub-storage-torture")
  }
  process.arguments = arguments
  let output = Pipe()
  let errors = Pipe()
  process.standardOutput = output
  process.standardError = errors
  try process.run()
  var lastCommitted = lastCommitted
  var buffer = ""
  var chunk = [UInt8](repeating: 0, count: 4096)
  let fd = output.fileHandleForReading.fileDescriptor
  while lastCommitted < target {
    // A blocking read: the writer prints each number once its transaction has committed.
    var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&ready, 1, 10_000) > 0 else { break }
    let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
    if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
    guard count > 0 else { break }
    buffer += String(decoding: chunk[0..<count], as: UTF8.self)
    let lines = buffer.split(separator: "\n", omittingEmptySubsequences: false)
    for line in lines.dropLast() { if let n = Int(line) { lastCommitted = max(lastCommitted, n) } }
    buffer = String(lines.last ?? "")
  }
  kill(process.processIdentifier, SIGKILL)
  process.waitUntilExit()
  #expect(
    process.terminationReason == .uncaughtSignal,
    "the writer exited by itself: \(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
  return lastCommitted
}
