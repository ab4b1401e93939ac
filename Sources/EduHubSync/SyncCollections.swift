import EduHubAPI
import EduHubReplication
import EduHubStorage

/// The record-store collections the sync service keeps.
public enum SyncCollections {
  /// Downstream nodes, scoped by the org path they hold.
  public static let node = RecordCollection<Eduhub_Sync_V1_SyncNodeRecord>("sync_node")

  public static var all: [CollectionDefinition] { [node.definition] }
}
