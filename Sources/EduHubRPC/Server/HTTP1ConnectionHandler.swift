import NIOCore
import NIOHTTP1

/// Serves the plain HTTP/1.1 requests of one connection with the server's ``HTTPHandler``: NIO's
/// HTTP/1 codec (with its pipelining assistant, so answers keep the order of requests) parses, this
/// handler collects each body (bounded) and writes each answer.
///
/// Installed in place of the HTTP/2 handler when a connection's first bytes are an HTTP/1 request.
final class HTTP1ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let handler: any HTTPHandler
  private let maxBodySize: Int
  private let budget: HTTPBodyBudget
  /// The current request's body limit (the handler's within the server's), and what its body holds
  /// of the server's budget (given back when its answer is written or the connection closes).
  private var limit = 0
  private var reserved = 0
  private var refusal: Int?
  private let peer: String
  private let isSecure: Bool
  private var head: HTTPRequestHead?
  private var body: [UInt8] = []
  private var draining = false
  private var busy = false

  init(handler: any HTTPHandler, maxBodySize: Int, budget: HTTPBodyBudget, peer: String, isSecure: Bool) {
    self.handler = handler
    self.maxBodySize = maxBodySize
    self.budget = budget
    self.peer = peer
    self.isSecure = isSecure
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      body = []
      refusal = nil
      limit = min(
        maxBodySize,
        handler.bodyLimit(
          method: head.method.rawValue, path: head.uri.prefix { $0 != "?" },
          headers: head.headers.map { (name: $0.name.lowercased(), value: $0.value) }) ?? .max)
    case .body(var buffer):
      guard refusal == nil else { return }
      if body.count + buffer.readableBytes > limit {
        refusal = 413
        body = []
      } else if !budget.reserve(buffer.readableBytes) {
        refusal = 503
        body = []
      } else {
        reserved += buffer.readableBytes
        body += buffer.readBytes(length: buffer.readableBytes) ?? []
      }
    case .end:
      guard let head else { return }
      self.head = nil
      let keepAlive = head.isKeepAlive && !draining
      if let refusal {
        let message = refusal == 413 ? "the request body exceeds \(limit) bytes" : "the server is busy receiving other requests; try again"
        giveBack()
        write(context: context, handler.refused(status: refusal, message: message, path: head.uri.prefix { $0 != "?" }), version: head.version, keepAlive: false)
        return
      }
      let request = HTTPRequest(
        method: head.method.rawValue, target: head.uri,
        headers: head.headers.map { (name: $0.name.lowercased(), value: $0.value) }, body: body, peer: peer, version: "HTTP/1.1",
        isSecure: isSecure)
      body = []
      if let response = handler.handleInline(request) {
        giveBack()
        write(context: context, response, version: head.version, keepAlive: keepAlive)
        return
      }
      busy = true
      let handler = self.handler
      let loop = context.eventLoop
      let bound = NIOLoopBound((self, context), eventLoop: loop)
      Task {
        let response = await handler.handle(request)
        loop.execute {
          let (this, context) = bound.value
          this.busy = false
          this.giveBack()
          this.write(context: context, response, version: head.version, keepAlive: keepAlive && !this.draining)
        }
      }
    }
  }

  private func write(context: ChannelHandlerContext, _ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool) {
    var headers = HTTPHeaders()
    for (name, value) in response.headers where name.lowercased() != "content-length" { headers.add(name: name, value: value) }
    headers.add(name: "content-length", value: String(response.body.count))
    if !keepAlive { headers.add(name: "connection", value: "close") }
    let head = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    if !response.body.isEmpty {
      var buffer = context.channel.allocator.buffer(capacity: response.body.count)
      buffer.writeBytes(response.body)
      context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }
    let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
    let channel = context.channel
    if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      // Nothing sent or received for the keep-alive timeout: close unless a request is being served.
      if !busy, head == nil { context.close(promise: nil) }
    } else if event is GracefulShutdownEvent {
      // Finish the request in progress, then close.
      draining = true
      if !busy, head == nil { context.close(promise: nil) }
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    giveBack()
    context.fireChannelInactive()
  }

  /// Returns the current body's bytes to the server's budget.
  private func giveBack() {
    budget.release(reserved)
    reserved = 0
  }
}
