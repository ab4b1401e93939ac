@testable import EduHubRPC
import NIOCore
import Testing

/// The halves of a stream that both sides share: messages split from DATA and flow-control credit
/// held back while a reader is behind; messages handed to nghttp2 frame by frame.
@Suite("Message receiver and sender")
struct MessageStreamingTests {
  static func framed(_ bytes: [UInt8]) -> [UInt8] {
    [0] + withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init) + bytes
  }

  @Test("a unary side keeps one message, split across chunks; a second is refused; a cut message is seen")
  func unary() {
    var receiver = MessageReceiver(maxMessageSize: 1024)
    let message = Self.framed(Array(repeating: 7, count: 100))
    let first = message[..<30].withUnsafeBytes { receiver.receive($0) }
    guard case .accepted(let credit) = first else { Issue.record("\(first)"); return }
    #expect(credit == 30)
    #expect(receiver.endedInsideMessage)
    let rest = message[30...].withUnsafeBytes { receiver.receive($0) }
    guard case .accepted(75) = rest else { Issue.record("\(rest)"); return }
    #expect(!receiver.endedInsideMessage)
    #expect(receiver.single?.readableBytes == 100)
    let second = message.withUnsafeBytes { receiver.receive($0) }
    guard case .secondMessage = second else { Issue.record("\(second)"); return }
    #expect(receiver.takeSingle()?.readableBytes == 100)
    #expect(receiver.takeSingle() == nil)
  }

  @Test("a message announcing more than the limit is refused from its prefix")
  func tooLarge() {
    var receiver = MessageReceiver(maxMessageSize: 10)
    let outcome = Self.framed(Array(repeating: 1, count: 11)).withUnsafeBytes { receiver.receive($0) }
    guard case .malformed(.tooLarge(announced: 11, limit: 10)) = outcome else { Issue.record("\(outcome)"); return }
  }

  @Test("a streaming side holds back credit while its reader is over the high watermark, and gives it back on resume")
  func backpressure() {
    var receiver = MessageReceiver(maxMessageSize: 1024)
    receiver.queue = InboundMessageQueue(highWatermark: 200, lowWatermark: 50) {}
    let message = Self.framed(Array(repeating: 3, count: 95))  // 100 bytes framed
    let one = message.withUnsafeBytes { receiver.receive($0) }
    guard case .accepted(100) = one else { Issue.record("\(one)"); return }
    let two = message.withUnsafeBytes { receiver.receive($0) }  // 190 bytes queued: under the mark
    guard case .accepted(100) = two else { Issue.record("\(two)"); return }
    let three = message.withUnsafeBytes { receiver.receive($0) }  // over it: held back
    guard case .accepted(0) = three else { Issue.record("\(three)"); return }
    let four = message.withUnsafeBytes { receiver.receive($0) }  // behind already: held back too
    guard case .accepted(0) = four else { Issue.record("\(four)"); return }
    #expect(receiver.resume() == 200)
    #expect(receiver.resume() == 0)
  }

  @Test("a sender hands out one message across frames, then its end; no message ends at once")
  func sendSingle() {
    var sender = MessageSender()
    var bytes = ByteBuffer()
    bytes.writeBytes(Array(0..<100) as [UInt8])
    sender.single = bytes
    var frame = [UInt8](repeating: 0, count: 64)
    let first = frame.withUnsafeMutableBytes { sender.read(into: $0) }
    #expect(first == .bytes(64, ended: false))
    #expect(frame[63] == 63)
    let second = frame.withUnsafeMutableBytes { sender.read(into: $0) }
    #expect(second == .bytes(36, ended: true))
    #expect(frame[0] == 64 && frame[35] == 99)
    var empty = MessageSender()
    let nothing = frame.withUnsafeMutableBytes { empty.read(into: $0) }
    #expect(nothing == .bytes(0, ended: true))
  }

  @Test("a sender over a writer's queue defers while it is empty and ends when the writer finished")
  func sendQueue() async throws {
    var sender = MessageSender()
    let queue = OutboundMessageQueue {}
    sender.queue = queue
    var frame = [UInt8](repeating: 0, count: 64)
    let waiting = frame.withUnsafeMutableBytes { sender.read(into: $0) }
    #expect(waiting == .deferred)
    var message = ByteBuffer()
    message.writeBytes([1, 2, 3])
    try await queue.write(message)
    #expect(sender.hasPendingOutput)
    let some = frame.withUnsafeMutableBytes { sender.read(into: $0) }
    #expect(some == .bytes(3, ended: false))
    queue.finish()
    let end = frame.withUnsafeMutableBytes { sender.read(into: $0) }
    #expect(end == .bytes(0, ended: true))
  }
}
