import EduHubAPI
import EduHubRPC
import Synchronization

/// `grpc.health.v1.Health`: the standard health protocol, so load balancers and generic tools can
/// ask whether the node (service "") or one of its services is serving.
public final class HealthService: Grpc_Health_V1_Health.Handler {
  public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  private struct State {
    var statuses: [String: Status] = [:]
    var watchers: [Int: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
    var nextWatcher = 0
  }

  private let state = Mutex(State())

  /// - Parameter services: the services to report, all SERVING; "" (the server) is always known.
  public init(services: [String]) {
    state.withLock { state in
      state.statuses[""] = .serving
      for service in services { state.statuses[service] = .serving }
    }
  }

  /// Changes a service's status; watchers are told.
  public func setStatus(_ status: Status, for service: String) {
    let watchers = state.withLock { state -> [AsyncStream<Status>.Continuation] in
      state.statuses[service] = status
      return state.watchers.values.filter { $0.service == service }.map(\.continuation)
    }
    for watcher in watchers { watcher.yield(status) }
  }

  /// Marks everything NOT_SERVING (at the start of a shutdown).
  public func markAllNotServing() {
    let services = state.withLock { Array($0.statuses.keys) }
    for service in services { setStatus(.notServing, for: service) }
  }

  public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws
    -> Grpc_Health_V1_HealthCheckResponse
  {
    guard let status = state.withLock({ $0.statuses[request.service] }) else {
      throw RPCError(.notFound, "unknown service \"\(request.service)\"")
    }
    var response = Grpc_Health_V1_HealthCheckResponse()
    response.status = status
    return response
  }

  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    let (stream, continuation) = AsyncStream<Status>.makeStream(bufferingPolicy: .bufferingNewest(1))
    let id = state.withLock { state -> Int in
      state.nextWatcher += 1
      state.watchers[state.nextWatcher] = (request.service, continuation)
      continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
      return state.nextWatcher
    }
    defer { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
    var last: Status?
    for await status in stream {
      guard status != last else { continue }
      last = status
      var message = Grpc_Health_V1_HealthCheckResponse()
      message.status = status
      try await response.write(message)
    }
  }
}
