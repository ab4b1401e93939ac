import Foundation
import Logging
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// The listening socket, and a thread that accepts on it and hands each connection to NIO
/// (`ClientBootstrap.withConnectedSocket`).
///
/// NIO's `ServerBootstrap` would accept just as well, but keeps each connection's descriptor to
/// itself; the busy poller (see `BusyPoller`) needs the descriptors to poll them while the event
/// loop spins. Accepting is not on any hot path: one blocking `accept4` per connection.
final class Acceptor: @unchecked Sendable {
  private let fd: Int32
  let localAddress: SocketAddress
  private let logger: Logger

  /// Binds and listens on `host:port`.
  /// - Throws: ``RPCError`` (UNAVAILABLE) naming the address and the reason.
  init(host: String, port: Int, backlog: Int32 = 1024, logger: Logger) throws {
    self.logger = logger
    let address: SocketAddress
    do {
      address = try SocketAddress.makeAddressResolvingHost(host, port: port)
    } catch {
      throw RPCError(.unavailable, "cannot listen on \(host):\(port): cannot resolve the host")
    }
    let family: Int32
    switch address {
    case .v4: family = AF_INET
    case .v6: family = AF_INET6
    default: throw RPCError(.unavailable, "cannot listen on \(host):\(port): not an IP address")
    }
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw Self.failure(host, port) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
    guard bound == 0, listen(fd, backlog) == 0 else {
      let error = Self.failure(host, port)
      Glibc.close(fd)
      throw error
    }
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    let local: SocketAddress? =
      named != 0
      ? nil
      : withUnsafePointer(to: &storage) { pointer in
        family == AF_INET
          ? pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee) }
          : pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee) }
      }
    guard let local else {
      let error = Self.failure(host, port)
      Glibc.close(fd)
      throw error
    }
    self.fd = fd
    self.localAddress = local
  }

  private static func failure(_ host: String, _ port: Int) -> RPCError {
    RPCError(.unavailable, "cannot listen on \(host):\(port): \(String(cString: strerror(errno)).lowercased())")
  }

  /// Starts the accepting thread; `onAccept` gets each connected descriptor and owns it.
  func start(onAccept: @escaping @Sendable (Int32) -> Void) {
    let fd = self.fd
    let logger = self.logger
    let thread = Thread {
      while true {
        // Swift's Glibc module has no accept4: accept, then mark the descriptor close-on-exec.
        let connection = accept(fd, nil, nil)
        if connection >= 0 {
          _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
          onAccept(connection)
          continue
        }
        switch errno {
        case EINTR, ECONNABORTED, EPROTO:
          continue
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
          logger.warning("accept failed; retrying", metadata: ["error": "\(String(cString: strerror(errno)))"])
          usleep(10_000)
        default:
          // EINVAL: `close()` shut the socket down. Only now is the descriptor closed: closing it
          // while this thread could still call accept would let it accept on whatever socket
          // reused the number.
          Glibc.close(fd)
          return
        }
      }
    }
    thread.name = "eduhub-accept"
    thread.start()
  }

  /// Stops accepting: the thread returns and closes the socket.
  func close() {
    shutdown(fd, Int32(SHUT_RDWR))
  }
}
