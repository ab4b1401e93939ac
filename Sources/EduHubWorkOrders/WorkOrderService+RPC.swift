import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication

/// The RPC face of ``WorkOrderService``: one method per RPC of workorder.proto, each calling the
/// implementation of the same name with the caller the server's authenticator resolved.
extension WorkOrderService: Eduhub_Workorder_V1_WorkOrderService.Handler {
  public func submit(request: Eduhub_Workorder_V1_SubmitRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_WorkOrder {
    try await submit(request, caller: try context.caller(), peer: context.peer)
  }

  public func getOrder(request: Eduhub_Workorder_V1_GetOrderRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_OrderDetail {
    try getOrder(request, caller: try context.caller())
  }

  public func act(request: Eduhub_Workorder_V1_ActRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_OrderDetail {
    try await store.blocking { try self.act(request, caller: try context.caller(), peer: context.peer) }
  }

  public func setWatch(request: Eduhub_Workorder_V1_WatchOrderRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_WorkOrder {
    try await store.blocking { try self.setWatch(request, caller: try context.caller()) }
  }

  public func listOrders(request: Eduhub_Workorder_V1_ListOrdersRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_ListOrdersResponse {
    try listOrders(request, caller: try context.caller())
  }

  public func watch(request: Eduhub_Workorder_V1_WatchRequest, response: RPCWriter<Eduhub_Workorder_V1_OrderChange>, context: ServerContext) async throws {
    try await watch(request, caller: try context.caller()) { change in try await response.write(change) }
  }

  public func getStats(request: Eduhub_Workorder_V1_StatsRequest, context: ServerContext) async throws -> Eduhub_Workorder_V1_Stats {
    try getStats(request, caller: try context.caller())
  }

  public func addAttachment(requests: RPCStream<Eduhub_Workorder_V1_AttachmentChunk>, context: ServerContext) async throws -> Eduhub_Workorder_V1_Attachment {
    try await addAttachment(requests, caller: try context.caller(), peer: context.peer)
  }

  public func getAttachment(request: Eduhub_Workorder_V1_GetAttachmentRequest, response: RPCWriter<Eduhub_Workorder_V1_AttachmentChunk>, context: ServerContext) async throws {
    try await getAttachment(request, caller: try context.caller()) { chunk in try await response.write(chunk) }
  }
}
