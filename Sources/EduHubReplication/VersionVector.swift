/// A version vector's counter for a node cannot count one more write.
public struct CounterOverflow: Error, Sendable, CustomStringConvertible {
  public let node: String
  public var description: String { "the version counter of node \(node.prefix(40)) is at its limit" }
}

/// How two versions of a record relate.
public enum CausalOrder: Sendable, Hashable {
  case equal, before, after, concurrent
}

/// A version vector: for each node that wrote a record, how many writes of it that node made.
/// Bounded by the number of nodes that ever wrote the record.
public struct VersionVector: Sendable, Hashable, CustomStringConvertible {
  /// Counters by node id, sorted by node id (a canonical form: equal vectors encode equally).
  public private(set) var entries: [(node: String, counter: UInt64)]

  public init() { entries = [] }

  public init(_ counters: [String: UInt64]) {
    entries = counters.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
  }

  public subscript(node: String) -> UInt64 {
    entries.first { $0.node == node }?.counter ?? 0
  }

  /// The largest counter a vector holds. Counters come from the network and from replica files, so
  /// every one is checked against this bound (decoding refuses more) and no increment can trap.
  public static let counterLimit: UInt64 = 1 << 62

  /// Counts one more write by `node`.
  /// - Throws: ``CounterOverflow`` when the counter is already at ``counterLimit`` (a record poisoned
  ///   by a hostile vector is refused, never a trap).
  public mutating func increment(_ node: String) throws(CounterOverflow) {
    if let index = entries.firstIndex(where: { $0.node == node }) {
      guard entries[index].counter < Self.counterLimit else { throw CounterOverflow(node: node) }
      entries[index].counter += 1
    } else {
      let index = entries.firstIndex { $0.node > node } ?? entries.count
      entries.insert((node, 1), at: index)
    }
  }

  /// The pointwise maximum: what both know.
  public func merged(with other: VersionVector) -> VersionVector {
    var result: [String: UInt64] = [:]
    for entry in entries { result[entry.node] = entry.counter }
    for entry in other.entries { result[entry.node] = max(result[entry.node] ?? 0, entry.counter) }
    return VersionVector(result)
  }

  /// How `self` relates to `other`.
  public func compare(_ other: VersionVector) -> CausalOrder {
    var less = false
    var greater = false
    var i = 0
    var j = 0
    while i < entries.count || j < other.entries.count {
      let a: (String, UInt64)?  = i < entries.count ? entries[i] : nil
      let b: (String, UInt64)? = j < other.entries.count ? other.entries[j] : nil
      if let a, b == nil || a.0 < b!.0 {
        greater = true
        i += 1
      } else if let b, a == nil || b.0 < a!.0 {
        less = true
        j += 1
      } else if let a, let b {
        if a.1 < b.1 { less = true } else if a.1 > b.1 { greater = true }
        i += 1
        j += 1
      }
      if less && greater { return .concurrent }
    }
    switch (less, greater) {
    case (false, false): return .equal
    case (true, false): return .before
    case (false, true): return .after
    case (true, true): return .concurrent
    }
  }

  public static func == (lhs: VersionVector, rhs: VersionVector) -> Bool {
    lhs.entries.count == rhs.entries.count && zip(lhs.entries, rhs.entries).allSatisfy { $0 == $1 }
  }

  public func hash(into hasher: inout Hasher) {
    for entry in entries {
      hasher.combine(entry.node)
      hasher.combine(entry.counter)
    }
  }

  public var description: String {
    "{" + entries.map { "\($0.node):\($0.counter)" }.joined(separator: ",") + "}"
  }
}
