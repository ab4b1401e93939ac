import EduHubAPI
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

/// Every grant in memory, by resource: the check on every call and every stream message is a
/// lookup here, not a database read.
///
/// Caught up from the grant collection's change index whenever the store signals a commit (so a
/// revocation on this node reaches the next message at once), and at least once a second (writes
/// by another process, such as `eduhub share revoke`, do not signal).
final class GrantBook: Sendable {
  private struct State {
    var sequence: Int64 = 0
    var generation: UInt64 = .max
    var checked: ContinuousClock.Instant?
    var byID: [String: Eduhub_Sharing_V1_Grant] = [:]
    var byResource: [String: [String]] = [:]
  }

  private let state = Mutex(State())
  let store: NodeStore
  static let recheck = Duration.seconds(1)

  init(store: NodeStore) { self.store = store }

  /// Catches up with the store when it may have changed (`force`: whether or not it signalled, for
  /// a refusal about to be given, which must not rest on a view up to a second old).
  func refresh(force: Bool = false) throws {
    let generation = store.records.changed.generation
    let now = ContinuousClock.now
    let after = state.withLock { state -> Int64? in
      if !force, state.generation == generation, let checked = state.checked, now - checked < Self.recheck { return nil }
      return state.sequence
    }
    guard let after else { return }
    let changes = try store.read { db in try store.records.changes(of: SharingCollections.grant, after: after, in: db) }
    state.withLock { state in
      for record in changes.records where record.sequence > state.sequence {
        state.sequence = record.sequence
        let old = state.byID[record.id]
        if record.deleted {
          state.byID[record.id] = nil
        } else if var grant = try? SharingCollections.grant.decode(record) {
          grant.resourceOrgPath = record.scope
          state.byID[record.id] = grant
          if old?.terms.resourceCode != grant.terms.resourceCode {
            state.byResource[grant.terms.resourceCode, default: []].append(record.id)
            state.byResource[grant.terms.resourceCode]?.sort()
          }
        }
        if let old, state.byID[record.id]?.terms.resourceCode != old.terms.resourceCode {
          state.byResource[old.terms.resourceCode]?.removeAll { $0 == record.id }
        }
      }
      for (_, id) in changes.evicted {
        if let old = state.byID.removeValue(forKey: id) { state.byResource[old.terms.resourceCode]?.removeAll { $0 == id } }
      }
      state.generation = generation
      state.checked = now
    }
  }

  /// The grants of `resource`, oldest first.
  func grants(of resource: String) -> [Eduhub_Sharing_V1_Grant] {
    state.withLock { state in (state.byResource[resource] ?? []).compactMap { state.byID[$0] } }
  }

  /// Every grant.
  func all() -> [Eduhub_Sharing_V1_Grant] {
    state.withLock { Array($0.byID.values) }
  }

  /// The grant `id` as it stands now.
  func grant(_ id: String) -> Eduhub_Sharing_V1_Grant? {
    state.withLock { $0.byID[id] }
  }
}
