import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubReplication
import EduHubSharing
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

@Suite("Sharing: shared APIs (aggregates, point lookups, limits, HTTPS/JSON)")
struct SharedApiTests {
  /// Publishes an API over the roster: counts and mean scores by class, or rows by id.
  @Test("shared APIs: aggregates suppress small groups, point lookups are masked per grant, bad parameters are clear errors")
  func apis() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      // Class 一班: 6 students; 二班: 3 (below the minimum of 5); 三班: 5.
      try await fixture.ingest(
        (1...6).map { SharingFixture.student($0, className: "一班", score: "80") }
          + (7...9).map { SharingFixture.student($0, className: "二班", score: "90") }
          + (10...14).map { SharingFixture.student($0, className: "三班", score: "\(60 + $0)") })
      try await fixture.publishApis()
      let bureau = try await world.options("bureau")
      let asked = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.by-class"), options: bureau)
      #expect(asked.state == .approved)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.by-class"
      let groups = try await fixture.sharing.callApi(call, options: bureau)
      #expect(groups.columns == ["class_name", "count", "avg_score"])
      #expect(groups.rows.map { $0.values[0].text } == ["一班", "三班"] && groups.suppressedGroups == 1)
      #expect(groups.rows[0].values[1].integer == 6 && groups.rows[0].values[2].decimal == "80")
      #expect(groups.rows[1].values[2].decimal == "72")
      call.parameters = ["min_score": "72"]
      let high = try await fixture.sharing.callApi(call, options: bureau)
      // 一班 keeps its 6; 二班 (3) and 三班 (72, 73, 74) fall below the minimum, and with a filter
      // they are not counted (two calls differing by one person would tell each other apart).
      #expect(high.rows.map { $0.values[0].text } == ["一班"] && high.suppressedGroups == 0)
      call.parameters = ["min_score": "high"]
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(call, options: bureau) }
      call.parameters = ["grade": "9"]
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(call, options: bureau) }

      // A row API: masked per grant (the name is a minor's: surname only).
      let lookup = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.lookup"), options: bureau)
      #expect(lookup.state == .approved)
      var point = Eduhub_Sharing_V1_CallApiRequest()
      point.apiCode = "roster.lookup"
      await expectStatus(.invalidArgument) { try await fixture.sharing.callApi(point, options: bureau) }  // id is required
      point.parameters = ["id": "S0007"]
      let one = try await fixture.sharing.callApi(point, options: bureau)
      #expect(one.columns == ["student_id", "name", "class_name", "score"])
      #expect(one.rows.count == 1 && one.rows[0].values[1].text == "王**" && one.rows[0].masked)
      point.parameters = ["id": "S9999"]
      #expect(try await fixture.sharing.callApi(point, options: bureau).rows.isEmpty)
      // The manual of an API shows a working curl call.
      var detail = Eduhub_Catalog_V1_GetResourceRequest()
      detail.code = "roster.lookup"
      let manual = try await fixture.catalog.getResource(detail, options: bureau).manual
      #expect(manual.curlExample.contains("/v1/apis/roster.lookup") && manual.method.hasSuffix("/CallApi"))
      // Statistics: the consumer sees its calls.
      let stats = try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: bureau)
      #expect(stats.stats.reduce(0) { $0 + $1.calls } == 7 && stats.stats.reduce(0) { $0 + $1.failures } == 3)
      // The steward sees them too; another consumer does not.
      let steward = try await world.options("steward")
      #expect(try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: steward).stats.count == stats.stats.count)
      try await world.account("other", role: .dataConsumer, org: "511722")
      #expect(try await fixture.sharing.getCallStats(Eduhub_Sharing_V1_CallStatsRequest(), options: try await world.options("other")).stats.isEmpty)
      // A retired dataset stops its APIs.
      var retire = Eduhub_Catalog_V1_RetireResourceRequest()
      retire.code = SharingFixture.roster
      _ = try await fixture.catalog.retireResource(retire, options: steward)
      point.parameters = ["id": "S0007"]
      let retired = await expectStatus(.failedPrecondition) { try await fixture.sharing.callApi(point, options: bureau) }
      #expect(retired.contains("retired"))
    }
  }

  @Test("rate limit (RESOURCE_EXHAUSTED with retry-after) and daily quota")
  func limits() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...5).map { SharingFixture.student($0) })
      try await fixture.publishApis()
      let bureau = try await world.options("bureau")
      var terms = SharingFixture.terms("roster.lookup")
      terms.terms.ratePerSecond = 2
      _ = try await fixture.sharing.requestAccess(terms, options: bureau)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.lookup"
      call.parameters = ["id": "S0001"]
      // Two a second: within ten calls in a row one is refused, however slow the machine.
      var refusal: RPCError?
      for _ in 0..<10 where refusal == nil {
        do {
          _ = try await fixture.sharing.callApi(call, options: bureau)
        } catch let error as RPCError {
          refusal = error
        }
      }
      #expect(refusal?.code == .resourceExhausted && refusal?.trailers["retry-after"] == "1")
      try await Task.sleep(for: .milliseconds(1100))
      _ = try await fixture.sharing.callApi(call, options: bureau)

      var quota = SharingFixture.terms("roster.by-class")
      quota.terms.dailyQuota = 3
      quota.terms.ratePerSecond = 1000
      _ = try await fixture.sharing.requestAccess(quota, options: bureau)
      var stats = Eduhub_Sharing_V1_CallApiRequest()
      stats.apiCode = "roster.by-class"
      for _ in 0..<3 { _ = try await fixture.sharing.callApi(stats, options: bureau) }
      let message = await expectStatus(.resourceExhausted) { try await fixture.sharing.callApi(stats, options: bureau) }
      #expect(message.contains("quota"))
      // An online test counts against the quota too (it returns rows).
      stats.test = true
      let testMessage = await expectStatus(.resourceExhausted) { try await fixture.sharing.callApi(stats, options: bureau) }
      #expect(testMessage.contains("quota"))
    }
  }

  @Test("HTTPS/JSON: POST /v1/apis/{code} with curl (HTTP/1.1 and HTTP/2) and with Python's standard library")
  func httpJSON() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      try await fixture.ingest((1...3).map { SharingFixture.student($0) })
      try await fixture.publishApis()
      let token = try await world.login("bureau").accessToken
      _ = try await fixture.sharing.requestAccess(SharingFixture.terms("roster.lookup"), options: world.bearer(token))
      let url = "http://127.0.0.1:\(world.port)/v1/apis/roster.lookup"
      for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (status, output) = try await ChildProcess.run(
          "/usr/bin/curl",
          ["-sS", version, "-w", "\n%{http_code} %{http_version}", url, "-H", "authorization: Bearer \(token)", "-H", "content-type: application/json",
           "-d", "{\"id\": \"S0002\"}"])
        #expect(status == 0)
        let lines = output.split(separator: "\n")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        let rows = try #require(json["rows"] as? [[String: Any]])
        #expect(rows.count == 1 && rows[0]["student_id"] as? String == "S0002" && rows[0]["name"] as? String == "王**")
        #expect(lines.last == (version == "--http1.1" ? "200 1.1" : "200 2"))
      }
      // Errors: no token (401), no grant (403), bad JSON (400), unknown API (404).
      func code(_ arguments: [String]) async throws -> String {
        try await ChildProcess.run("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}"] + arguments).output
      }
      #expect(try await code([url, "-d", "{}"]) == "401")
      let steward = try await world.login("steward").accessToken
      #expect(try await code([url, "-H", "authorization: Bearer \(steward)", "-d", "{\"id\":\"S0001\"}"]) == "403")
      #expect(try await code([url, "-H", "authorization: Bearer \(token)", "-H", "content-type: application/json", "-d", "[1,2"]) == "400")
      #expect(try await code(["http://127.0.0.1:\(world.port)/v1/apis/nothing", "-H", "authorization: Bearer \(token)", "-d", "{}"]) == "404")
      #expect(try await code(["--http2-prior-knowledge", url, "-H", "authorization: Bearer \(token)"]) == "405")
      // A body over the limit is refused before the gateway reads it, in the gateway's JSON shape.
      let big = FileManager.default.temporaryDirectory.appendingPathComponent("eduhub-big-\(UUID()).json").path
      try Data(repeating: UInt8(ascii: " "), count: 5 << 20).write(to: URL(fileURLWithPath: big))
      defer { try? FileManager.default.removeItem(atPath: big) }
      for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (_, output) = try await ChildProcess.run(
          "/usr/bin/curl", ["-sS", version, "-w", "\n%{http_code} %{content_type}", url, "-H", "authorization: Bearer \(token)", "--data-binary", "@" + big])
        let lines = output.split(separator: "\n")
        #expect(lines.last == "413 application/json; charset=utf-8", "\(version): \(output)")
        let json = try JSONSerialization.jsonObject(with: Data(lines.first.map { Array($0.utf8) } ?? [])) as? [String: Any]
        #expect((json?["error"] as? [String: Any])?["code"] as? String == "RESOURCE_EXHAUSTED", "\(version): \(output)")
      }
      // Python's standard library (urllib), as a consumer with nothing else installed would call it.
      let script = """
        import json, sys, urllib.request
        request = urllib.request.Request(sys.argv[1], data=json.dumps({"id": "S0003"}).encode(), method="POST",
            headers={"authorization": "Bearer " + sys.argv[2], "content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            body = json.load(response)
        print(response.status, body["rows"][0]["student_id"], body["columns"][1])
        """
      let (status, output) = try await ChildProcess.run("/usr/bin/env", ["python3", "-c", script, url, token])
      #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == "200 S0003 name")
      // The catalog manual's curl line works as printed once the node's address and a token are in it.
      var detail = Eduhub_Catalog_V1_GetResourceRequest()
      detail.code = "roster.lookup"
      let example = try await fixture.catalog.getResource(detail, options: world.bearer(token)).manual.curlExample
      let command = example.replacingOccurrences(of: "https://<节点地址>", with: "http://127.0.0.1:\(world.port)")
      let manual = try await ChildProcess.run("/usr/bin/env", ["TOKEN=\(token)", "/bin/sh", "-c", command])
      #expect(manual.status == 0 && manual.output.hasPrefix("{\"columns\":[\"student_id\""), "\(command) -> \(manual.output)")
      // gRPC still works on the same port after the HTTP/1 connections.
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = "roster.lookup"
      call.parameters = ["id": "S0001"]
      #expect(try await fixture.sharing.callApi(call, options: world.bearer(token)).rows.count == 1)
    }
  }
}
