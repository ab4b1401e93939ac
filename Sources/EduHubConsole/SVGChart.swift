/// Charts drawn by the server as inline SVG (no script, nothing fetched): every label is escaped
/// here, since the chart goes into the page unescaped.
enum SVGChart {
  static func escape(_ text: String) -> String {
    var out = ""
    for character in text {
      switch character {
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "&": out += "&amp;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(character)
      }
    }
    return out
  }

  static func number(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String((value * 10).rounded() / 10)
  }

  /// Horizontal bars, one per item, longest first as given.
  static func bars(title: String, items: [(label: String, value: Double)]) -> String {
    let rowHeight = 24.0
    let labelWidth = 120.0
    let width = 520.0
    let height = max(1, Double(items.count)) * rowHeight + 10
    let top = items.map(\.value).max() ?? 0
    var svg = "<svg class=\"chart\" role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(number(width)) \(number(height))\" xmlns=\"http://www.w3.org/2000/svg\">"
    svg += "<title>\(escape(title))</title>"
    if items.isEmpty { svg += "<text x=\"10\" y=\"20\" class=\"axis\">暂无数据</text>" }
    for (index, item) in items.enumerated() {
      let y = Double(index) * rowHeight + 5
      let length = top > 0 ? (width - labelWidth - 60) * item.value / top : 0
      svg += "<text x=\"\(number(labelWidth - 6))\" y=\"\(number(y + 16))\" text-anchor=\"end\" class=\"axis\">\(escape(item.label))</text>"
      svg += "<rect x=\"\(number(labelWidth))\" y=\"\(number(y + 3))\" width=\"\(number(max(1, length)))\" height=\"\(number(rowHeight - 8))\" class=\"bar\"/>"
      svg += "<text x=\"\(number(labelWidth + length + 6))\" y=\"\(number(y + 16))\" class=\"value\">\(number(item.value))</text>"
    }
    return svg + "</svg>"
  }

  /// A line over labelled points (nil: no data that month, the line breaks); `percent` scales 0…1.
  static func line(title: String, points: [(label: String, value: Double?)], percent: Bool) -> String {
    let width = 520.0
    let height = 220.0
    let left = 44.0
    let bottom = 190.0
    let topY = 14.0
    let top = percent ? 1.0 : max(1, points.compactMap(\.value).max() ?? 1)
    let step = points.count > 1 ? (width - left - 20) / Double(points.count - 1) : 0
    var svg = "<svg class=\"chart\" role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(number(width)) \(number(height))\" xmlns=\"http://www.w3.org/2000/svg\">"
    svg += "<title>\(escape(title))</title>"
    for tick in 0...4 {
      let value = top * Double(tick) / 4
      let y = bottom - (bottom - topY) * Double(tick) / 4
      svg += "<line x1=\"\(number(left))\" y1=\"\(number(y))\" x2=\"\(number(width - 10))\" y2=\"\(number(y))\" class=\"grid\"/>"
      svg += "<text x=\"\(number(left - 6))\" y=\"\(number(y + 4))\" text-anchor=\"end\" class=\"axis\">\(percent ? number(value * 100) + "%" : number(value))</text>"
    }
    var path = ""
    var drawing = false
    for (index, point) in points.enumerated() {
      let x = left + step * Double(index)
      svg += "<text x=\"\(number(x))\" y=\"\(number(bottom + 20))\" text-anchor=\"middle\" class=\"axis\">\(escape(point.label))</text>"
      guard let value = point.value else {
        drawing = false
        continue
      }
      let y = bottom - (bottom - topY) * min(1, value / top)
      path += (drawing ? " L" : " M") + "\(number(x)) \(number(y))"
      drawing = true
      svg += "<circle cx=\"\(number(x))\" cy=\"\(number(y))\" r=\"3.5\" class=\"dot\"><title>\(escape(point.label)) \(percent ? number(value * 100) + "%" : number(value))</title></circle>"
    }
    if !path.isEmpty { svg += "<path d=\"\(path)\" class=\"line\"/>" }
    return svg + "</svg>"
  }
}
