import EduHubAPI
import EduHubIdentity
import EduHubPrivacy
import EduHubRPC
import EduHubStorage
import Foundation
import SwiftProtobuf
import Synchronization

extension SharingService {
  /// Calls and sessions by day, resource and consumer: stewards see their resources', consumers
  /// their own.
  public func getCallStats(_ request: Eduhub_Sharing_V1_CallStatsRequest, caller: Caller) throws -> Eduhub_Sharing_V1_CallStatsResponse {
    let today = identity.today
    let from = request.fromDay.isEmpty ? CivilDate(chinaTimeAt: identity.nowSeconds - 29 * 86_400).description : request.fromDay
    let to = request.toDay.isEmpty ? today.description : request.toDay
    guard CivilDate(iso: from) != nil, CivilDate(iso: to) != nil else { throw Validate.invalid("from_day and to_day are YYYY-MM-DD") }
    let groups: [CallLog.Group]
    do {
      groups = try callLog.statistics(from: from, to: to, resource: request.resourceCode, consumer: request.consumerID)
    } catch {
      throw RPCError(.internalError, "storage failed")
    }
    let app = Self.appConsumer(caller)
    var response = Eduhub_Sharing_V1_CallStatsResponse()
    for group in groups {
      let own = app.map { $0 == group.stat.consumerID } ?? (!group.consumerPath.isEmpty && caller.can(.shareRequest, at: group.consumerPath))
      guard own || caller.can(.catalogPublish, at: group.resourceScope) else { continue }
      response.stats.append(group.stat)
    }
    return response
  }
}
