import CEduHubNghttp2

/// A header block being built for nghttp2: names and values in one byte array, handed to nghttp2
/// as `nghttp2_nv` pointers into it. nghttp2 copies them during the submit call.
struct HeaderList {
  private var bytes: [UInt8] = []
  private var fields: [(name: Range<Int>, value: Range<Int>)] = []

  init(capacity: Int = 8) {
    bytes.reserveCapacity(capacity * 24)
    fields.reserveCapacity(capacity)
  }

  var count: Int { fields.count }

  mutating func add(_ name: String, _ value: String) {
    let nameStart = bytes.count
    bytes.append(contentsOf: name.utf8)
    let valueStart = bytes.count
    bytes.append(contentsOf: value.utf8)
    fields.append((nameStart..<valueStart, valueStart..<bytes.count))
  }

  mutating func add(_ name: String, bytes value: some Collection<UInt8>) {
    let nameStart = bytes.count
    bytes.append(contentsOf: name.utf8)
    let valueStart = bytes.count
    bytes.append(contentsOf: value)
    fields.append((nameStart..<valueStart, valueStart..<bytes.count))
  }

  /// Appends user metadata: `-bin` values base64-encoded, reserved and invalid keys skipped.
  mutating func add(metadata: RPCMetadata) {
    for entry in metadata where RPCMetadata.isValidKey(entry.key) && !RPCMetadata.isReserved(entry.key) {
      switch entry.value {
      case .string(let value):
        // A value must be printable ASCII; anything else would be rejected by the peer's HTTP/2 layer.
        guard value.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else { continue }
        add(entry.key, value)
      case .binary(let value):
        add(entry.key, bytes: Base64.encode(value))
      }
    }
  }

  /// Calls `body` with the nghttp2 view of the block, valid only during the call.
  mutating func withNV<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
    let fields = self.fields
    return bytes.withUnsafeMutableBufferPointer { storage in
      let base = storage.baseAddress ?? UnsafeMutablePointer<UInt8>(bitPattern: 1)!
      let nvs = fields.map { field in
        nghttp2_nv(
          name: base + field.name.lowerBound, value: base + field.value.lowerBound,
          namelen: field.name.count, valuelen: field.value.count,
          flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
      }
      return nvs.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
    }
  }
}
