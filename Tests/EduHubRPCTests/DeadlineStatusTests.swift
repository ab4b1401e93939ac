import EduHubAPI
import EduHubNode
import EduHubRPC
import Foundation
import Testing

@Suite("A deadline's status is the call's status")
struct DeadlineStatusTests {
  @Test("a stream whose handler returns once cancelled still ends DEADLINE_EXCEEDED, every time")
  func deadlineWinsOverTheHandlersReturn() async throws {
    // Health's Watch returns normally when its task is cancelled: the call must still end with the
    // deadline's status, not OK (a race the Python interop suite once caught).
    let health = HealthService(services: [""])
    let harness = try await Harness.start(services: [health])
    let rpc = harness.client()
    let client = Grpc_Health_V1_Health.Client(rpc)
    for _ in 0..<20 {
      do {
        try await client.watch(options: CallOptions(timeout: .milliseconds(50))) { stream in
          for try await _ in stream {}
        }
        Issue.record("the watch ended without an error")
      } catch let error as RPCError {
        #expect(error.code == .deadlineExceeded, "\(error)")
      }
    }
    await rpc.close()
    await harness.stop()
  }
}
