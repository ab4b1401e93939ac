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

/// Moves whatever nghttp2 has to send into `channel` while the channel accepts it, in buffers of
/// up to 64 KiB, then flushes once. (`nghttp2_session_mem_send` returns a pointer into its own
/// buffer, so one copy is unavoidable.)
func sendPendingOutput(of session: OpaquePointer, to context: ChannelHandlerContext) -> SessionOutput {
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

/// Creates a nghttp2 session with the options both roles use: window updates are ours to send (so a
/// slow reader pushes back on its peer), and the library's own limits on floods stay on.
func makeNghttp2Session(
  server: Bool, callbacks: OpaquePointer, userData: UnsafeMutableRawPointer,
  resetBurst: Int = 1000, resetRate: Int = 33
) -> OpaquePointer? {
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
  return rv == 0 ? session : nil
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
