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
  private let peer: String
  private let isSecure: Bool
  private var head: HTTPRequestHead?
  private var body: [UInt8] = []
  private var tooLarge = false
  private var draining = false
  private var busy = false

  init(handler: any HTTPHandler, maxBodySize: Int, peer: String, isSecure: Bool) {
    self.handler = handler
    self.maxBodySize = maxBodySize
    self.peer = peer
    self.isSecure = isSecure
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
      body = []
      tooLarge = false
    case .body(var buffer):
      guard !tooLarge else { return }
      if body.count + buffer.readableBytes > maxBodySize {
        tooLarge = true
        body = []
      } else {
        body += buffer.readBytes(length: buffer.readableBytes) ?? []
      }
    case .end:
      guard let head else { return }
      self.head = nil
      let keepAlive = head.isKeepAlive && !draining
      if tooLarge {
        let refusal = handler.refused(
          status: 413, message: "the request body exceeds \(maxBodySize) bytes", path: head.uri.prefix { $0 != "?" })
        write(context: context, refusal, version: head.version, keepAlive: false)
        return
      }
      let request = HTTPRequest(
        method: head.method.rawValue, target: head.uri,
        headers: head.headers.map { (name: $0.name.lowercased(), value: $0.value) }, body: body, peer: peer, version: "HTTP/1.1",
        isSecure: isSecure)
      body = []
      busy = true
      let handler = self.handler
      let loop = context.eventLoop
      let bound = NIOLoopBound((self, context), eventLoop: loop)
      Task {
        let response = await handler.handle(request)
        loop.execute {
          let (this, context) = bound.value
          this.busy = false
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
}
