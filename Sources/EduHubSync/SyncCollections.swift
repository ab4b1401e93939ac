import EduHubAPI
import EduHubReplication
import EduHubStorage

/// The record-store collections the sync service keeps.
public enum SyncCollections {
  /// Downstream nodes, scoped by the org path they hold.
  public static let node = RecordCollection<Eduhub_Sync_V1_SyncNodeRecord>("sync_node")
  /// When each node below a county (or any middle node) last pulled from it, by node id, stored at
  /// that middle node's scope: replicated up, never down to the nodes it describes.
  public static let contact = RecordCollection<Eduhub_Sync_V1_NodeContact>("sync_contact")

  public static var all: [CollectionDefinition] { [node.definition, contact.definition] }
}
