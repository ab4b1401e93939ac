/// `multipart/form-data` bodies (a form with a file): the parts, each with its field name, file
/// name and bytes. Hand-written (about 60 lines) rather than a dependency: the console needs only
/// this one, bounded case, and every byte of it is hostile input.
enum Multipart {
  struct Part {
    var name: String
    var fileName: String?
    var contentType: String?
    var data: ArraySlice<UInt8>
  }

  /// The boundary of a `multipart/form-data; boundary=…` content type.
  static func boundary(_ contentType: String?) -> String? {
    guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
    for parameter in contentType.split(separator: ";").dropFirst() {
      let pair = parameter.split(separator: "=", maxSplits: 1)
      guard pair.count == 2, pair[0].trimmingCharacters(in: " ") == "boundary" else { continue }
      let value = pair[1].trimmingCharacters(in: " \"")
      return (1...70).contains(value.utf8.count) ? value : nil
    }
    return nil
  }

  /// The parts of `body`; nil when it is not a well-formed multipart body.
  static func parse(_ body: [UInt8], boundary: String) -> [Part]? {
    let delimiter = Array(("--" + boundary).utf8)
    let separator = Array(("\r\n--" + boundary).utf8)
    guard body.starts(with: delimiter) else { return nil }
    var parts: [Part] = []
    var position = delimiter.count
    while position + 2 <= body.count {
      // "--" after a delimiter ends the body; "\r\n" starts a part.
      if body[position] == UInt8(ascii: "-"), body[position + 1] == UInt8(ascii: "-") { return parts }
      guard body[position] == 13, body[position + 1] == 10 else { return nil }
      position += 2
      guard let headerEnd = find([13, 10, 13, 10], in: body, from: position) else { return nil }
      let headers = String(decoding: body[position..<headerEnd], as: UTF8.self)
      let start = headerEnd + 4
      guard let end = find(separator, in: body, from: start), parts.count < 100 else { return nil }
      var part = Part(name: "", fileName: nil, contentType: nil, data: body[start..<end])
      for line in headers.split(separator: "\r\n") {
        let lower = line.lowercased()
        if lower.hasPrefix("content-disposition:") {
          part.name = parameter("name", in: line) ?? ""
          part.fileName = parameter("filename", in: line)
        } else if lower.hasPrefix("content-type:") {
          part.contentType = line.dropFirst("content-type:".count).trimmingCharacters(in: " ")
        }
      }
      parts.append(part)
      position = end + separator.count
    }
    return nil
  }

  /// `name="value"` in a Content-Disposition line.
  private static func parameter(_ name: String, in line: Substring) -> String? {
    for item in line.split(separator: ";").dropFirst() {
      let pair = item.split(separator: "=", maxSplits: 1)
      guard pair.count == 2, pair[0].trimmingCharacters(in: " ") == name else { continue }
      return pair[1].trimmingCharacters(in: " \"")
    }
    return nil
  }

  private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
    guard let first = needle.first, haystack.count >= needle.count else { return nil }
    var index = from
    let last = haystack.count - needle.count
    while index <= last {
      if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
      index += 1
    }
    return nil
  }
}

extension Substring {
  /// The text without leading and trailing characters of `set`.
  func trimmingCharacters(in set: String) -> String {
    var text = self
    while let first = text.first, set.contains(first) { text.removeFirst() }
    while let last = text.last, set.contains(last) { text.removeLast() }
    return String(text)
  }
}
