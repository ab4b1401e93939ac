import NIOCore

/// The sending half of a gRPC stream, the same on both sides of a call: hands nghttp2 the bytes of
/// one framed message, or of the messages a writer queues, for each DATA frame it asks for.
struct MessageSender {
  /// The one framed message of a unary side, until it is all out.
  var single: ByteBuffer?
  /// The writer's queue, when this side streams.
  var queue: OutboundMessageQueue?

  enum Read: Equatable {
    /// `count` bytes were copied; `ended`: nothing follows them (the one message is out, there
    /// was none, or the writer finished).
    case bytes(Int, ended: Bool)
    /// Nothing is ready: nghttp2 waits until it is resumed.
    case deferred
  }

  /// Copies the next bytes into nghttp2's buffer.
  mutating func read(into buffer: UnsafeMutableRawBufferPointer) -> Read {
    if var message = single {
      let count = min(buffer.count, message.readableBytes)
      message.withUnsafeReadableBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
      message.moveReaderIndex(forwardBy: count)
      single = message.readableBytes == 0 ? nil : message
      return .bytes(count, ended: single == nil)
    }
    guard let queue else { return .bytes(0, ended: true) }
    switch queue.read(into: buffer) {
    case .bytes(let count, let end): return .bytes(count, ended: end)
    case .end: return .bytes(0, ended: true)
    case .deferred: return .deferred
    }
  }

  /// Whether a writer's messages still wait to go.
  var hasPendingOutput: Bool { (queue?.pendingBytes ?? 0) > 0 }
}
