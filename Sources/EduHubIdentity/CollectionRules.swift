import Synchronization

/// One kind of rule for every replicated collection (who may write it, how it is classified),
/// registered by the service that owns the collection (see `IdentityService.declare`).
public final class CollectionRules<Rule: Sendable>: Sendable {
  private let rules = Mutex<[String: Rule]>([:])

  public init() {}

  /// Sets the rule of `collection` (its owning service does, once).
  public func register(_ collection: String, _ rule: Rule) {
    rules.withLock { $0[collection] = rule }
  }

  /// The rule of `collection`, or nil when none was registered.
  public func of(_ collection: String) -> Rule? {
    rules.withLock { $0[collection] }
  }
}
