import EduHubStorage

/// The record-store collections of work orders. All three index their changes: the in-memory
/// order index and Watch streams catch up from them.
public enum WorkOrderCollections {
  /// Orders as submitted (immutable; scope: the submitting org's path).
  public static let order = "workorder"
  /// Events of orders (immutable; the order's scope).
  public static let event = "workorder_event"
  /// Watch marks: an OrderEvent record whose `actor` watches `order_id` (deleted to unwatch).
  public static let watch = "workorder_watch"
  /// Attachments' metadata (Attachment; index by order) and their content in chunks of 256 KiB
  /// (`attachment-id|n`, AttachmentChunk with data only).
  public static let attachment = "workorder_attachment"
  public static let chunk = "workorder_chunk"

  public static var all: [CollectionDefinition] {
    [
      // 6 submitter.
      CollectionDefinition(name: order, indexes: ["submitter"], indexesChanges: true) { body in
        .init(keys: [("submitter", try WireFields.strings(body, [6])[6] ?? "")])
      },
      // 2 order_id.
      CollectionDefinition(name: event, indexes: ["order"], indexesChanges: true) { body in
        .init(keys: [("order", try WireFields.strings(body, [2])[2] ?? "")])
      },
      // 2 order_id, 6 actor.
      CollectionDefinition(name: watch, indexes: ["order", "account"], indexesChanges: true) { body in
        let fields = try WireFields.strings(body, [2, 6])
        return .init(keys: [("order", fields[2] ?? ""), ("account", fields[6] ?? "")])
      },
      // 2 order_id.
      CollectionDefinition(name: attachment, indexes: ["order"]) { body in
        .init(keys: [("order", try WireFields.strings(body, [2])[2] ?? "")])
      },
      CollectionDefinition(name: chunk),
    ]
  }
}
