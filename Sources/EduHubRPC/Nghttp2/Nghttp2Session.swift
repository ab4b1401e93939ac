import CEduHubNghttp2
import NIOCore

/// An error from libnghttp2, with its own text.
struct Nghttp2Error: Error, CustomStringConvertible {
  let code: Int
  var description: String { String(cString: nghttp2_strerror(Int32(code))) }
}

/// The HTTP/2 settings a session announces.
struct HTTP2Settings {
  var maxConcurrentStreams: Int?
  var initialWindowSize: Int
  var maxHeaderListSize: Int
  var enablePush = false

  /// Submits them as the session's SETTINGS frame.
  func submit(to session: OpaquePointer) -> Int32 {
    var entries: [nghttp2_settings_entry] = [
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(initialWindowSize)),
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(maxHeaderListSize)),
      nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: enablePush ? 1 : 0),
    ]
    if let maxConcurrentStreams {
      entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(maxConcurrentStreams)))
    }
    return nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
  }
}

/// What moving a session's output into a channel did.
enum SessionOutput {
  /// Bytes were written (and flushed) or not.
  case sent(wrote: Bool)
  /// nghttp2 failed; the connection must close.
  case failed(Nghttp2Error)
}

/// One libnghttp2 session, owned: the only place the connection handlers and their streams reach
/// the C API through (the callbacks aside, which nghttp2 calls with the handler as `user_data`).
/// Deleted when the last reference goes, so a call made from inside one of its callbacks never
/// outlives it.
final class Nghttp2Session {
  private let session: OpaquePointer

  /// A session with the options both roles use: window updates are ours to send (so a slow reader
  /// pushes back on its peer), and the library's own limits on floods stay on.
  init?(
    server: Bool, callbacks: OpaquePointer, userData: UnsafeMutableRawPointer, resetBurst: Int = 1000, resetRate: Int = 33
  ) {
    var option: OpaquePointer?
    guard nghttp2_option_new(&option) == 0, let option else { return nil }
    defer { nghttp2_option_del(option) }
    nghttp2_option_set_no_auto_window_update(option, 1)
    nghttp2_option_set_stream_reset_rate_limit(option, UInt64(resetBurst), UInt64(resetRate))
    nghttp2_option_set_max_continuations(option, 8)
    var session: OpaquePointer?
    let rv =
      server
      ? nghttp2_session_server_new2(&session, callbacks, userData, option)
      : nghttp2_session_client_new2(&session, callbacks, userData, option)
    guard rv == 0, let session else { return nil }
    self.session = session
  }

  deinit { nghttp2_session_del(session) }

