import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf

extension WorkOrderService {
  /// The largest attachment.
  public static let attachmentLimit = 10 << 20
  static let chunkSize = 256 << 10

  /// Receives an attachment: the whole stream is checked (and held, at most 10 MiB) before anything
  /// is written, then the metadata, the chunks and a timeline comment go in one transaction.
  public func addAttachment(
    _ chunks: some AsyncSequence<Eduhub_Workorder_V1_AttachmentChunk, any Error>, caller: Caller, peer: String
  ) async throws -> Eduhub_Workorder_V1_Attachment {
    var first: Eduhub_Workorder_V1_AttachmentChunk?
    var content: [UInt8] = []
    for try await chunk in chunks {
      if first == nil { first = chunk }
      guard content.count + chunk.data.count <= Self.attachmentLimit else {
        throw RPCError(.resourceExhausted, "an attachment has at most \(Self.attachmentLimit >> 20) MiB")
      }
      content += chunk.data
    }
    guard let first, !first.orderID.isEmpty else { throw Validate.invalid("the first message names the order") }
    try Validate.text(first.fileName, "file_name", maxLength: 200, required: true)
    guard !first.fileName.contains("/"), !first.fileName.contains("\\") else { throw Validate.invalid("file_name may not hold a path") }
    try Validate.text(first.contentType, "content_type", maxLength: 100)
    guard !content.isEmpty else { throw Validate.invalid("the attachment is empty") }
    let now = identity.nowMs()
    let bytes = content
    return try await store.write { [self] db in
      guard let (record, order, events) = try load(first.orderID, in: db) else {
        throw RPCError(.notFound, "no work order \(first.orderID.prefix(64))")
      }
      let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller) else {
        throw RPCError(.notFound, "no work order \(first.orderID.prefix(64))")
      }
      var attachment = Eduhub_Workorder_V1_Attachment()
      attachment.id = "\(order.id)|A-" + Random.bytes(8).map { String(format: "%02x", $0) }.joined()
      attachment.orderID = order.id
      attachment.fileName = first.fileName
      attachment.contentType = first.contentType.isEmpty ? "application/octet-stream" : first.contentType
      attachment.size = Int64(bytes.count)
      attachment.digest = KeyedHash.digest(bytes).map { String(format: "%02x", $0) }.joined()
      attachment.uploadedBy = caller.accountID.isEmpty ? caller.actor : caller.accountID
      attachment.uploadedMs = now
      attachment.chunks = Int32((bytes.count + Self.chunkSize - 1) / Self.chunkSize)
      try store.put(WorkOrderCollections.attachment, attachment.id, scope: record.scope, attachment, in: db)
      for index in 0..<Int(attachment.chunks) {
        var piece = Eduhub_Workorder_V1_AttachmentChunk()
        piece.data = Data(bytes[(index * Self.chunkSize)..<min(bytes.count, (index + 1) * Self.chunkSize)])
        try store.put(WorkOrderCollections.chunk, "\(attachment.id)|\(index)", scope: record.scope, piece, in: db)
      }
      var event = Event()
      event.orderID = order.id
      event.action = .comment
      event.actor = attachment.uploadedBy
      event.timeMs = now
      event.note = "附件：\(attachment.fileName)（\(attachment.size) 字节）"
      try appendEvent(&event, scope: record.scope, in: db)
      try identity.audit.append(
        .init(actor: caller.actor, action: "workorder.AddAttachment", target: attachment.id, peer: peer, timeMs: now), in: db)
      return attachment
    }
  }

  /// The order's attachments, oldest first.
  func attachments(of orderID: String, in db: Database) throws -> [Eduhub_Workorder_V1_Attachment] {
    try store.records.find(WorkOrderCollections.attachment, index: "order", key: orderID, limit: 1000, in: db)
      .map { try Eduhub_Workorder_V1_Attachment(serializedBytes: $0.body) }
      .sorted { ($0.uploadedMs, $0.id) < ($1.uploadedMs, $1.id) }
  }

  /// Sends an attachment: its metadata first, then its content in chunks. A chunk that has not
  /// arrived on this node yet (sync in progress) is UNAVAILABLE.
  public func getAttachment(
    _ request: Eduhub_Workorder_V1_GetAttachmentRequest, caller: Caller,
    send: (Eduhub_Workorder_V1_AttachmentChunk) async throws -> Void
  ) async throws {
    let orderID = String(request.id.prefix { $0 != "|" })
    let attachment = try store.read { db -> Eduhub_Workorder_V1_Attachment in
      guard let (record, order, events) = try load(orderID, in: db),
        let stored = try store.live(WorkOrderCollections.attachment, request.id, in: db)
      else { throw RPCError(.notFound, "no attachment \(request.id.prefix(80))") }
      let derived = OrderMachine.derive(order, events: events, reopenWindowMs: reopenWindowMs)
      guard mayRead(order, path: record.scope, assignee: derived.assignee, caller) else {
        throw RPCError(.notFound, "no attachment \(request.id.prefix(80))")
      }
      return try WorkOrderCollections.attachment.decode(stored)
    }
    var head = Eduhub_Workorder_V1_AttachmentChunk()
    head.orderID = attachment.orderID
    head.fileName = attachment.fileName
    head.contentType = attachment.contentType
    head.attachment = attachment
    try await send(head)
    for index in 0..<Int(attachment.chunks) {
      let piece = try store.read { db in
        try store.live(WorkOrderCollections.chunk, "\(attachment.id)|\(index)", in: db)
      }
      guard let piece else { throw RPCError(.unavailable, "part \(index + 1) of the attachment has not arrived on this node yet") }
      try await send(try WorkOrderCollections.chunk.decode(piece))
    }
  }
}
