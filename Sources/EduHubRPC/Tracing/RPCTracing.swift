import Synchronization
import Tracing

/// Traces of calls across nodes, with swift-distributed-tracing: a server span per call, its W3C
/// trace context (`traceparent`, `tracestate`) taken from the request's metadata, and a client span
/// per call, its context sent in the request's metadata, so that one trace follows a request from
/// node to node. Off until a process bootstraps a tracer (`InstrumentationSystem.bootstrap`) and
/// calls `enable()`: then nothing but a load of one flag is spent per call.
public enum RPCTracing {
  private static let enabled = Atomic<Bool>(false)

  /// Turns tracing of calls on (after the process bootstrapped its tracer).
  public static func enable() { enabled.store(true, ordering: .releasing) }

  /// Whether calls are traced.
  public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

  /// A server span for `method`, a child of the caller's span if the metadata carries one.
  static func serverSpan(_ method: RPCMethodDescriptor, metadata: RPCMetadata, peer: String) -> any Span {
    var context = ServiceContext.topLevel
    InstrumentationSystem.instrument.extract(metadata, into: &context, using: MetadataExtractor())
    let span = InstrumentationSystem.tracer.startAnySpan(method.service + "/" + method.method, context: context, ofKind: .server)
    span.attributes["rpc.system"] = "grpc"
    span.attributes["rpc.service"] = method.service
    span.attributes["rpc.method"] = method.method
    span.attributes["net.peer.name"] = peer
    return span
  }

  /// A client span for `method`, a child of the task's current span, and `metadata` with its
  /// context added.
  static func clientSpan(_ method: RPCMethodDescriptor, metadata: inout RPCMetadata) -> any Span {
    let span = InstrumentationSystem.tracer.startAnySpan(
      method.service + "/" + method.method, context: ServiceContext.current ?? .topLevel, ofKind: .client)
    span.attributes["rpc.system"] = "grpc"
    span.attributes["rpc.service"] = method.service
    span.attributes["rpc.method"] = method.method
    InstrumentationSystem.instrument.inject(span.context, into: &metadata, using: MetadataInjector())
    return span
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
