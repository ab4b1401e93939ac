import EduHubAPI

/// What a caller may do. A permission is held on an org subtree through a role grant.
public enum Permission: String, Sendable, Hashable, CaseIterable {
  case orgRead = "org.read"
  case orgWrite = "org.write"
  /// Read people, masked where the reader is not an owner.
  case peopleRead = "people.read"
  /// Read people in clear: the privacy policy's owner permission (own school staff).
  case peopleReadClear = "people.read.clear"
  case peopleWrite = "people.write"
  /// Create accounts, end their sessions, start resets.
  case accountsManage = "accounts.manage"
  /// Grant and revoke roles (only roles whose permissions the granter holds there).
  case rolesGrant = "roles.grant"
  case auditRead = "audit.read"
  case catalogRead = "catalog.read"
  /// Publish, update and retire catalog resources of a subtree.
  case catalogPublish = "catalog.publish"
  /// Register, list and revoke downstream nodes in a subtree.
  case nodesManage = "nodes.manage"
  /// A node's own: pull changes of its scope, push its writes.
  case syncPull = "sync.pull"
  case syncPush = "sync.push"
  /// Submit work orders (and act on one's own as their requester).
  case ordersSubmit = "orders.submit"
  /// Accept, assign, work on, resolve and reject the work orders of service orgs in a subtree.
  case ordersHandle = "orders.handle"
  /// Read every work order submitted in a subtree (and its statistics).
  case ordersRead = "orders.read"
  /// Ask for catalog data for the orgs of a subtree, and use their grants (SharingService).
  case shareRequest = "share.request"
  /// Register and manage external applications (city administrators).
  case shareApps = "share.apps"
  /// The second approval of requests for minors' sensitive fields (the city's data security officer).
  case shareSecurity = "share.security"
  /// Binding a guardian to a child, or confirming another person's binding: the child's school only
  /// (people who read the child in clear already), never a masked reader above it.
  case guardiansBind = "guardians.bind"
}

/// The built-in roles and their permissions.
public enum Roles {
  public static func permissions(of role: Eduhub_Identity_V1_Role) -> Set<Permission> {
    switch role {
    case .cityAdmin:
      // Administrators of a city or county see people masked: clear reads belong to the child's school.
      return [
        .orgRead, .orgWrite, .peopleRead, .peopleWrite, .accountsManage, .rolesGrant, .nodesManage, .catalogRead,
        .catalogPublish, .ordersSubmit, .ordersHandle, .ordersRead, .shareRequest, .shareApps,
      ]
    case .countyAdmin:
      return [
        .orgRead, .orgWrite, .peopleRead, .peopleWrite, .accountsManage, .rolesGrant, .nodesManage, .catalogRead,
        .catalogPublish, .ordersSubmit, .ordersHandle, .ordersRead, .shareRequest,
      ]
    case .schoolAdmin:
      return [
        .orgRead, .peopleRead, .peopleReadClear, .peopleWrite, .accountsManage, .rolesGrant, .catalogRead, .ordersSubmit,
        .ordersRead, .shareRequest, .guardiansBind,
      ]
    case .teacher:
      return [.orgRead, .peopleRead, .peopleReadClear, .catalogRead, .ordersSubmit, .guardiansBind]
    case .dataSteward:
      return [.orgRead, .catalogRead, .catalogPublish, .ordersSubmit, .ordersHandle, .ordersRead, .shareRequest]
    case .securityOfficer:
      return [.orgRead, .catalogRead, .shareSecurity, .auditRead]
    case .dispatcher:
      return [.orgRead, .ordersSubmit, .ordersHandle, .ordersRead]
    case .student, .guardian:
      return [.orgRead]
    case .dataConsumer:
      return [.orgRead, .catalogRead, .ordersSubmit, .shareRequest]
    case .auditor:
      return [.orgRead, .auditRead, .ordersRead]
    case .node:
      // A node with clearance also holds people.read.clear (added when it authenticates).
      return [.orgRead, .peopleRead, .syncPull, .syncPush]
    case .unspecified, .UNRECOGNIZED:
      return []
    }
  }

  /// The role's name as operators type it (`county-admin`).
  public static func name(of role: Eduhub_Identity_V1_Role) -> String {
    switch role {
    case .cityAdmin: return "city-admin"
    case .countyAdmin: return "county-admin"
    case .schoolAdmin: return "school-admin"
    case .teacher: return "teacher"
    case .student: return "student"
    case .guardian: return "guardian"
    case .dataConsumer: return "data-consumer"
    case .auditor: return "auditor"
    case .node: return "node"
    case .dataSteward: return "data-steward"
    case .dispatcher: return "dispatcher"
    case .securityOfficer: return "security-officer"
    case .unspecified, .UNRECOGNIZED: return "unspecified"
    }
  }

  /// The role named `name` (as `name(of:)` writes it).
  public static func role(named name: String) -> Eduhub_Identity_V1_Role? {
    all.first { Self.name(of: $0) == name }
  }

  /// Every role a grant can hold.
  public static let all: [Eduhub_Identity_V1_Role] = [
    .cityAdmin, .countyAdmin, .schoolAdmin, .teacher, .student, .guardian, .dataConsumer, .auditor, .dataSteward,
    .dispatcher, .securityOfficer,
  ]
}
