import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import Synchronization

/// The index saved in the store (`RecordStore.setBlob`), so a start reads the changes since the last save
/// instead of deriving every order from its events again (a million orders with ten million events
/// took 70 s of CPU and 1.8 GiB).
///
/// Rows are saved in chunks of `Saved.chunk`, and only the chunks changed since the last save are
/// written again; names (only ever appended) likewise. A header names the format, the SLA rules the
/// rows were derived under (other rules: the saved rows are not used), and the sequences the rows
/// have seen, written in the same transaction as the chunks. Any interleaving of saves is safe:
/// every saved chunk is at least as new as the header beside it, and the catch-up re-derives every
/// order changed after the header's sequences. Watch marks are not saved (an unwatch is a deletion
/// whose tombstone may be collected before the next start): they are read again at each start.
extension OrderIndex {
  /// What changed since the last save.
  struct Saved {
    static let chunk = 16_384

    /// Row chunks changed since the last save.
    var dirty: Set<Int> = []
    /// Names saved so far.
    var names = 0
    /// When the index was last saved (0: never).
    var atMs: Int64 = 0

    init() {}

    /// Nothing saved yet: every chunk of `state` is to be written.
    init(everything state: State) {
      dirty = Set(0..<Self.chunks(state.rows.count))
    }

    mutating func touched(_ row: Int) {
      dirty.insert(row / Self.chunk)
    }

    static func chunks(_ count: Int) -> Int { (count + chunk - 1) / chunk }
  }

  static let headerKey = "workorder.index"
  static func rowsKey(_ chunk: Int) -> String { "workorder.index.rows.\(chunk)" }
  static func namesKey(_ chunk: Int) -> String { "workorder.index.names.\(chunk)" }
  /// Bumped whenever a row's meaning or derivation changes: rows of another format are not used.
  static let format: UInt32 = 1

  /// The rules the rows are derived under.
  static func fingerprint(_ service: WorkOrderService) -> String {
    let sla = service.sla
    let calendar = sla.calendar
    let targets: [String] = sla.targets.sorted { $0.key.rawValue < $1.key.rawValue }.map { priority, target in
      "\(priority.rawValue):\(target.firstResponse)/\(target.resolution)"
    }
    let periods: [String] = calendar.periods.map { "\($0.lowerBound)-\($0.upperBound)" }
    let holidays: [String] = calendar.holidays.sorted().map { String($0) }
    let workdays: [String] = calendar.workdays.sorted().map { String($0) }
    var parts: [String] = []
    parts.append("periods=" + periods.joined(separator: ","))
    parts.append("holidays=" + holidays.joined(separator: ","))
    parts.append("workdays=" + workdays.joined(separator: ","))
    parts.append("targets=" + targets.joined(separator: ","))
    parts.append("share=\(sla.warningShare)")
    parts.append("reopen=\(service.reopenWindowMs)")
    return parts.joined(separator: ";")
  }

  // MARK: Saving

  /// Saves what changed since the last save, if anything did and the last save is at least
  /// `olderThanMs` old. Returns whether it wrote.
  @discardableResult
  func save(_ service: WorkOrderService, olderThanMs: Int64 = 0) throws -> Bool {
    try saving.withLock { _ in try saveChanges(service, olderThanMs: olderThanMs) }
  }

  private func saveChanges(_ service: WorkOrderService, olderThanMs: Int64) throws -> Bool {
    let now = service.identity.nowMs()
    let fingerprint = Self.fingerprint(service)
    let pending = state.withLock { state -> (entries: [(String, [UInt8])], dirty: Set<Int>, names: Int, atMs: Int64)? in
      guard !state.sequences.isEmpty, !state.saved.dirty.isEmpty || state.saved.names < state.names.names.count,
        now - state.saved.atMs >= olderThanMs
      else { return nil }
      var entries: [(String, [UInt8])] = []
      for chunk in state.saved.dirty.sorted() {
        let range = (chunk * Saved.chunk)..<min(state.rows.count, (chunk + 1) * Saved.chunk)
        guard !range.isEmpty else { continue }
        entries.append((Self.rowsKey(chunk), Self.encode(rows: state.rows[range], ids: state.ids[range])))
      }
      let names = state.names.names
      for chunk in (state.saved.names / Saved.chunk)..<Saved.chunks(names.count) {
        let range = (chunk * Saved.chunk)..<min(names.count, (chunk + 1) * Saved.chunk)
        entries.append((Self.namesKey(chunk), Self.encode(strings: names[range])))
      }
      var header = ByteWriter()
      header.append(Self.format)
      header.append(string: fingerprint)
      for collection in Self.collections { header.append(state.sequences[collection] ?? 0) }
      header.append(Int64(state.rows.count))
      header.append(Int64(names.count))
      header.append(now)
      entries.append((Self.headerKey, header.bytes))
      let taken = (entries: entries, dirty: state.saved.dirty, names: state.saved.names, atMs: state.saved.atMs)
      state.saved.dirty = []
      state.saved.names = names.count
      state.saved.atMs = now
      return taken
    }
    guard let pending else { return false }
    do {
      try service.store.transaction { db in
        for (key, value) in pending.entries { try service.store.records.setBlob(key, value, in: db) }
      }
    } catch {
      state.withLock { state in
        state.saved.dirty.formUnion(pending.dirty)
        state.saved.names = min(state.saved.names, pending.names)
        state.saved.atMs = pending.atMs
      }
      throw error
    }
    return true
  }

