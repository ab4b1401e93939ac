import Synchronization
import Tracing

#if canImport(Glibc)
  import Glibc
#endif

/// Traces of calls across nodes, with swift-distributed-tracing: a server span per call, its W3C
/// trace context (`traceparent`, `tracestate`) taken from the request's metadata, and a client span
/// per call, its context sent in the request's metadata, so that one trace follows a request from
/// node to node. Off until a process bootstraps a tracer (`InstrumentationSystem.bootstrap`) and
/// calls `enable()`: then nothing but a load of one flag is spent per call.
public enum RPCTracing {
  private static let enabled = Atomic<Bool>(false)
  /// A call with no trace of its caller's starts one every this many calls (1: every call).
  private static let rootEvery = Atomic<Int>(1000)
  private static let rootCount = Atomic<Int>(0)

  /// Turns tracing of calls on (after the process bootstrapped its tracer).
  /// - Parameter sampleRatio: the share of calls arriving without a trace (no `traceparent`) that
  ///   start one (0...1). A span costs microseconds, as much as a whole small call: tracing every
  ///   call would halve what a node serves. Calls that carry a trace are always traced (the caller
  ///   sampled them), and so is every sync, which starts its own.
  public static func enable(sampleRatio: Double = 0.001) {
    rootEvery.store(sampleRatio <= 0 ? Int.max : max(1, Int((1 / min(sampleRatio, 1)).rounded())), ordering: .relaxed)
    enabled.store(true, ordering: .releasing)
  }

  /// Whether calls are traced.
  public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

  /// A server span for `method`: a child of the caller's span if the metadata carries one; else,
  /// for one call in `rootEvery`, the root of a new trace; else none (nothing else is spent).
  static func serverSpan(_ method: RPCMethodDescriptor, metadata: RPCMetadata, peer: String) -> (any Span)? {
    if metadata["traceparent"] == nil {
      let every = rootEvery.load(ordering: .relaxed)
      guard every != Int.max, rootCount.wrappingAdd(1, ordering: .relaxed).newValue % every == 0 else { return nil }
    }
    // Any client may send a `traceparent`: what it can make this node spend on spans is capped.
    guard withinBudget() else { return nil }
    var context = ServiceContext.topLevel
    InstrumentationSystem.instrument.extract(metadata, into: &context, using: MetadataExtractor())
    let span = startSpan(method, context: context, kind: .server)
    span.attributes["net.peer.name"] = peer
    return span
  }

  /// A client span for `method`, a child of the task's current span, and `metadata` with its
  /// context added; none when the task is in no trace (its caller was not sampled).
  static func clientSpan(_ method: RPCMethodDescriptor, metadata: inout RPCMetadata) -> (any Span)? {
    guard let current = ServiceContext.current else { return nil }
    let span = startSpan(method, context: current, kind: .client)
    InstrumentationSystem.instrument.inject(span.context, into: &metadata, using: MetadataInjector())
    return span
  }

  /// A span named and described after `method` (OpenTelemetry's RPC conventions).
  private static func startSpan(_ method: RPCMethodDescriptor, context: ServiceContext, kind: SpanKind) -> any Span {
    let span = InstrumentationSystem.tracer.startAnySpan(method.service + "/" + method.method, context: context, ofKind: kind)
    span.attributes["rpc.system"] = "grpc"
    span.attributes["rpc.service"] = method.service
    span.attributes["rpc.method"] = method.method
    return span
  }

  /// Server spans a second at most (a span costs microseconds; a flood of callers asking to be
  /// traced must not turn into a flood of work).
  static let spansPerSecond = 1000
  private static let budgetSecond = Atomic<Int>(0)
  private static let budgetUsed = Atomic<Int>(0)

  /// Whether one more server span fits this second's budget.
  static func withinBudget(now: Int = Int(time(nil))) -> Bool {
    let second = budgetSecond.load(ordering: .relaxed)
    if second != now, budgetSecond.compareExchange(expected: second, desired: now, ordering: .relaxed).exchanged {
      budgetUsed.store(0, ordering: .relaxed)
    }
    return budgetUsed.wrappingAdd(1, ordering: .relaxed).newValue <= spansPerSecond
  }

  /// Ends `span` with the call's gRPC status.
  static func end(_ span: any Span, code: RPCError.Code) {
    span.attributes["rpc.grpc.status_code"] = Int(code.rawValue)
    if code != .ok { span.setStatus(SpanStatus(code: .error, message: "\(code)")) }
    span.end()
  }
}

/// Reads trace headers out of request metadata.
struct MetadataExtractor: Extractor {
  func extract(key: String, from carrier: RPCMetadata) -> String? { carrier[key] }
}

/// Writes trace headers into request metadata.
struct MetadataInjector: Injector {
  func inject(_ value: String, forKey key: String, into carrier: inout RPCMetadata) { carrier.add(key, value) }
}
