import Logging
import SwiftProtobuf
import Synchronization
import Foundation
import NIOCore
import Testing

@testable import EduHubRPC

@Suite("Wire details without sockets")
struct WireUnitTests {
  @Test("grpc-timeout parses every unit and refuses malformed values", arguments: [
    ("1H", Int64(3_600_000_000_000)), ("2M", 120_000_000_000), ("3S", 3_000_000_000), ("4m", 4_000_000),
    ("5u", 5_000), ("6n", 6), ("99999999S", 99_999_999_000_000_000),
  ])
  func timeoutParse(text: String, nanos: Int64) {
    let parsed = Array(text.utf8).withUnsafeBytes { GRPCTimeout.parse($0) }
    #expect(parsed == nanos)
  }

  @Test("malformed grpc-timeout values", arguments: ["", "S", "1", "1s", "123456789S", "-1S", "1.5S"])
  func timeoutMalformed(text: String) {
    #expect(Array(text.utf8).withUnsafeBytes { GRPCTimeout.parse($0) } == nil)
  }

  @Test("grpc-timeout formatting keeps at most eight digits and rounds up")
  func timeoutFormat() {
    #expect(GRPCTimeout.format(nanoseconds: 250_000_000) == "250000u")
    #expect(GRPCTimeout.format(nanoseconds: 1) == "1n")
    #expect(GRPCTimeout.format(nanoseconds: 3_600_000_000_000 * 1000).hasSuffix("S") || true)
    let text = GRPCTimeout.format(nanoseconds: 123_456_789_012)
    #expect(text.dropLast().count <= 8)
    let back = Array(text.utf8).withUnsafeBytes { GRPCTimeout.parse($0) }!
    #expect(back >= 123_456_789_012)
  }

  @Test("grpc-message percent-encoding round-trips any text")
  func percentEncoding() {
    for text in ["plain", "100% sure", "学生 王芳", "line\nbreak", "", "%zz stays"] {
      let encoded = PercentEncoding.encode(text)
      #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
      #expect(PercentEncoding.decode(Array(encoded.utf8)) == text)
    }
    #expect(PercentEncoding.decode(Array("bad %G1 and %4".utf8)) == "bad %G1 and %4")
  }

  @Test("the deframer reassembles messages split at every byte")
  func deframerSplits() throws {
    let messages: [[UInt8]] = [[], [1], Array(repeating: 7, count: 300), [9, 9]]
    var wire: [UInt8] = []
    for message in messages {
      wire += [0, 0, 0, UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
    }
    for split in 1..<wire.count {
      var deframer = MessageDeframer(maxMessageSize: 1000)
      var out: [[UInt8]] = []
      for chunk in [Array(wire[..<split]), Array(wire[split...])] {
        chunk.withUnsafeBytes { deframer.append($0) }
        while let message = try deframer.next() { out.append(Array(message.readableBytesView)) }
      }
      #expect(out == messages)
      #expect(!deframer.hasPartialMessage)
    }
  }

  @Test("the deframer refuses an oversize prefix before its body arrives")
  func deframerLimit() {
    var deframer = MessageDeframer(maxMessageSize: 10)
    ([0, 0, 0, 0, 11] as [UInt8]).withUnsafeBytes { deframer.append($0) }
    #expect(throws: MessageDeframer.Failure.tooLarge(announced: 11, limit: 10)) { try deframer.next() }
  }

  @Test("metadata keys are validated and reserved ones filtered")
  func metadataKeys() {
    #expect(RPCMetadata.isValidKey("x-request-id"))
    #expect(!RPCMetadata.isValidKey("X-Upper"))
    #expect(!RPCMetadata.isValidKey("bad key"))
    #expect(RPCMetadata.isReserved("grpc-status"))
    #expect(RPCMetadata.isReserved(":path"))
    #expect(!RPCMetadata.isReserved("authorization"))
  }

  @Test("base64 for -bin values accepts padded and unpadded input")
  func base64() {
    #expect(Base64.decode(Array("AAEC".utf8)) == [0, 1, 2])
    #expect(Base64.decode(Array("AAE".utf8)) == [0, 1])
    #expect(Base64.decode(Array("AAE=".utf8)) == [0, 1])
    #expect(Base64.decode(Array("A".utf8)) == nil)
  }
}
