import EduHubAPI
import EduHubIdentity
import EduHubReplication
import EduHubStorage
import GRDB
import SwiftProtobuf
import Synchronization

extension OrderIndex {
  /// One collection read in pages by id.
  struct Walk {
    let collection: String
    var page: [StoredRecord] = []
    var index = 0
    var after = ""
    var done = false

    init(_ collection: String) {
      self.collection = collection
    }

    mutating func peek(_ store: RecordStore, _ db: Database) throws -> StoredRecord? {
      if index == page.count, !done {
        page = try store.byID(collection, after: after, limit: 5000, in: db)
        index = 0
        done = page.count < 5000
        after = page.last?.id ?? after
      }
      return index < page.count ? page[index] : nil
    }
  }

  /// The first load without a saved index: orders and their events walked in id order together
  /// (an event's id starts with its order's), one order in memory at a time.
  func load(_ service: WorkOrderService, in db: Database, stop: () -> Bool) throws {
    let store = service.store.records
    let through = try store.lastSequence(in: db)
    let now = service.identity.nowMs()
    var orders = Walk(WorkOrderCollections.order.name)
    var events = Walk(WorkOrderCollections.event.name)
    var built = State()
    // Events met before their order (an id that extends another, "…12" and "…123|…") wait here.
    var early: [String: [StoredRecord]] = [:]
    while let record = try orders.peek(store, db) {
      orders.index += 1
      if orders.index == 1, stop() { throw CancellationError() }
      let prefix = record.id + "|"
      var own = early.removeValue(forKey: record.id) ?? []
      while let next = try events.peek(store, db), next.id < prefix || next.id.hasPrefix(prefix) {
        events.index += 1
        guard !next.deleted else { continue }
        if next.id.hasPrefix(prefix) {
          own.append(next)
        } else {
          early[WorkOrderCollections.orderID(of: next.id, in: events.collection), default: []].append(next)
        }
      }
      guard !record.deleted else { continue }
      let orderEvents = try own.map { try Eduhub_Workorder_V1_OrderEvent(serializedBytes: $0.body) }
      let order = try WorkOrderCollections.order.decode(record)
      built.set(record.id, Self.summary(service, record, order, orderEvents, now: now))
    }
    try loadWatchers(service, into: &built, in: db)
    built.sequences = Dictionary(uniqueKeysWithValues: Self.collections.map { ($0, through) })
    built.saved = Saved(everything: built)
    built.origin = .built
    state.withLock { state in
      guard state.sequences.isEmpty else { return }
      state = built
    }
  }

  /// Every live watch mark, into `built`'s rows (marks of orders not in them are left out: they
  /// arrived with their order in a later change the catch-up reads).
  func loadWatchers(_ service: WorkOrderService, into built: inout State, in db: Database) throws {
    let store = service.store.records
    var walk = Walk(WorkOrderCollections.watch.name)
    var marks: [Int32: [String]] = [:]
    while let record = try walk.peek(store, db) {
      walk.index += 1
      guard !record.deleted, let row = built.rowOf[WorkOrderCollections.orderID(of: record.id, in: walk.collection)],
        let mark = try? Eduhub_Workorder_V1_OrderEvent(serializedBytes: record.body)
      else { continue }
      marks[row, default: []].append(mark.actor)
    }
    for (row, accounts) in marks { built.setWatchers(row, accounts) }
  }
}
