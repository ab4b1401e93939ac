import EduHubPrivacy
import Logging
import Synchronization

/// Delivers one-time activation and reset codes to a person, out of band (an SMS gateway in a
/// deployment). The admin who starts an activation never sees the code.
public protocol CodeDelivery: Sendable {
  func deliver(code: String, to phone: String, purpose: String) throws
}

/// A stand-in for an SMS gateway: keeps the latest code per phone in memory for the node's operator
/// tools and logs that a code went out (never the code, and the phone masked).
public final class OutboxCodeDelivery: CodeDelivery {
  private let logger: Logger
  private let sent = Mutex<[String: String]>([:])

  public init(logger: Logger) { self.logger = logger }

  public func deliver(code: String, to phone: String, purpose: String) throws {
    sent.withLock { $0[phone] = code }
    logger.info("sent a one-time code", metadata: ["purpose": "\(purpose)", "to": "\(Masking.phone(phone))"])
  }

  /// The latest code sent to `phone` (what the person's phone would show).
  public func latestCode(to phone: String) -> String? { sent.withLock { $0[phone] } }
}
