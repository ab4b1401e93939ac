import EduHubAPI
import EduHubCore
import EduHubRPC
import Synchronization
#if canImport(Glibc)
  import Glibc
#endif

/// The server interceptor that turns `authorization: Bearer <token>` into a ``Caller``.
///
/// Verification (an Ed25519 check and a few reads) is cached by token, so a hot caller pays it once;
/// a cached caller is resolved again after any change to roles, sessions or accounts on this node
/// (the service's epoch), and never outlives its token.
public final class Authenticator: ServerInterceptor {
  /// Methods callable without a token.
  public static let publicMethods: Set<String> = [
    Eduhub_Identity_V1_IdentityService.Method.login.path,
    Eduhub_Identity_V1_IdentityService.Method.refresh.path,
    Eduhub_Identity_V1_IdentityService.Method.activateAccount.path,
    Eduhub_Sync_V1_SyncService.Method.enroll.path,
    Eduhub_Sync_V1_SyncService.Method.challenge.path,
    Eduhub_Sync_V1_SyncService.Method.authenticate.path,
    Eduhub_Sharing_V1_SharingService.Method.exchangeToken.path,
    Grpc_Health_V1_Health.Method.check.path,
    Grpc_Health_V1_Health.Method.watch.path,
  ]

  struct Entry {
    let caller: Caller
    let expiresAt: Int64
    let epoch: UInt64
  }

  /// The last header a thread saw and what it resolved to: a caller who sends the same token call
  /// after call (every client does) is recognised by one string comparison, with no hashing of the
  /// token and no lock.
  final class ThreadSlot {
    var header = ""
    var entry: Entry?
  }

  let identity: IdentityService
  let publicMethods: Set<String>
  private let cache = Mutex<[String: Entry]>([:])
  static let cacheLimit = 100_000
  private let slotKey: pthread_key_t

  public init(identity: IdentityService, publicMethods: Set<String> = Authenticator.publicMethods) {
    self.identity = identity
    self.publicMethods = publicMethods
    var key = pthread_key_t()
    pthread_key_create(&key) { slot in
      #if canImport(Glibc)
        if let slot { Unmanaged<ThreadSlot>.fromOpaque(slot).release() }
      #else
        Unmanaged<ThreadSlot>.fromOpaque(slot).release()
      #endif
    }
    slotKey = key
  }

  deinit {
    pthread_key_delete(slotKey)
  }

  private func threadSlot() -> ThreadSlot {
    if let raw = pthread_getspecific(slotKey) { return Unmanaged<ThreadSlot>.fromOpaque(raw).takeUnretainedValue() }
    let slot = ThreadSlot()
    pthread_setspecific(slotKey, Unmanaged.passRetained(slot).toOpaque())
    return slot
  }

  public func intercept(_ call: ServerCallHead) throws -> (any Sendable)? {
    if publicMethods.contains(call.method.path) { return nil }
    guard let header = call.metadata["authorization"] else {
      throw refuse(call, "this method needs an access token (authorization: Bearer …)")
    }
    guard header.hasPrefix("Bearer ") || header.hasPrefix("bearer ") else {
      throw refuse(call, "the authorization header must be a Bearer token")
    }
    let slot = threadSlot()
    if let entry = slot.entry, slot.header == header, entry.expiresAt > identity.nowSeconds,
      entry.epoch == identity.epoch.load(ordering: .relaxed)
    {
      return entry.caller
    }
    let entry = try entry(for: String(header.dropFirst(7)), peer: call.peer, method: call.method.path)
    slot.header = header
    slot.entry = entry
    return entry.caller
  }

  /// The caller a token stands for.
  public func caller(for token: String, peer: String, method: String = "") throws -> Caller {
    try entry(for: token, peer: peer, method: method).caller
  }

  /// The cached (or freshly verified and cached) entry of a token.
  func entry(for token: String, peer: String, method: String) throws -> Entry {
    let now = identity.nowSeconds
    let epoch = identity.epoch.load(ordering: .relaxed)
    if let entry = cache.withLock({ $0[token] }), entry.expiresAt > now, entry.epoch == epoch {
      return entry
    }
    let claims: AccessClaims
    do {
      claims = try identity.tokens.verify(token, now: now)
    } catch {
      throw refuse(peer: peer, method: method, error.message)
    }
    let caller: Caller
    do {
      caller = try identity.resolveCaller(claims)
    } catch let error as RPCError {
      throw refuse(peer: peer, method: method, error.message, actor: claims.subject)
    }
    let entry = Entry(caller: caller, expiresAt: claims.expiresAt, epoch: epoch)
    cache.withLock { cache in
      if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
      cache[token] = entry
    }
    return entry
  }

  private func refuse(_ call: ServerCallHead, _ reason: String) -> RPCError {
    refuse(peer: call.peer, method: call.method.path, reason)
  }

  private func refuse(peer: String, method: String, _ reason: String, actor: String = "anonymous") -> RPCError {
    identity.audit.record(.init(actor: actor, action: "auth.token", target: method, outcome: "denied", detail: reason, peer: peer, timeMs: identity.nowMs()))
    return RPCError(.unauthenticated, reason)
  }
}
