@testable import EduHubNode
import EduHubRPC
import Testing

/// The per-method call statistics behind /metrics: sharded by thread, summed exactly.
@Suite("Call statistics")
struct CallStatisticsTests {
  @Test("calls ended on many threads at once sum exactly, by status code and latency bucket")
  func sums() async {
    let statistics = CallStatistics(method: RPCMethodDescriptor(service: "eduhub.test.v1.Test", method: "Call"))
    await withTaskGroup(of: Void.self) { group in
      for _ in 0..<8 {
        group.addTask {
          for index in 0..<1000 {
            statistics.callStarted()
            statistics.callEnded(code: index % 2 == 0 ? .ok : .notFound, nanoseconds: Int64(index * 1000))
          }
        }
      }
    }
    let snapshot = statistics.snapshot()
    #expect(snapshot.started == 8000)
    #expect(snapshot.handled[0] == 4000 && snapshot.handled[5] == 4000)
    #expect(snapshot.handled.reduce(0, +) == 8000)
    #expect(snapshot.count == 8000)
    // 0 to 999 µs: 51 values per thread up to 50 µs, 50 more up to 100 µs, none over 1 ms.
    #expect(snapshot.buckets[0] == 8 * 51)
    #expect(snapshot.buckets[1] == 8 * 50)
    #expect(snapshot.buckets[5...].allSatisfy { $0 == 0 })
    #expect(snapshot.sumNanoseconds == 8 * 1000 * 499_500)
  }

  @Test("the text: exact decimal seconds for bounds, escaped label values, cumulative buckets ending at +Inf")
  func text() {
    #expect(CallStatisticsText.seconds(50_000) == "0.00005")
    #expect(CallStatisticsText.seconds(2_500_000_000) == "2.5")
    #expect(CallStatisticsText.seconds(1_000_000_000) == "1.0")
    #expect(CallStatisticsText.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    let statistics = CallStatistics(method: RPCMethodDescriptor(service: "eduhub.test.v1.Test", method: "Call"))
    let unused = CallStatistics(method: RPCMethodDescriptor(service: "eduhub.test.v1.Test", method: "Unused"))
    statistics.callStarted()
    statistics.callEnded(code: .ok, nanoseconds: 20_000_000_000)
    var out = ""
    CallStatisticsText.render([statistics, unused], into: &out)
    #expect(out.contains(#"eduhub_rpc_handling_seconds_bucket{service="eduhub.test.v1.Test",method="Call",le="10.0"} 0"#))
    #expect(out.contains(#"eduhub_rpc_handling_seconds_bucket{service="eduhub.test.v1.Test",method="Call",le="+Inf"} 1"#))
    #expect(out.contains(#"eduhub_rpc_handling_seconds_sum{service="eduhub.test.v1.Test",method="Call"} 20.0"#))
    #expect(!out.contains("Unused"))  // a method never called has no series yet
  }
}
