import EduHubAPI
import EduHubPrivacy
import EduHubRPC

/// An authenticated caller, as the authenticator resolved it from an access token.
public struct Caller: Sendable {
  public struct HeldRole: Sendable, Hashable {
    public var grantID: String
    public var role: Eduhub_Identity_V1_Role
    /// The org path the role is held on (the subtree it covers).
    public var scope: String
    public var permissions: Set<Permission>

    public init(grantID: String, role: Eduhub_Identity_V1_Role, scope: String, permissions: Set<Permission>? = nil) {
      self.grantID = grantID
      self.role = role
      self.scope = scope
      self.permissions = permissions ?? Roles.permissions(of: role)
    }
  }

  public var accountID: String
  public var username: String
  public var personID: String
  /// The org path of the caller's own person record (for audit and defaults).
  public var homeScope: String
  public let roles: [HeldRole]
  /// The caller's grants in the privacy policy's terms (worked out once: every masked read uses them).
  public let grants: [Grant]
  /// People the caller is a bound guardian of.
  public var children: Set<String>
  /// The node that issued the token, and the login session it belongs to.
  public var issuer: String
  public var sessionID: String

  public init(
    accountID: String, username: String, personID: String, homeScope: String, roles: [HeldRole],
    children: Set<String>, issuer: String, sessionID: String
  ) {
    self.accountID = accountID
    self.username = username
    self.personID = personID
    self.homeScope = homeScope
    self.roles = roles
    self.grants = roles.flatMap { role in role.permissions.map { Grant(permission: $0.rawValue, scope: role.scope) } }
    self.children = children
    self.issuer = issuer
    self.sessionID = sessionID
  }

  /// Whether the caller holds `permission` on a subtree covering the org at `path`.
  public func can(_ permission: Permission, at path: String) -> Bool {
    roles.contains { $0.permissions.contains(permission) && Self.covers($0.scope, path) }
  }

  /// Whether the caller holds `permission` anywhere.
  public func holdsAnywhere(_ permission: Permission) -> Bool {
    roles.contains { $0.permissions.contains(permission) }
  }

  /// The scopes on which the caller holds `permission`.
  public func scopes(for permission: Permission) -> [String] {
    roles.filter { $0.permissions.contains(permission) }.map(\.scope)
  }

  /// Whether the subtree at `scope` holds the org at `path` (no allocation: list filters ask it for
  /// every order or record they look at).
  public static func covers(_ scope: String, _ path: String) -> Bool {
    if scope.isEmpty { return true }
    let (scope, path) = (scope.utf8, path.utf8)
    guard path.starts(with: scope) else { return false }
    guard path.count > scope.count else { return true }
    return path[path.index(path.startIndex, offsetBy: scope.count)] == UInt8(ascii: "/")
  }

  /// The privacy reader this caller is for the person `personID`: the person themself, a bound
  /// guardian, or staff with their grants.
  public func reader(for personID: String) -> Reader {
    if !self.personID.isEmpty && personID == self.personID { return .person(subject: accountID, personID: personID) }
    if children.contains(personID) { return .guardian(subject: accountID, children: children) }
    return .staff(subject: accountID, grants: grants)
  }

}

extension ServerContext {
  /// The authenticated caller of this call.
  /// - Throws: UNAUTHENTICATED when the call carries no valid token (public methods have none).
  public func caller() throws -> Caller {
    guard let caller = principal as? Caller else {
      throw RPCError(.unauthenticated, "this method needs an access token (authorization: Bearer …)")
    }
    return caller
  }
}
