import NIOCore
import SwiftProtobuf

/// Writes gRPC length-prefixed messages.
enum MessageFramer {
  /// The binary encoding of `message`, prefixed with the 5-byte gRPC message header, in one buffer.
  static func frame(_ message: some Message) throws -> ByteBuffer {
    let bytes: FramedBytes = try message.serializedBytes()
    return bytes.take()
  }
}

/// A byte container that SwiftProtobuf serializes into directly, with room for the gRPC prefix in
/// front, so a response costs one allocation and no copy.
struct FramedBytes: SwiftProtobufContiguousBytes {
  private var storage: ByteBuffer

  init(repeating: UInt8, count: Int) {
    storage = ByteBufferAllocator().buffer(capacity: count + 5)
    storage.writeInteger(UInt8(0))
    storage.writeInteger(UInt32(truncatingIfNeeded: count))
    storage.writeRepeatingByte(repeating, count: count)
  }

  init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
    let bytes = Array(sequence)
    self.init(repeating: 0, count: bytes.count)
    storage.setBytes(bytes, at: 5)
  }

  var count: Int { storage.readableBytes - 5 }

  func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try storage.withUnsafeReadableBytes { try body(UnsafeRawBufferPointer(rebasing: $0.dropFirst(5))) }
  }

  mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R)
    rethrows -> R
  {
    try storage.withUnsafeMutableReadableBytes {
      try body(UnsafeMutableRawBufferPointer(rebasing: $0.dropFirst(5)))
    }
  }

  /// The framed message.
  func take() -> ByteBuffer { storage }
}
