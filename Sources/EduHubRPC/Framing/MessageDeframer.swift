import NIOCore

/// Splits a stream of DATA bytes into gRPC length-prefixed messages.
///
/// Never allocates the length a peer announces: bytes are buffered only as they arrive, and a prefix
/// announcing more than `maxMessageSize` is refused as soon as the prefix is read.
struct MessageDeframer {
  /// Why the byte stream cannot be deframed.
  enum Failure: Error, Equatable {
    /// The announced length exceeds the limit.
    case tooLarge(announced: Int, limit: Int)
    /// The compressed flag is set, but no compression was negotiated.
    case compressed
    /// The compressed flag is neither 0 nor 1.
    case badFlag(UInt8)
  }

  let maxMessageSize: Int
  /// Created on the first bytes, sized to them: a small unary request costs one allocation.
  private var buffer: ByteBuffer
  private var expected: Int?

  init(maxMessageSize: Int) {
    self.maxMessageSize = maxMessageSize
    self.buffer = ByteBuffer()
  }

  /// Whether a message was started and not finished.
  var hasPartialMessage: Bool { buffer.readableBytes > 0 }

  /// Appends received bytes.
  mutating func append(_ bytes: UnsafeRawBufferPointer) {
    if buffer.capacity == 0 { buffer = ByteBufferAllocator().buffer(capacity: bytes.count) }
    buffer.writeBytes(bytes)
  }

  /// Appends received bytes.
  mutating func append(_ bytes: ByteBuffer) {
    var bytes = bytes
    buffer.writeBuffer(&bytes)
  }

  /// The next whole message, or nil if more bytes are needed.
  mutating func next() throws(Failure) -> ByteBuffer? {
    if expected == nil {
      guard buffer.readableBytes >= 5,
        let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
        let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
      else { return nil }
      switch flag {
      case 0: break
      case 1: throw .compressed
      default: throw .badFlag(flag)
      }
      guard Int(length) <= maxMessageSize else {
        throw .tooLarge(announced: Int(length), limit: maxMessageSize)
      }
      buffer.moveReaderIndex(forwardBy: 5)
      expected = Int(length)
    }
    guard let length = expected, buffer.readableBytes >= length,
      let message = buffer.readSlice(length: length)
    else { return nil }
    expected = nil
    if buffer.readableBytes == 0 {
      // Keep the storage for the next message instead of growing a buffer of consumed bytes.
      buffer.clear()
    }
    return message
  }
}

extension MessageDeframer.Failure {
  /// The status a call ends with; `what` names the side ("request" or "response").
  func status(_ what: String) -> RPCError {
    switch self {
    case .tooLarge(let announced, let limit):
      return RPCError(.resourceExhausted, "\(what) message of \(announced) bytes exceeds the limit of \(limit) bytes")
    case .compressed:
      return RPCError(.internalError, "compressed \(what) message without grpc-encoding")
    case .badFlag(let flag):
      return RPCError(.internalError, "invalid message flag \(flag)")
    }
  }
}
