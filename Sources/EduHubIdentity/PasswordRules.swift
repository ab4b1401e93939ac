import EduHubCrypto
import NIOPosix
import Synchronization
#if canImport(Glibc)
  import Glibc
#endif

/// NIST SP 800-63B's rules: length only (8 to 128 characters, no composition rules), and not a
/// commonly used or breached password, nor the username itself.
public enum PasswordRules {
  public static let minimumLength = 8
  public static let maximumLength = 128

  /// Nil when `password` is acceptable for `username`; else why not (safe to show).
  public static func problem(with password: String, username: String) -> String? {
    let length = password.count
    if length < minimumLength { return "a password needs at least \(minimumLength) characters" }
    if length > maximumLength { return "a password has at most \(maximumLength) characters" }
    let folded = password.lowercased()
    if CommonPasswords.list.contains(folded) { return "this password is too common; choose another" }
    if !username.isEmpty, folded.contains(username.lowercased()) { return "a password may not contain the username" }
    if Set(folded).count <= 2 { return "a password needs more than two different characters" }
    return nil
  }
}

/// Runs Argon2id off the event loops on a few threads of its own, so a storm of logins queues
/// there instead of starving every other call.
public final class PasswordHasher: Sendable {
  public let limits: PasswordHash.Limits
  private let pool: NIOThreadPool
  /// A hash of a random password, verified against when the account does not exist so an unknown
  /// login costs the same time as a wrong password.
  private let decoy: String
  /// Argon2id verifications run so far (an unknown login must cost one, like a wrong password).
  public var verifications: Int { verified.load(ordering: .relaxed) }
  private let verified = Atomic<Int>(0)
  /// New passwords hashed so far (a wrong activation code must cost none).
  public var hashes: Int { hashed.load(ordering: .relaxed) }
  private let hashed = Atomic<Int>(0)

  public init(limits: PasswordHash.Limits, threads: Int) throws {
    self.limits = limits
    pool = NIOThreadPool(numberOfThreads: max(1, threads))
    pool.start()
    decoy = try PasswordHash.hash(Base64URL.encode(Random.bytes(16)), limits: limits)
  }

  public func hash(_ password: String) async throws -> String {
    let limits = self.limits
    hashed.add(1, ordering: .relaxed)
    return try await pool.runIfActive {
      Self.yieldToServing()
      return try PasswordHash.hash(password, limits: limits)
    }
  }

  /// Verifies `password` against `hash`, or against the decoy when there is no hash.
  public func verify(_ password: String, hash: String?) async throws -> Bool {
    let decoy = self.decoy
    verified.add(1, ordering: .relaxed)
    return try await pool.runIfActive {
      Self.yieldToServing()
      let matches = PasswordHash.verify(password, hash: hash ?? decoy)
      return hash != nil && matches
    }
  }

  /// Lowers the hashing thread's scheduling priority (nice 10): a storm of logins then takes the
  /// CPU the event loops leave, instead of delaying every other call by a hash's 50 ms.
  private static func yieldToServing() {
    #if os(Linux)
      // On Linux the nice value is per thread, and who = 0 names the calling thread.
      _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
    #endif
  }

  public func shutdown() async {
    try? await pool.shutdownGracefully()
  }
}
