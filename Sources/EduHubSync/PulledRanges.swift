/// The local change sequences that pulls from the upstream assigned: records there came from the
/// upstream as they are, so pushing them back would only echo. A record changed here afterwards
/// gets a new sequence outside these ranges and is pushed.
struct PulledRanges: Sendable, Hashable {
  private(set) var ranges: [ClosedRange<Int64>] = []

  init() {}

  /// Reads the form `encoded` writes ("a-b,c-d"); anything unreadable reads as empty (the only
  /// cost is that some records are pushed again, which the upstream skips).
  init(decoding bytes: [UInt8]) {
    for part in String(decoding: bytes, as: UTF8.self).split(separator: ",") {
      let bounds = part.split(separator: "-")
      guard bounds.count == 2, let low = Int64(bounds[0]), let high = Int64(bounds[1]), low <= high else { continue }
      ranges.append(low...high)
    }
  }

  var encoded: [UInt8] { Array(ranges.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",").utf8) }

  mutating func add(_ range: ClosedRange<Int64>) {
    if let last = ranges.last, last.upperBound + 1 >= range.lowerBound {
      ranges[ranges.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
    } else {
      ranges.append(range)
    }
  }

  func contains(_ sequence: Int64) -> Bool {
    // Few ranges (one a pull batch at most, merged while contiguous): a scan is enough.
    ranges.contains { $0.contains(sequence) }
  }

  /// Forgets what lies at or below `sequence` (already past the push cursor).
  mutating func drop(through sequence: Int64) {
    ranges = ranges.compactMap { range in
      if range.upperBound <= sequence { return nil }
      return max(range.lowerBound, sequence + 1)...range.upperBound
    }
  }
}
