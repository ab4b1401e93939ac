import NIOCore
import SwiftProtobuf

/// Decoding of protobuf messages straight from received bytes.
enum MessageCoding {
  /// Decodes `type` from the readable bytes of `buffer`.
  static func decode<M: Message>(_ type: M.Type, from buffer: ByteBuffer) throws(RPCError) -> M {
    do {
      return try buffer.withUnsafeReadableBytes { try M(serializedBytes: $0.bytes) }
    } catch {
      throw RPCError(.invalidArgument, "could not decode the \(M.protoMessageName) message")
    }
  }
}
