@testable import EduHubRPC
import Testing

@Suite("Tracing's budget of server spans")
struct TracingBudgetTests {
  @Test("at most spansPerSecond server spans a second, whatever callers ask; a new second starts afresh")
  func budget() {
    let second = 1_000_000_000 + Int.random(in: 0..<1_000_000)
    var allowed = 0
    for _ in 0..<(RPCTracing.spansPerSecond * 3) where RPCTracing.withinBudget(now: second) { allowed += 1 }
    #expect(allowed == RPCTracing.spansPerSecond)
    #expect(RPCTracing.withinBudget(now: second + 1))
  }
}