  /// Queues our SETTINGS frame and opens the connection's receive window to `connectionWindow`.
  func announce(_ settings: HTTP2Settings, connectionWindow: Int) {
    _ = settings.submit(to: session)
    _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(clamping: connectionWindow))
  }

  /// Feeds received bytes to the session (its callbacks run inside); nil when they break the
  /// protocol and the connection must close.
  func receive(_ buffer: ByteBuffer) -> Nghttp2Error? {
    let consumed = buffer.withUnsafeReadableBytes { bytes in
      nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
    }
    return consumed < 0 ? Nghttp2Error(code: consumed) : nil
  }

  /// Moves whatever the session has to send into `context`'s channel while it accepts it, in
  /// buffers of up to 64 KiB, then flushes once. (`nghttp2_session_mem_send` returns a pointer into
  /// its own buffer, so one copy is unavoidable.)
  func send(to context: ChannelHandlerContext) -> SessionOutput {
    let channel = context.channel
    var out: ByteBuffer?
    var wrote = false
    while channel.isWritable {
      var chunk: UnsafePointer<UInt8>?
      let length = nghttp2_session_mem_send(session, &chunk)
      if length < 0 { return .failed(Nghttp2Error(code: length)) }
      guard length > 0, let chunk else { break }
      if out == nil { out = channel.allocator.buffer(capacity: max(length, 4096)) }
      out!.writeBytes(UnsafeRawBufferPointer(start: chunk, count: length))
      if out!.readableBytes >= 64 * 1024 {
        context.write(NIOAny(out!), promise: nil)
        out = nil
        wrote = true
      }
    }
    if let out, out.readableBytes > 0 {
      context.write(NIOAny(out), promise: nil)
      wrote = true
    }
    if wrote { context.flush() }
    return .sent(wrote: wrote)
  }

  /// Whether the session still wants to read, and to write.
  var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
  var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

  // MARK: Streams

  /// The object a stream was given (its call), unretained.
  @inline(__always)
  func userData(ofStream id: Int32) -> UnsafeMutableRawPointer? {
    nghttp2_session_get_stream_user_data(session, id)
  }

  func setUserData(ofStream id: Int32, _ pointer: UnsafeMutableRawPointer) {
    nghttp2_session_set_stream_user_data(session, id, pointer)
  }

  /// Acknowledges received bytes to the connection's flow-control window.
  func consumeConnection(_ count: Int) {
    if count > 0 { nghttp2_session_consume_connection(session, count) }
  }

  /// Acknowledges received bytes to a stream's flow-control window.
  func consumeStream(_ id: Int32, _ count: Int) {
    if count > 0 { nghttp2_session_consume_stream(session, id, count) }
  }

  /// Asks the data provider of stream `id`, which deferred, for more.
  func resumeData(_ id: Int32) {
    nghttp2_session_resume_data(session, id)
  }

  /// A data provider whose reads go to `read` with `source` (a call, unretained).
  static func provider(_ source: AnyObject, _ read: nghttp2_data_source_read_callback) -> nghttp2_data_provider {
    nghttp2_data_provider(source: nghttp2_data_source(ptr: Unmanaged.passUnretained(source).toOpaque()), read_callback: read)
  }

  /// Submits response headers (and a body from `provider`, or none: the headers end the stream).
  func submitResponse(_ id: Int32, _ headers: inout HeaderList, body provider: nghttp2_data_provider?) {
    headers.withNV { nv, count in
      if var provider {
        _ = nghttp2_submit_response(session, id, nv, count, &provider)
      } else {
        _ = nghttp2_submit_response(session, id, nv, count, nil)
      }
    }
  }

  /// Submits a prebuilt header block with a body from `provider`.
  func submitResponse(_ id: Int32, _ block: StaticHeaders.Block, body provider: nghttp2_data_provider) {
    var provider = provider
    _ = nghttp2_submit_response(session, id, block.pointer, block.count, &provider)
  }

  /// Submits trailers, ending the stream.
  func submitTrailer(_ id: Int32, _ headers: inout HeaderList) {
    headers.withNV { _ = nghttp2_submit_trailer(session, id, $0, $1) }
  }

  func submitTrailer(_ id: Int32, _ block: StaticHeaders.Block) {
    _ = nghttp2_submit_trailer(session, id, block.pointer, block.count)
  }

  /// Opens a stream with request headers and a body from `provider`; the stream's id, or the error.
  func submitRequest(_ headers: inout HeaderList, body provider: nghttp2_data_provider, call: AnyObject) -> Result<Int32, Nghttp2Error> {
    var provider = provider
    let id = headers.withNV { nv, count in
      nghttp2_submit_request(session, nil, nv, count, &provider, Unmanaged.passUnretained(call).toOpaque())
    }
    return id > 0 ? .success(id) : .failure(Nghttp2Error(code: Int(id)))
  }

  /// Resets stream `id` with `code` (CANCEL by default).
  func reset(_ id: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
    nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, code)
  }

  /// Queues a PING.
  func ping() {
    nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
  }

  /// Queues GOAWAY with `code`, naming the last stream processed.
  func goaway(_ code: UInt32) {
    nghttp2_submit_goaway(
      session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session), code, nil, 0)
  }
}

extension UnsafePointer where Pointee == nghttp2_frame {
  var type: UInt32 { UInt32(pointee.hd.type) }
  var flags: UInt8 { pointee.hd.flags }
  var streamID: Int32 { pointee.hd.stream_id }
  var endsStream: Bool { flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 }
  var headersCategory: nghttp2_headers_category { pointee.headers.cat }
}

/// HTTP/2 frame types as the raw values nghttp2 reports.
enum FrameType {
  static let data = UInt32(NGHTTP2_DATA.rawValue)
  static let headers = UInt32(NGHTTP2_HEADERS.rawValue)
  static let rstStream = UInt32(NGHTTP2_RST_STREAM.rawValue)
  static let settings = UInt32(NGHTTP2_SETTINGS.rawValue)
  static let ping = UInt32(NGHTTP2_PING.rawValue)
  static let goaway = UInt32(NGHTTP2_GOAWAY.rawValue)
}
