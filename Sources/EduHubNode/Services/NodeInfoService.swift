import EduHubAPI
import EduHubRPC
import NIOCore

/// `eduhub.node.v1.NodeService`: what this node is, and an echo to measure it by.
public struct NodeInfoService: Eduhub_Node_V1_NodeService.Handler {
  let identity: NodeIdentity
  let startedAt: NIODeadline

  public init(identity: NodeIdentity, startedAt: NIODeadline = .now()) {
    self.identity = identity
    self.startedAt = startedAt
  }

  public func info(request: Eduhub_Node_V1_InfoRequest, context: ServerContext) throws -> Eduhub_Node_V1_InfoResponse {
    var response = Eduhub_Node_V1_InfoResponse()
    response.nodeID = identity.nodeID
    response.scope = identity.scope
    response.role = identity.role.rawValue
    response.version = EduHubVersion.current
    response.uptimeSeconds = Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9
    return response
  }

  public func ping(request: Eduhub_Node_V1_PingRequest, context: ServerContext) throws -> Eduhub_Node_V1_PingResponse {
    var response = Eduhub_Node_V1_PingResponse()
    response.payload = request.payload
    return response
  }
}

/// Who a node is.
public struct NodeIdentity: Sendable, Hashable {
  /// The node's role in the tree.
  public enum Role: String, Sendable, CaseIterable {
    case central, county, school
  }

  public var nodeID: String
  /// The org subtree the node holds ("" for the whole region).
  public var scope: String
  public var role: Role

  public init(nodeID: String, scope: String, role: Role) {
    self.nodeID = nodeID
    self.scope = scope
    self.role = role
  }
}

/// The version EduHub reports.
public enum EduHubVersion {
  public static let current = "0.1.0"
}
