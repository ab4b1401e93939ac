import CEduHubNghttp2

#if canImport(Glibc)
  import Glibc
#endif

/// Header blocks that every call sends, built once and handed to nghttp2 without copying
/// (`NGHTTP2_NV_FLAG_NO_COPY_NAME | NO_COPY_VALUE`), so the common response costs no allocation for
/// its headers.
enum StaticHeaders {
  /// `:status: 200`, `content-type: application/grpc`.
  nonisolated(unsafe) static let responseHeaders = block([
    (":status", "200"), ("content-type", "application/grpc"),
  ])
  /// `grpc-status: 0`.
  nonisolated(unsafe) static let okTrailers = block([("grpc-status", "0")])

  /// A block of `nghttp2_nv` pointing into storage that lives for the life of the process.
  struct Block {
    let pointer: UnsafeMutablePointer<nghttp2_nv>
    let count: Int
  }

  private static func block(_ pairs: [(String, String)]) -> Block {
    let nvs = UnsafeMutablePointer<nghttp2_nv>.allocate(capacity: pairs.count)
    for (index, (name, value)) in pairs.enumerated() {
      let nameBytes = permanentBytes(name)
      let valueBytes = permanentBytes(value)
      nvs[index] = nghttp2_nv(
        name: nameBytes.pointer, value: valueBytes.pointer,
        namelen: nameBytes.count, valuelen: valueBytes.count,
        flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
    }
    return Block(pointer: nvs, count: pairs.count)
  }

  private static func permanentBytes(_ string: String) -> (pointer: UnsafeMutablePointer<UInt8>, count: Int) {
    let utf8 = Array(string.utf8)
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(utf8.count, 1))
    pointer.initialize(from: utf8, count: utf8.count)
    return (pointer, utf8.count)
  }
}

/// Byte comparisons for header names without making Strings.
@inline(__always)
func bytesEqual(_ pointer: UnsafePointer<UInt8>, _ count: Int, _ literal: StaticString) -> Bool {
  count == literal.utf8CodeUnitCount && memcmp(pointer, literal.utf8Start, count) == 0
}

@inline(__always)
func bytesHavePrefix(_ pointer: UnsafePointer<UInt8>, _ count: Int, _ literal: StaticString) -> Bool {
  count >= literal.utf8CodeUnitCount && memcmp(pointer, literal.utf8Start, literal.utf8CodeUnitCount) == 0
}
