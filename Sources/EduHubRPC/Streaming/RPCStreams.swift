import NIOCore
import SwiftProtobuf

/// Writes the messages of a streaming call: a server's responses or a client's requests.
///
/// `write` suspends while the peer is slow to read (HTTP/2 flow control), so memory stays bounded
/// however large the stream.
public struct RPCWriter<Element: Message>: Sendable {
  let queue: OutboundMessageQueue

  init(queue: OutboundMessageQueue) { self.queue = queue }

  /// Sends one message.
  /// - Returns: the bytes it took on the wire (with its 5-byte frame header).
  /// - Throws: ``RPCError`` when the call has ended (cancelled, deadline, peer gone).
  @discardableResult
  public func write(_ message: Element) async throws -> Int {
    let framed = try MessageFramer.frame(message)
    let count = framed.readableBytes
    try await queue.write(framed)
    return count
  }

  /// Sends one message its caller has already encoded (the protobuf bytes of an `Element`): for
  /// streams that assemble their messages straight from stored bytes.
  /// - Returns: the bytes it took on the wire (with its 5-byte frame header).
  @discardableResult
  public func write(serialized bytes: [UInt8]) async throws -> Int {
    let framed = RPCMethod.frame(bytes)
    let count = framed.readableBytes
    try await queue.write(framed)
    return count
  }

  /// Sends every message of `messages` in order.
  public func write(contentsOf messages: some Sequence<Element>) async throws {
    for message in messages { try await write(message) }
  }
}

/// The messages a streaming call receives: a server's requests or a client's responses.
///
/// Iterate it once. Iteration ends at the end of the stream or throws the call's ``RPCError``.
public struct RPCStream<Element: Message>: AsyncSequence, Sendable {
  let queue: InboundMessageQueue

  init(queue: InboundMessageQueue) { self.queue = queue }

  public struct AsyncIterator: AsyncIteratorProtocol {
    let queue: InboundMessageQueue

    public mutating func next() async throws -> Element? {
      guard let buffer = try await queue.next() else { return nil }
      return try MessageCoding.decode(Element.self, from: buffer)
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue) }
}
