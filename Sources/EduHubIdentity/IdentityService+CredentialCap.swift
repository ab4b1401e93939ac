import EduHubReplication
import EduHubStorage
import GRDB

/// What a node below may have decided about an account's login: an owned school node writes its
/// accounts' password hashes, codes, states, phones and people as it likes, and pushes them up.
/// A token of such an account, wherever it was signed, speaks for no more than that node holds:
/// roles inside its scope, clear reads only if it reads in clear.
extension IdentityService {
  /// Account fields that decide who can log in as the account and whom it speaks as: phone (where
  /// reset codes go), person_id, state, password_hash, sessions_not_before_ms, activation_hash and
  /// its expiry. Failed-login counts and locks only ever refuse, so they do not count.
  static let credentialFields = [3, 4, 5, 8, 11, 12, 13]
  /// Session fields that decide whether a token of it is honoured: account, start, end, revocation.
  static let sessionFields = [2, 3, 4, 5]

  /// The scope and clearance a caller is capped at (nil: none), narrowed by every node below this
  /// one that last wrote one of `fields` of `record`. A field without a stamp counts as written by
  /// every node the record's vector names.
  func cap(
    _ cap: (scope: String, clear: Bool)?, byWritersOf fields: [Int], of record: StoredRecord, in db: Database
  ) throws -> (scope: String, clear: Bool)? {
    let stamps = try ReplicationEncoding.decodeStamps(record.stamps)
    var writers = Set<String>()
    for number in fields {
      if let stamp = stamps[number] {
        writers.insert(stamp.node)
      } else {
        writers.formUnion(try ReplicationEncoding.decodeVector(record.version).entries.map(\.node))
      }
    }
    var narrowed = cap
    for writer in writers.sorted() where writer != nodeID {
      guard let below = try issuerScope(writer, in: db) else { continue }
      narrowed = Self.intersect(narrowed, below)
    }
    return narrowed
  }

  /// The narrower of two caps; two disjoint subtrees leave nothing (a scope no record has).
  static func intersect(_ a: (scope: String, clear: Bool)?, _ b: (scope: String, clear: Bool)) -> (scope: String, clear: Bool) {
    guard let a else { return b }
    let clear = a.clear && b.clear
    if !b.scope.isEmpty, RecordStore.inScope(b.scope, a.scope) { return (b.scope, clear) }
    if !a.scope.isEmpty, RecordStore.inScope(a.scope, b.scope) { return (a.scope, clear) }
    return ("\u{0}", false)
  }
}
