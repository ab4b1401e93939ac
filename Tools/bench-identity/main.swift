// eduhub-bench-identity: what field-level masking costs on ListPeople pages of 1,000 students,
// measured in one process on one node's data with masking on and off, rounds alternated.
// Run through Tools/bench-identity/run, which seeds the city first.
//
// Usage: eduhub-bench-identity --data DIR [--org CODE] [--rounds N] [--pages N]
@_spi(Benchmark) import EduHubIdentity
import EduHubAPI
import EduHubCrypto
import EduHubNode
import EduHubBenchSupport
import Foundation
import Logging
import SwiftProtobuf

let directory = option("data", "")
let org = option("org", "511702")
let rounds = Int(option("rounds", "5")) ?? 5
let pages = Int(option("pages", "10")) ?? 10
guard !directory.isEmpty else {
  FileHandle.standardError.write(Data("usage: eduhub-bench-identity --data DIR [--org CODE] [--rounds N] [--pages N]\n".utf8))
  exit(2)
}

var logger = Logger(label: "bench")
logger.logLevel = .error
let data = try NodeData.load(directory)
let node = try data.open(logger: logger)
var unmaskedConfiguration = IdentityConfiguration()
unmaskedConfiguration.maskingEnabled = false
let unmasked = try IdentityService(
  nodeID: data.identity.nodeID, replica: node.replica, audit: node.audit,
  signingKey: try SigningKey(seed: try data.key("node")), pseudonymKey: try data.key("pseudonym"),
  delivery: OutboxCodeDelivery(logger: logger), configuration: unmaskedConfiguration)

// A county official: reads the county's students, every one masked (and no clear read to audit).
let path = try node.identity.getOrg(.with { $0.code = org }, caller: .operator(name: "bench"), peer: "bench").path
let official = Caller(
  accountID: "bench-official", username: "bench", personID: "", homeScope: path,
  roles: [.init(grantID: "g", role: .countyAdmin, scope: path)], children: [], issuer: data.identity.nodeID, sessionID: "s")

/// Reads `pages` pages of 1,000 students; returns seconds per page and the people seen.
func readPages(_ service: IdentityService) throws -> (seconds: Double, people: Int, masked: Int) {
  var request = Eduhub_Identity_V1_ListPeopleRequest()
  request.orgCode = org
  request.kind = .student
  request.page.pageSize = 1000
  var people = 0
  var masked = 0
  let start = ContinuousClock.now
  for _ in 0..<pages {
    let page = try service.listPeople(request, caller: official, peer: "bench")
    people += page.people.count
    masked += page.people.filter(\.masked).count
    guard !page.page.nextPageToken.isEmpty else { break }
    request.page.pageToken = page.page.nextPageToken
  }
  let elapsed = ContinuousClock.now - start
  let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  return (seconds / Double(max(1, people / 1000)), people, masked)
}

_ = try readPages(node.identity)  // warm the page cache
_ = try readPages(unmasked)
var on: [Double] = []
var off: [Double] = []
var seen = (0, 0)
for _ in 0..<rounds {
  let maskedRun = try readPages(node.identity)
  let plainRun = try readPages(unmasked)
  on.append(maskedRun.seconds)
  off.append(plainRun.seconds)
  seen = (maskedRun.people, maskedRun.masked)
  precondition(plainRun.masked == 0, "the unmasked run masked something")
}
let medianOn = on.sorted()[on.count / 2]
let medianOff = off.sorted()[off.count / 2]
print("\nListPeople, pages of 1,000 students of \(org) (\(seen.0) people a round, \(seen.1) of them masked), median of \(rounds) rounds")
print(String(format: "masking on:  %7.2f ms a page", medianOn * 1000))
print(String(format: "masking off: %7.2f ms a page", medianOff * 1000))
let overhead = medianOn / medianOff - 1
print(String(format: "masking adds %.1f%% (target <= 10%%): %@", overhead * 100, overhead <= 0.10 ? "met" : "MISSED"))
await unmasked.shutdown()
await node.close()
