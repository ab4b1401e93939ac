import EduHubAPI
import EduHubIdentity
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing

/// Calls that wait for SQLite's one writer wait off the cooperative pool, and nothing else waits.
@Suite("Writes off the cooperative pool")
struct WriterWaitTests {
  @Test("a body that may wait for the writer runs on the storage layer's threads, not the caller's")
  func storageThreads() async throws {
    try await withWorld { world in
      let store = world.identity.store
      let blocked = try await store.blocking { NodeStore.onStorageThread }
      #expect(!NodeStore.onStorageThread)
      #expect(blocked)
      // An async write waits there too, and commits.
      let sequence = try await store.write { db in try store.records.lastSequence(in: db) }
      #expect(sequence > 0)
    }
  }

  @Test("while another transaction holds the writer, writing calls wait for it and calls that do not write still answer at once")
  func writersDoNotStarveThePool() async throws {
    try await withWorld { world in
      try await world.account("tongchuan", role: .countyAdmin, org: "511702")
      let options = try await world.options("tongchuan")
      let store = world.identity.store
      // The writer held by a thread of its own (a long sync, say) until the reads below have
      // answered, or 60 s: reads that waited for the writer would find it held all that time.
      let held = Mutex(false)
      let readsDone = DispatchSemaphore(value: 0)
      let releasedByReads = Mutex<Bool?>(nil)
      Thread.detachNewThread {
        try? store.transaction { _ in
          held.withLock { $0 = true }
          let answered = readsDone.wait(timeout: .now() + 60) == .success
          releasedByReads.withLock { $0 = answered }
        }
      }
      while !held.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
      try await withThrowingTaskGroup(of: Void.self) { group in
        // More writing calls than the machine has cores: each waits for the writer.
        for index in 0..<(2 * ProcessInfo.processInfo.activeProcessorCount + 4) {
          group.addTask {
            var request = Eduhub_Identity_V1_CreateOrgRequest()
            request.org.code = "5117029\(String(format: "%02d", index))"
            request.org.name = "新城街道\(index)"
            request.org.kind = .town
            request.org.parentCode = "511702"
            _ = try await world.client.createOrg(request, options: options)
          }
        }
        try await Task.sleep(for: .milliseconds(200))
        // Calls that run as tasks and do not write answer while the writes wait.
        var get = Eduhub_Identity_V1_GetOrgRequest()
        get.code = "511702"
        for _ in 0..<5 { #expect(try await world.client.getOrg(get, options: options).code == "511702") }
        readsDone.signal()
        try await group.waitForAll()
      }
      #expect(releasedByReads.withLock { $0 } == true, "the reads waited for the writer")
      // And the writes all went through once the writer was free.
      var list = Eduhub_Identity_V1_ListOrgsRequest()
      list.code = "511702"
      #expect(try await world.client.listOrgs(list, options: options).orgs.filter { $0.code.hasPrefix("5117029") }.count >= 8)
    }
  }
}
