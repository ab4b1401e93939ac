import Logging
import NIOCore
import SwiftProtobuf
import Synchronization
import CEduHubNghttp2
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A deliberately bare HTTP/2 client for hostile tests: a blocking socket and a nghttp2 client
/// session, so a test can send what no well-behaved gRPC client would (bad length prefixes, reset
/// floods, raw garbage) and see exactly what the server answers.
final class RawHTTP2Connection: @unchecked Sendable {
  struct Response {
    var headers: [(String, String)] = []
    var data: [UInt8] = []
    var closed = false
    var errorCode: UInt32 = 0

    func header(_ name: String) -> String? { headers.last { $0.0 == name }?.1 }
  }

  let fd: Int32
  private var session: OpaquePointer?
  private var bodies: [Int32: [UInt8]] = [:]
  private var offsets: [Int32: Int] = [:]
  var responses: [Int32: Response] = [:]
  var goawayCode: UInt32?
  var peerClosed = false

  init(port: Int) throws {
    fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
  }

  deinit {
    if let session { nghttp2_session_del(session) }
    close(fd)
  }

  /// Writes bytes straight to the socket.
  func sendRaw(_ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  }

  /// Reads until the peer closes or `timeout` passes, off Swift's cooperative pool.
  func readUntilClosed(timeout: Double) async -> [UInt8] {
    await offPool { self.blockingReadUntilClosed(timeout: timeout) }
  }

  /// Sends and receives until `done` holds, the peer closes, or `timeout` passes, off the pool.
  func pump(timeout: Double = 5, until done: @escaping @Sendable () -> Bool) async {
    await offPool { self.blockingPump(timeout: timeout, until: done) }
  }

  private func blockingReadUntilClosed(timeout: Double) -> [UInt8] {
    var all: [UInt8] = []
    let end = Date().addingTimeInterval(timeout)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while Date() < end {
      var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      guard poll(&pfd, 1, 50) > 0 else { continue }
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n <= 0 {
        peerClosed = true
        break
      }
      all += buffer[0..<n]
    }
    return all
  }

  /// Starts a nghttp2 client session (sends the preface and SETTINGS).
  func startSession() {
    var callbacks: OpaquePointer?
    nghttp2_session_callbacks_new(&callbacks)
    defer { nghttp2_session_callbacks_del(callbacks) }
    nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, user in
      let connection = Unmanaged<RawHTTP2Connection>.fromOpaque(user!).takeUnretainedValue()
      let id = frame!.pointee.hd.stream_id
      connection.responses[id, default: Response()].headers.append(
        (String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
          String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)))
      return 0
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, length, user in
      let connection = Unmanaged<RawHTTP2Connection>.fromOpaque(user!).takeUnretainedValue()
      connection.responses[id, default: Response()].data += UnsafeBufferPointer(start: data, count: length)
      return 0
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
      let connection = Unmanaged<RawHTTP2Connection>.fromOpaque(user!).takeUnretainedValue()
      connection.responses[id, default: Response()].closed = true
      connection.responses[id, default: Response()].errorCode = code
      return 0
    }
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
      let connection = Unmanaged<RawHTTP2Connection>.fromOpaque(user!).takeUnretainedValue()
      if frame!.pointee.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
        connection.goawayCode = frame!.pointee.goaway.error_code
      }
      return 0
    }
    nghttp2_session_client_new(&session, callbacks, Unmanaged.passUnretained(self).toOpaque())
    nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil, 0)
  }

  /// Submits a gRPC-looking request whose body is exactly `body` (framing is the caller's).
  @discardableResult
  func request(
    path: String, body: [UInt8], contentType: String = "application/grpc", timeout: String? = nil,
    method: String = "POST"
  ) -> Int32 {
    var headers = [
      (":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost"),
      ("content-type", contentType), ("te", "trailers"),
    ]
    if let timeout { headers.append(("grpc-timeout", timeout)) }
    var flat: [UInt8] = []
    var ranges: [(Range<Int>, Range<Int>)] = []
    for (name, value) in headers {
      let nameStart = flat.count
      flat += Array(name.utf8)
      let valueStart = flat.count
      flat += Array(value.utf8)
      ranges.append((nameStart..<valueStart, valueStart..<flat.count))
    }
    var provider = nghttp2_data_provider()
    provider.read_callback = { session, id, buffer, length, flags, _, user in
      let connection = Unmanaged<RawHTTP2Connection>.fromOpaque(user!).takeUnretainedValue()
      let body = connection.bodies[id] ?? []
      let offset = connection.offsets[id] ?? 0
      let count = min(length, body.count - offset)
      body.withUnsafeBytes { buffer!.update(from: $0.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset, count: count) }
      connection.offsets[id] = offset + count
      if offset + count == body.count { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
      return count
    }
    // nghttp2 copies the header block during submit.
    let id = flat.withUnsafeMutableBufferPointer { base -> Int32 in
      let nvs = ranges.map { name, value in
        nghttp2_nv(
          name: base.baseAddress! + name.lowerBound, value: base.baseAddress! + value.lowerBound,
          namelen: name.count, valuelen: value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
      }
      return nvs.withUnsafeBufferPointer { nghttp2_submit_request(session, nil, $0.baseAddress, $0.count, &provider, nil) }
    }
    bodies[id] = body
    return id
  }

  func reset(_ id: Int32) {
    nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_CANCEL.rawValue)
  }

  private func blockingPump(timeout: Double, until done: () -> Bool) {
    let end = Date().addingTimeInterval(timeout)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while Date() < end, !peerClosed, !done() {
      var pending: UnsafePointer<UInt8>?
      while true {
        let n = nghttp2_session_mem_send(session, &pending)
        guard n > 0, let pending else { break }
        var written = 0
        while written < n {
          let w = write(fd, pending + written, n - written)
          if w <= 0 { peerClosed = true; return }
          written += w
        }
      }
      var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      guard poll(&pfd, 1, 20) > 0 else { continue }
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n <= 0 {
        peerClosed = true
        return
      }
      let rv = buffer.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, n) }
      if rv < 0 { return }
    }
  }
}

/// A gRPC frame: flag, 4-byte big-endian length (as announced), then `payload`.
func grpcFrame(announcedLength: Int, payload: [UInt8]) -> [UInt8] {
  [0, UInt8(announcedLength >> 24 & 0xFF), UInt8(announcedLength >> 16 & 0xFF), UInt8(announcedLength >> 8 & 0xFF),
    UInt8(announcedLength & 0xFF)] + payload
}

/// Runs blocking socket work on a thread of its own, so tests never starve Swift's cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    Thread.detachNewThread { continuation.resume(returning: body()) }
  }
}
