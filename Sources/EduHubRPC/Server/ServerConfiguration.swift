import NIOCore

/// How a server treats its connections. The defaults suit a node on a real network; tests shorten
/// the timers.
public struct ServerConfiguration: Sendable {
  /// The largest request message accepted, in bytes; larger ones end the call with
  /// RESOURCE_EXHAUSTED before any of it is buffered.
  public var maxReceiveMessageSize: Int = 4 * 1024 * 1024
  /// The most streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
  public var maxConcurrentStreams: Int = 256
  /// The HTTP/2 flow-control window of each stream, in bytes.
  public var streamWindowSize: Int = 1024 * 1024
  /// The HTTP/2 flow-control window of the whole connection, in bytes.
  public var connectionWindowSize: Int = 8 * 1024 * 1024
  /// The largest request header block, in bytes (SETTINGS_MAX_HEADER_LIST_SIZE).
  public var maxHeaderListSize: Int = 16 * 1024
  /// How often an idle connection is pinged to detect a dead peer; nil never pings.
  public var keepaliveInterval: TimeAmount? = .minutes(2)
  /// How long a ping may go unanswered before the connection is closed.
  public var keepaliveTimeout: TimeAmount = .seconds(20)
  /// How long a connection with no open stream stays open; nil keeps it forever.
  public var idleTimeout: TimeAmount? = .minutes(30)
  /// Stream resets a client may send in a burst, and per second after it, before the connection is
  /// closed with ENHANCE_YOUR_CALM (rapid-reset attacks, CVE-2023-44487).
  public var streamResetBurst: Int = 1000
  public var streamResetRatePerSecond: Int = 33
  /// How long in-flight calls may run after a graceful shutdown starts before connections are cut.
  public var shutdownGracePeriod: TimeAmount = .seconds(10)

  /// How long an event loop keeps polling for input after activity before it sleeps (adaptive busy
  /// polling, see `BusyPoller`); nil never spins. Costs at most this much CPU per burst of calls and
  /// halves the latency of back-to-back calls.
  public var busyPollBudget: TimeAmount? = .microseconds(50)

  /// Runs before every call's handler (authentication): may refuse the call or name its caller.
  public var interceptor: (any ServerInterceptor)?

  /// Hears connections and calls (metrics); nil costs nothing.
  public var observer: (any ServerObserver)?

  /// Serves plain HTTP requests on the same port (HTTP/1.1, and HTTP/2 requests whose content type
  /// is not gRPC's); nil answers them 415 (HTTP/2) or 505 (HTTP/1).
  public var httpHandler: (any HTTPHandler)?
  /// The bytes of plain-HTTP request bodies the server's connections may hold at once, together;
  /// past it a request is answered 503 (see ``HTTPBodyBudget``).
  public var httpBodyBudget = HTTPBodyBudget(limit: 64 << 20)
  /// How long an HTTP/1.1 keep-alive connection may sit idle between requests before it is closed.
  public var httpKeepAliveTimeout: TimeAmount = .seconds(60)

  public init() {}
}
