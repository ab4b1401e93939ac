import Foundation

/// A bounded queue from one producer thread to one consumer: the producer blocks while
/// `capacity` items wait, the consumer while none do. Bulk loads use it to build batches on one
/// core while the single SQLite writer stores the previous ones on the other.
///
/// Either side may stop the other: the producer with ``finish(throwing:)`` (after its last item,
/// or with the error that ended it), the consumer with ``cancel()`` (a failed write), after which
/// ``send(_:)`` returns false at once so the producer can stop early.
public final class Handoff<Item: Sendable>: @unchecked Sendable {
  // Every field below is read and written only while `condition` is locked.
  private let condition = NSCondition()
  private var items: [Item] = []
  private var finished = false
  private var cancelled = false
  private var failure: (any Error)?
  private let capacity: Int

  public init(capacity: Int) {
    precondition(capacity > 0, "a handoff holds at least one item")
    self.capacity = capacity
  }

  /// Hands `item` over, waiting for room. False when the consumer has cancelled (the item is dropped).
  @discardableResult
  public func send(_ item: Item) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    while items.count >= capacity, !cancelled { condition.wait() }
    guard !cancelled else { return false }
    items.append(item)
    condition.broadcast()
    return true
  }

  /// Ends the stream: the consumer gets the items already sent, then nil (or `error`, thrown).
  public func finish(throwing error: (any Error)? = nil) {
    condition.lock()
    defer { condition.unlock() }
    finished = true
    failure = error
    condition.broadcast()
  }

  /// The consumer gives up: waiting and later sends return false, the items left are dropped.
  public func cancel() {
    condition.lock()
    defer { condition.unlock() }
    cancelled = true
    items.removeAll()
    condition.broadcast()
  }

  /// The next item, waiting for one; nil once the producer finished and every item was taken.
  /// - Throws: the error the producer finished with, after the items sent before it.
  public func receive() throws -> Item? {
    condition.lock()
    defer { condition.unlock() }
    while items.isEmpty, !finished, !cancelled { condition.wait() }
    if !items.isEmpty {
      condition.broadcast()
      return items.removeFirst()
    }
    if let failure { throw failure }
    return nil
  }

  /// Runs `produce` on a new thread with this handoff, finishing it when `produce` returns or
  /// throws; the caller then consumes with ``receive()``.
  public func produce(on name: String, _ produce: @escaping @Sendable (Handoff<Item>) throws -> Void) {
    let thread = Thread { [self] in
      do {
        try produce(self)
        finish()
      } catch {
        finish(throwing: error)
      }
    }
    thread.name = name
    thread.start()
  }
}