  // MARK: Restoring

  /// The rows as last saved, if there are any made under today's rules; false to load from the
  /// orders themselves (a saved index that does not read back whole is not used).
  func restore(_ service: WorkOrderService, in db: Database) throws -> Bool {
    let store = service.store.records
    guard let headerBytes = try store.blob(Self.headerKey, in: db) else { return false }
    var header = ByteReader(headerBytes)
    guard header.uint32() == Self.format, header.string() == Self.fingerprint(service) else { return false }
    var sequences: [String: Int64] = [:]
    for collection in Self.collections {
      guard let sequence = header.int64() else { return false }
      sequences[collection] = sequence
    }
    guard let rowCount = header.int64().map(Int.init), let nameCount = header.int64().map(Int.init), let savedAt = header.int64(),
      (0...Int(Int32.max)).contains(rowCount), (0...Int(Int32.max)).contains(nameCount)
    else { return false }
    var built = State()
    built.names.names.reserveCapacity(nameCount)
    for chunk in 0..<Saved.chunks(nameCount) {
      guard let bytes = try store.blob(Self.namesKey(chunk), in: db), let strings = Self.decodeStrings(bytes) else { return false }
      for name in strings { _ = built.names.number(name) }
    }
    guard built.names.names.count == nameCount else { return false }
    built.rows.reserveCapacity(rowCount)
    built.ids.reserveCapacity(rowCount)
    built.rowOf.reserveCapacity(rowCount)
    for chunk in 0..<Saved.chunks(rowCount) {
      guard let bytes = try store.blob(Self.rowsKey(chunk), in: db), Self.decode(bytes, names: nameCount, into: &built) else { return false }
    }
    guard built.rows.count == rowCount, built.rowOf.count == rowCount else { return false }
    for index in built.rows.indices { built.list(index) }
    try loadWatchers(service, into: &built, in: db)
    built.sequences = sequences
    built.saved.names = nameCount
    built.saved.atMs = savedAt
    built.origin = .restored
    state.withLock { state in
      guard state.sequences.isEmpty else { return }
      state = built
    }
    return true
  }

  // MARK: Encoding

  static func encode(rows: ArraySlice<StatRow>, ids: ArraySlice<String>) -> [UInt8] {
    var out = ByteWriter()
    out.bytes.reserveCapacity(rows.count * 120)
    out.append(Int64(rows.count))
    for (row, id) in zip(rows, ids) {
      out.append(row.path)
      out.append(row.county)
      out.append(row.assignee)
      out.append(row.state)
      out.append(row.kind)
      out.append(row.priority)
      out.bytes.append((row.reopened ? 1 : 0) | (row.everResolved ? 2 : 0) | (row.gone ? 4 : 0))
      out.bytes.append(row.marks)
      out.append(row.createdMs)
      out.append(row.firstResponseMinutes)
      out.append(row.firstResponseTarget)
      out.append(row.firstResponseDueMs)
      out.append(row.firstResponseWarnMs)
      out.append(row.resolutionMinutes)
      out.append(row.resolutionTarget)
      out.append(row.resolutionDueMs)
      out.append(row.resolutionWarnMs)
      out.append(row.resolvedMs)
      out.append(row.submitter)
      out.append(row.serviceOrg)
      out.append(row.assigneeOrg)
      out.append(string: id)
    }
    return out.bytes
  }

