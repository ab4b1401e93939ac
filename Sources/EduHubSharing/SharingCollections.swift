import EduHubAPI
import EduHubPrivacy
import EduHubReplication
import EduHubStorage
import Foundation
import SwiftProtobuf
import Synchronization

/// The record-store collections of sharing. Requests and grants live in the resource's org scope,
/// so they replicate to the nodes of that subtree (a county steward can approve offline);
/// applications live in their registering org's scope.
public enum SharingCollections {
  public static let app = RecordCollection<Eduhub_Sharing_V1_AppRecord>("share_app") { body in
    _ = try Eduhub_Sharing_V1_AppRecord(serializedBytes: body)
    return .init()
  }
  /// Access requests by id (time-ordered).
  public static let request = RecordCollection<Eduhub_Sharing_V1_AccessRequest>(
    "share_request", indexes: ["requester", "consumer", "resource"]
  ) { body in
    let request = try Eduhub_Sharing_V1_AccessRequest(serializedBytes: body)
    return .init(keys: [
      ("requester", request.requester), ("consumer", request.terms.consumer.id), ("resource", request.terms.resourceCode),
    ])
  }
  /// Grants by id (the id of the request each came from). Indexes its changes: the grant book in
  /// memory and open streams catch up from them, so a revocation reaches them at once.
  public static let grant = RecordCollection<Eduhub_Sharing_V1_Grant>(
    "share_grant", indexes: ["consumer", "resource"], indexesChanges: true
  ) { body in
    let grant = try Eduhub_Sharing_V1_Grant(serializedBytes: body)
    return .init(keys: [("consumer", grant.terms.consumer.id), ("resource", grant.terms.resourceCode)])
  }

  public static var all: [CollectionDefinition] { [app.definition, request.definition, grant.definition] }
}
