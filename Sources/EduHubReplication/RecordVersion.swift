/// Who last wrote a field, and when: the hybrid-clock time, the writing node, and that node's
/// counter in the record's version vector after the write (so another version can tell whether it
/// already knew this write).
public struct FieldStamp: Sendable, Hashable, Comparable, CustomStringConvertible {
  public var time: HLCTimestamp
  public var node: String
  public var counter: UInt64

  public init(time: HLCTimestamp, node: String, counter: UInt64) {
    self.time = time
    self.node = node
    self.counter = counter
  }

  /// The total order merges use: time, then node id, then counter. Every node sorts the same way.
  public static func < (lhs: FieldStamp, rhs: FieldStamp) -> Bool {
    if lhs.time != rhs.time { return lhs.time < rhs.time }
    if lhs.node != rhs.node { return lhs.node < rhs.node }
    return lhs.counter < rhs.counter
  }

  public var description: String { "\(time)@\(node)#\(counter)" }
}

/// One version of a record: its protobuf body, its version vector, the stamp of each field, and
/// whether it is deleted. Field number 0 (never a protobuf field) stands for the deletion flag.
public struct RecordVersion: Sendable, Hashable {
  /// The pseudo field that carries `deleted`.
  public static let deletionField = 0

  public var body: [UInt8]
  public var vector: VersionVector
  public var stamps: [Int: FieldStamp]
  public var deleted: Bool

  public init(body: [UInt8], vector: VersionVector, stamps: [Int: FieldStamp], deleted: Bool = false) {
    self.body = body
    self.vector = vector
    self.stamps = stamps
    self.deleted = deleted
  }

  /// How this version relates to `other`.
  public func compare(_ other: RecordVersion) -> CausalOrder { vector.compare(other.vector) }
}

/// A field value that lost a merge to a concurrent write: kept so that nothing disappears unseen.
public struct FieldConflict: Sendable, Hashable {
  public var field: Int
  /// The losing value's bytes (tag included; empty if the loser had cleared the field).
  public var losingValue: [UInt8]
  public var losingStamp: FieldStamp
  public var winningStamp: FieldStamp
}

/// The outcome of merging two versions.
public struct MergeResult: Sendable, Hashable {
  public var version: RecordVersion
  public var conflicts: [FieldConflict]
}