  /// Appends the rows in `bytes` to `built`; false if they do not read back whole, or name a
  /// string outside the first `names`.
  static func decode(_ bytes: [UInt8], names: Int, into built: inout State) -> Bool {
    var input = ByteReader(bytes)
    guard let count = input.int64(), count >= 0, count <= Saved.chunk else { return false }
    func name(_ number: Int32?, optional: Bool = true) -> Int32? {
      guard let number, number < names, number >= (optional ? -1 : 0) else { return nil }
      return number
    }
    for _ in 0..<count {
      guard let path = name(input.int32(), optional: false), let county = name(input.int32(), optional: false),
        let assignee = name(input.int32()), let state = input.int32(), let kind = input.int32(), let priority = input.int32(),
        let flags = input.byte(), let marks = input.byte(), let createdMs = input.int64(),
        let firstResponseMinutes = input.int32(), let firstResponseTarget = input.int32(),
        let firstResponseDueMs = input.int64(), let firstResponseWarnMs = input.int64(),
        let resolutionMinutes = input.int32(), let resolutionTarget = input.int32(),
        let resolutionDueMs = input.int64(), let resolutionWarnMs = input.int64(), let resolvedMs = input.int64(),
        let submitter = name(input.int32()), let serviceOrg = name(input.int32()), let assigneeOrg = name(input.int32()),
        let id = input.string(), built.rowOf[id] == nil
      else { return false }
      built.rowOf[id] = Int32(built.rows.count)
      built.ids.append(id)
      built.rows.append(
        StatRow(
          path: path, county: county, assignee: assignee, state: state, kind: kind, priority: priority, reopened: flags & 1 != 0,
          everResolved: flags & 2 != 0, gone: flags & 4 != 0, marks: marks, createdMs: createdMs,
          firstResponseMinutes: firstResponseMinutes, firstResponseTarget: firstResponseTarget, firstResponseDueMs: firstResponseDueMs,
          firstResponseWarnMs: firstResponseWarnMs, resolutionMinutes: resolutionMinutes, resolutionTarget: resolutionTarget,
          resolutionDueMs: resolutionDueMs, resolutionWarnMs: resolutionWarnMs, resolvedMs: resolvedMs, submitter: submitter,
          serviceOrg: serviceOrg, assigneeOrg: assigneeOrg))
    }
    return input.atEnd
  }

  static func encode(strings: ArraySlice<String>) -> [UInt8] {
    var out = ByteWriter()
    out.append(Int64(strings.count))
    for string in strings { out.append(string: string) }
    return out.bytes
  }

  static func decodeStrings(_ bytes: [UInt8]) -> [String]? {
    var input = ByteReader(bytes)
    guard let count = input.int64(), count >= 0, count <= Saved.chunk else { return nil }
    var strings: [String] = []
    strings.reserveCapacity(Int(count))
    for _ in 0..<count {
      guard let string = input.string() else { return nil }
      strings.append(string)
    }
    return input.atEnd ? strings : nil
  }
}

/// Little-endian fixed-width numbers and length-prefixed UTF-8, for the saved index.
struct ByteWriter {
  var bytes: [UInt8] = []

  mutating func append<T: FixedWidthInteger>(_ value: T) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
  }

  mutating func append(string: String) {
    let utf8 = Array(string.utf8)
    append(UInt32(utf8.count))
    bytes.append(contentsOf: utf8)
  }
}

/// Reads what `ByteWriter` wrote; nil past the end.
struct ByteReader {
  private let bytes: [UInt8]
  private var offset = 0

  init(_ bytes: [UInt8]) {
    self.bytes = bytes
  }

  var atEnd: Bool { offset == bytes.count }

  mutating func byte() -> UInt8? {
    guard offset < bytes.count else { return nil }
    defer { offset += 1 }
    return bytes[offset]
  }

  mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
    let size = MemoryLayout<T>.size
    guard bytes.count - offset >= size else { return nil }
    var value = T.zero
    withUnsafeMutableBytes(of: &value) { target in
      bytes.withUnsafeBytes { source in target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + size)])) }
    }
    offset += size
    return T(littleEndian: value)
  }

  mutating func int32() -> Int32? { integer(Int32.self) }
  mutating func uint32() -> UInt32? { integer(UInt32.self) }
  mutating func int64() -> Int64? { integer(Int64.self) }

  mutating func string() -> String? {
    guard let length = uint32().map(Int.init), bytes.count - offset >= length else { return nil }
    defer { offset += length }
    return String(decoding: bytes[offset..<(offset + length)], as: UTF8.self)
  }
}
