import EduHubAPI
import EduHubReplication
import EduHubStorage

/// The record-store collections of work orders. Orders, events and watch marks index their changes:
/// the in-memory order index and Watch streams catch up from them.
public enum WorkOrderCollections {
  /// The order a record of `collection` belongs to: an order's own id, or the part of an event's,
  /// watch mark's or attachment's id before its first "|".
  static func orderID(of recordID: String, in collection: String) -> String {
    collection == order.name ? recordID : String(recordID.prefix { $0 != "|" })
  }

  /// Orders as submitted (immutable; scope: the submitting org's path). 6 submitter.
  public static let order = RecordCollection<Eduhub_Workorder_V1_WorkOrder>("workorder", indexes: ["submitter"], indexesChanges: true) {
    body in .init(keys: [("submitter", try WireFields.strings(body, [6])[6] ?? "")])
  }
  /// Events of orders (immutable; the order's scope). 2 order_id.
  public static let event = RecordCollection<Eduhub_Workorder_V1_OrderEvent>("workorder_event", indexes: ["order"], indexesChanges: true) {
    body in .init(keys: [("order", try WireFields.strings(body, [2])[2] ?? "")])
  }
  /// Watch marks: an OrderEvent record whose `actor` watches `order_id` (deleted to unwatch).
  /// 2 order_id, 6 actor.
  public static let watch = RecordCollection<Eduhub_Workorder_V1_OrderEvent>(
    "workorder_watch", indexes: ["order", "account"], indexesChanges: true
  ) { body in
    let fields = try WireFields.strings(body, [2, 6])
    return .init(keys: [("order", fields[2] ?? ""), ("account", fields[6] ?? "")])
  }
  /// Attachments' metadata (index by order; 2 order_id) and their content in chunks of 256 KiB
  /// (`attachment-id|n`, AttachmentChunk with data only).
  public static let attachment = RecordCollection<Eduhub_Workorder_V1_Attachment>("workorder_attachment", indexes: ["order"]) { body in
    .init(keys: [("order", try WireFields.strings(body, [2])[2] ?? "")])
  }
  public static let chunk = RecordCollection<Eduhub_Workorder_V1_AttachmentChunk>("workorder_chunk")

  public static var all: [CollectionDefinition] {
    [order.definition, event.definition, watch.definition, attachment.definition, chunk.definition]
  }
}
