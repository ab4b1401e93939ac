import NIOCore

/// The receiving half of a gRPC stream, the same on both sides of a call: splits DATA into
/// messages, keeps the one message of a unary side or pushes each into the reader's queue, and holds
/// back flow-control credit while that reader is behind (so the peer stops sending).
struct MessageReceiver {
  private let maxMessageSize: Int
  /// Created on the first bytes: a call with no body costs nothing.
  private var deframer: MessageDeframer?
  /// The one message of a unary side.
  private(set) var single: ByteBuffer?
  /// The reader's queue, when this side streams.
  var queue: InboundMessageQueue?
  /// Bytes received and not yet acknowledged to the stream's window (the reader is behind).
  private var unacknowledged = 0

  init(maxMessageSize: Int) {
    self.maxMessageSize = maxMessageSize
  }

  /// What a chunk of DATA did.
  enum Outcome {
    /// Accepted; acknowledge `credit` bytes to the stream's window now (0: the reader is behind,
    /// ``resume()`` gives the credit back once it catches up).
    case accepted(credit: Int)
    /// A second message where one is allowed; the chunk's bytes are to be acknowledged and the
    /// call failed.
    case secondMessage
    /// The bytes are not gRPC messages (too large, compressed, a bad flag); acknowledge them and
    /// fail the call.
    case malformed(MessageDeframer.Failure)
  }

  /// Takes a chunk of DATA.
  mutating func receive(_ bytes: UnsafeRawBufferPointer) -> Outcome {
    if deframer == nil { deframer = MessageDeframer(maxMessageSize: maxMessageSize) }
    deframer!.append(bytes)
    var accepting = true
    do {
      while let message = try deframer!.next() {
        if let queue {
          accepting = queue.push(message)
        } else if single == nil {
          single = message
        } else {
          return .secondMessage
        }
      }
    } catch {
      return .malformed(error)
    }
    if accepting && unacknowledged == 0 { return .accepted(credit: bytes.count) }
    unacknowledged += bytes.count
    return .accepted(credit: 0)
  }

  /// The reader caught up: the credit held back, to acknowledge now.
  mutating func resume() -> Int {
    defer { unacknowledged = 0 }
    return unacknowledged
  }

  /// Takes the one message received.
  mutating func takeSingle() -> ByteBuffer? {
    defer { single = nil }
    return single
  }

  /// Whether the stream ended inside a message.
  var endedInsideMessage: Bool { deframer?.hasPartialMessage == true }

  /// Drops what is buffered (the call ended).
  mutating func clear() {
    deframer = nil
    single = nil
  }
}
