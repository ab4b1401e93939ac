// What the benchmark clients share: their command-line options, a server's memory from /proc,
// percentiles of latency samples.
import Foundation

/// The value after `--name` on the command line, or `fallback`.
public func option(_ name: String, _ fallback: String) -> String {
  let arguments = CommandLine.arguments
  guard let index = arguments.firstIndex(of: "--" + name), index + 1 < arguments.count else { return fallback }
  return arguments[index + 1]
}

/// A process's resident and peak resident memory in MiB, from /proc (0 when it cannot be read).
public func processMemory(pid: String) -> (rss: Double, peak: Double) {
  guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
  func value(_ key: String) -> Double {
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return 0 }
    return (Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0) / 1024
  }
  return (value("VmRSS:"), value("VmHWM:"))
}

/// The `p` percentile (0...1, nearest rank) of ascending `sorted` samples; 0 for none.
public func percentile(_ sorted: [Double], _ p: Double) -> Double {
  sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
}
