import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
  import Glibc
#endif

/// Short, human text for the errors of sockets and TLS, for one-line messages.
enum ErrorText {
  static func describe(_ error: any Error) -> String {
    switch error {
    case let io as IOError:
      return String(cString: strerror(io.errnoCode)).lowercased()
    case let connection as NIOConnectionError:
      if let first = connection.connectionErrors.first { return describe(first.error) }
      if let dns = connection.dnsAError ?? connection.dnsAAAAError { return "cannot resolve the host: \(dns)" }
      return "no address to connect to"
    case let ssl as NIOSSLError:
      switch ssl {
      case .failedToLoadCertificate: return "not a readable PEM certificate"
      case .failedToLoadPrivateKey: return "not a readable PEM private key"
      case .handshakeFailed(let reason): return "TLS handshake failed: \(reason)"
      default: return "\(ssl)"
      }
    default:
      return "\(error)"
    }
  }
}
