import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication

/// The RPC face of ``SyncService``: one method per RPC of sync.proto, each calling the
/// implementation of the same name with the caller the server's authenticator resolved.
extension SyncService: Eduhub_Sync_V1_SyncService.Handler {
  public func createNode(request: Eduhub_Sync_V1_CreateNodeRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_CreateNodeResponse {
    try await store.blocking { try self.createNode(request, caller: try context.caller(), peer: context.peer) }
  }

  public func enroll(request: Eduhub_Sync_V1_EnrollRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_EnrollResponse {
    try await store.blocking { try self.enroll(request, peer: context.peer) }
  }

  public func challenge(request: Eduhub_Sync_V1_ChallengeRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_ChallengeResponse {
    try await store.blocking { try self.challenge(request) }
  }

  public func authenticate(request: Eduhub_Sync_V1_AuthenticateRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_AuthenticateResponse {
    try await store.blocking { try self.authenticate(request, peer: context.peer) }
  }

  public func listNodes(request: Eduhub_Sync_V1_ListNodesRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_ListNodesResponse {
    try listNodes(request, caller: try context.caller(), peer: context.peer)
  }

  public func revokeNode(request: Eduhub_Sync_V1_RevokeNodeRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_SyncNode {
    try await store.blocking { try self.revokeNode(request, caller: try context.caller(), peer: context.peer) }
  }

  public func pull(request: Eduhub_Sync_V1_PullRequest, response: RPCWriter<Eduhub_Sync_V1_PullBatch>, context: ServerContext) async throws {
    try await pull(request, caller: try context.caller(), peer: context.peer) { batch in try await response.write(batch) }
  }

  public func push(requests: RPCStream<Eduhub_Sync_V1_PushRequest>, context: ServerContext) async throws -> Eduhub_Sync_V1_PushResponse {
    try await push(requests, caller: try context.caller(), peer: context.peer)
  }

  public func handshake(request: Eduhub_Sync_V1_HandshakeRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_HandshakeResponse {
    try await store.blocking { try self.handshake(request, caller: try context.caller(), peer: context.peer) }
  }

  public func listConflicts(request: Eduhub_Sync_V1_ListConflictsRequest, context: ServerContext) async throws -> Eduhub_Sync_V1_ListConflictsResponse {
    try listConflicts(request, caller: try context.caller(), peer: context.peer)
  }
}
