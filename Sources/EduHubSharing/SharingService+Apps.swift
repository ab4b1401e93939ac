import EduHubAPI
import EduHubCrypto
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubStorage
import Foundation
import GRDB
import SwiftProtobuf
import Synchronization

extension SharingService {
  /// Token subjects of applications: `app:<client id>`.
  static let appPrefix = "app:"

  func app(_ clientID: String, in db: Database) throws -> (StoredRecord, Eduhub_Sharing_V1_AppRecord)? {
    guard let record = try store.live(SharingCollections.app, clientID, in: db) else { return nil }
    return (record, try SharingCollections.app.decode(record))
  }

  /// A new secret for `record`: its digest and a new generation stored, the secret returned.
  func newSecret(_ record: inout Eduhub_Sharing_V1_AppRecord) -> String {
    let secret = "ehs_" + Base64URL.encode(Random.bytes(32))
    record.secretDigest = IdentityService.secretDigest(secret)
    record.secretGeneration = Base64URL.encode(Random.bytes(9))
    record.app.secretRotatedMs = identity.nowMs()
    return secret
  }

  /// A city administrator (share.apps on the org) registers an application.
  public func registerApp(_ request: Eduhub_Sharing_V1_RegisterAppRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sharing_V1_AppSecret
  {
    try Validate.text(request.name, "name", maxLength: 100, required: true)
    try Validate.text(request.description_p, "description", maxLength: 1000, multiline: true)
    let action = "sharing.RegisterApp"
    return try store.transaction { db in
      let path = try identity.orgPath(request.orgCode, in: db)
      try identity.require(.shareApps, at: path, caller, action, target: request.orgCode, peer: peer)
      var record = Eduhub_Sharing_V1_AppRecord()
      record.app.clientID = IdentityService.newID("app-")
      record.app.name = request.name
      record.app.orgCode = request.orgCode
      record.app.description_p = request.description_p
      record.app.createdMs = identity.nowMs()
      let secret = newSecret(&record)
      try store.put(SharingCollections.app, record.app.clientID, scope: path, record, in: db)
      try identity.audit.append(.init(actor: caller.actor, action: action, target: record.app.clientID, peer: peer, timeMs: identity.nowMs()), in: db)
      var answer = Eduhub_Sharing_V1_AppSecret()
      answer.app = record.app
      answer.clientSecret = secret
      return answer
    }
  }

  /// Loads an application the caller manages, or NOT_FOUND.
  func managedApp(_ clientID: String, caller: Caller, action: String, peer: String, in db: Database) throws
    -> (StoredRecord, Eduhub_Sharing_V1_AppRecord)
  {
    guard let (record, app) = try app(clientID, in: db), caller.can(.shareApps, at: record.scope) else {
      throw RPCError(.notFound, "no application \(clientID.prefix(64))")
    }
    return (record, app)
  }

  /// Changes an application the caller manages, audited, in one transaction; its tokens are
  /// resolved again afterwards (a rotated secret or a disabled app stops them at once).
  func updateApp<T>(
    _ clientID: String, caller: Caller, action: String, detail: String = "", peer: String,
    _ change: (inout Eduhub_Sharing_V1_AppRecord) -> T
  ) throws -> T {
    let result = try store.transaction { db in
      let (record, stored) = try managedApp(clientID, caller: caller, action: action, peer: peer, in: db)
      var app = stored
      let result = change(&app)
      try store.put(SharingCollections.app, app.app.clientID, scope: record.scope, app, in: db)
      try identity.audit.append(
        .init(actor: caller.actor, action: action, target: app.app.clientID, detail: detail, peer: peer, timeMs: identity.nowMs()), in: db)
      return result
    }
    identity.invalidateCallers()
    return result
  }

  public func rotateAppSecret(_ request: Eduhub_Sharing_V1_RotateAppSecretRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sharing_V1_AppSecret
  {
    try updateApp(request.clientID, caller: caller, action: "sharing.RotateAppSecret", peer: peer) { app in
      var answer = Eduhub_Sharing_V1_AppSecret()
      answer.clientSecret = newSecret(&app)
      answer.app = app.app
      return answer
    }
  }

  public func setAppDisabled(_ request: Eduhub_Sharing_V1_SetAppDisabledRequest, caller: Caller, peer: String) throws
    -> Eduhub_Sharing_V1_App
  {
    try updateApp(
      request.clientID, caller: caller, action: "sharing.SetAppDisabled", detail: request.disabled ? "disabled" : "enabled", peer: peer
    ) { app in
      app.app.disabled = request.disabled
      return app.app
    }
  }

  public func listApps(caller: Caller) throws -> Eduhub_Sharing_V1_ListAppsResponse {
    let scopes = caller.scopes(for: .shareApps)
    return try store.read { db in
      var response = Eduhub_Sharing_V1_ListAppsResponse()
      for scope in scopes {
        for record in try subtree(SharingCollections.app.name, scope, limit: 10_000, in: db) {
          response.apps.append(try SharingCollections.app.decode(record).app)
        }
      }
      response.apps.sort { $0.createdMs < $1.createdMs }
      return response
    }
  }

  /// Client credentials for an access token. Every failure gives the same answer.
  public func exchangeToken(_ request: Eduhub_Sharing_V1_ExchangeTokenRequest, peer: String) throws -> Eduhub_Sharing_V1_AppToken {
    let refused = RPCError(.unauthenticated, "the client id or secret is wrong, or the application is disabled")
    guard request.clientID.utf8.count <= 64, request.clientSecret.utf8.count <= 128 else { throw refused }
    let found = try store.read { db in try app(request.clientID, in: db) }
    let presented = Array(IdentityService.secretDigest(request.clientSecret).utf8)
    let stored = Array((found?.1.secretDigest ?? String(repeating: "0", count: presented.count)).utf8)
    guard let (_, app) = found, ConstantTime.equals(presented, stored), !app.app.disabled else {
      identity.audit.record(.init(actor: "app:" + request.clientID.prefix(64), action: "sharing.ExchangeToken", outcome: "denied", peer: peer, timeMs: identity.nowMs()))
      throw refused
    }
    let issued = identity.tokens.issue(subject: Self.appPrefix + app.app.clientID, sessionID: app.secretGeneration, now: identity.nowMs() / 1000)
    var token = Eduhub_Sharing_V1_AppToken()
    token.accessToken = issued.token
    token.expiresMs = issued.claims.expiresAt * 1000
    token.clientID = app.app.clientID
    return token
  }

  /// The caller an application's token stands for: the application while it is enabled and the token
  /// is of its current secret. It reads the catalog; its data comes through its grants alone.
  func appCaller(_ claims: AccessClaims) throws -> Caller {
    let clientID = String(claims.subject.dropFirst(Self.appPrefix.count))
    return try store.read { db in
      guard let (record, app) = try app(clientID, in: db), !app.app.disabled else {
        throw RPCError(.unauthenticated, "the application is unknown or disabled")
      }
      guard claims.sessionID == app.secretGeneration else {
        throw RPCError(.unauthenticated, "the token was issued for a secret that has been rotated")
      }
      // Applications exchange their secret above (where they are registered): a node below would
      // sign an application's token only because it can read the secret's generation.
      guard try !identity.isBelow(claims.issuer, in: db) else {
        throw RPCError(.unauthenticated, "the application's token was not issued by a node that registers applications")
      }
      return Caller(
        accountID: claims.subject, username: app.app.name, personID: "", homeScope: record.scope,
        roles: [.init(grantID: "", role: .dataConsumer, scope: record.scope, permissions: [.catalogRead])],
        children: [], issuer: claims.issuer, sessionID: claims.sessionID)
    }
  }
}
