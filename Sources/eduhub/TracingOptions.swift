import ArgumentParser
import EduHubRPC
import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// `--otlp-endpoint`: traces of this process's calls, exported over OTLP/gRPC (swift-otel) to a
/// collector. Off unless given (or OTEL_EXPORTER_OTLP_ENDPOINT is set): then every call carries its
/// W3C trace context (`traceparent`) to the next node, so one trace follows a sync from a school
/// through its county to central.
struct TracingOptions: ParsableArguments {
  @Option(help: "Export traces over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 (default: off, or OTEL_EXPORTER_OTLP_ENDPOINT).")
  var otlpEndpoint: String?

  @Option(help: "With --otlp-endpoint: the share of calls arriving without a trace that start one (calls in a caller's trace, and syncs, are always traced).")
  var traceSampleRatio = 0.001

  func validate() throws {
    if let otlpEndpoint, URL(string: otlpEndpoint)?.host == nil {
      throw ValidationError("--otlp-endpoint takes a URL such as http://127.0.0.1:4317")
    }
    guard (0...1).contains(traceSampleRatio) else { throw ValidationError("--trace-sample-ratio must be from 0 to 1") }
  }

  /// Bootstraps the process's tracer when tracing is asked for; returns the exporter's service,
  /// which must run (in the node's service group, or `run(_:)`) for spans to leave the process.
  /// - Parameter serviceName: how the collector names this process (the node's id).
  func bootstrap(serviceName: String) throws -> (any Service)? {
    guard let endpoint = otlpEndpoint ?? ProcessInfo.processInfo.environment["OTEL_EXPORTER_OTLP_ENDPOINT"] else { return nil }
    var configuration = OTel.Configuration.default
    configuration.serviceName = serviceName
    configuration.logs.enabled = false
    configuration.metrics.enabled = false
    configuration.traces.enabled = true
    configuration.traces.exporter = .otlp
    configuration.traces.otlpExporter.endpoint = endpoint
    configuration.traces.otlpExporter.protocol = .grpc
    // Spans leave within half a second (the default waits five).
    configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(500)
    configuration.diagnosticLogger = .custom(Logger(label: "eduhub.otel"))
    let backend = try OTel.makeTracingBackend(configuration: configuration)
    InstrumentationSystem.bootstrap(backend.factory)
    RPCTracing.enable(sampleRatio: traceSampleRatio)
    return backend.service
  }

  /// Runs `body` with tracing as asked: the exporter runs beside it and is shut down (flushing what
  /// is left) when it ends. For one-shot commands.
  func run<T: Sendable>(serviceName: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    guard let service = try bootstrap(serviceName: serviceName) else { return try await body() }
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [], cancellationSignals: [], logger: Logger(label: "eduhub.otel"))
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
      tasks.addTask {
        try await group.run()
        return nil
      }
      let result: Result<T, any Error>
      do { result = .success(try await body()) } catch { result = .failure(error) }
      await group.triggerGracefulShutdown()
      try await tasks.waitForAll()
      return try result.get()
    }
  }
}
