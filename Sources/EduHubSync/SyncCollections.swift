import EduHubStorage

/// The record-store collections the sync service keeps.
public enum SyncCollections {
  /// Downstream nodes (`SyncNodeRecord`), scoped by the org path they hold.
  public static let node = "sync_node"

  public static var all: [CollectionDefinition] { [CollectionDefinition(name: node)] }
}
