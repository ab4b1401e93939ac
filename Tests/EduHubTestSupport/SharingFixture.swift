import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubPrivacy
import EduHubRPC
import EduHubSharing
import EduHubReplication
import EduHubStorage
import EduHubSync
import Foundation
import SwiftProtobuf
import Synchronization
import Testing

/// A seeded world with a school's data steward, a county bureau's consumer and the city's data
/// security officer, and a school roster of minors (ingested) with an API over it.
package struct SharingFixture {
  package let world: IdentityWorld
  package static let county = "511703"  // Dachuan: the consumer org
  package static let roster = "school.roster"

  package var sharing: Eduhub_Sharing_V1_SharingService.Client { .init(world.rpc) }
  package var catalog: Eduhub_Catalog_V1_CatalogService.Client { .init(world.rpc) }

  package static func field(
    _ name: String, _ type: Eduhub_Catalog_V1_FieldType, _ sensitivity: Eduhub_Common_V1_Sensitivity = .internal,
    _ masking: Eduhub_Common_V1_MaskingKind = .none
  ) -> Eduhub_Catalog_V1_SchemaField {
    CatalogFixture.field(name, type, sensitivity, masking)
  }

  package static func resource(_ code: String, _ sharing: Eduhub_Catalog_V1_SharingClass, type: Eduhub_Catalog_V1_ResourceType = .table)
    -> Eduhub_Catalog_V1_Resource
  {
    var resource = Eduhub_Catalog_V1_Resource()
    resource.code = code
    resource.name = "资源 \(code)"
    resource.type = type
    resource.responsibleOrgCode = IdentityWorld.school
    resource.sharingClass = sharing
    resource.openingClass = .notOpen
    return resource
  }

  /// Students of one school: personal fields of minors, a class and a score.
  package static func rosterResource(_ sharing: Eduhub_Catalog_V1_SharingClass = .conditional, code: String = roster) -> Eduhub_Catalog_V1_Resource {
    var resource = resource(code, sharing)
    resource.fields = [
      field("student_id", .string), field("name", .string, .sensitive, .name), field("national_id", .string, .highlySensitive, .nationalID),
      field("birth_date", .date, .sensitive, .birthDate), field("class_name", .string), field("score", .decimal),
    ]
    resource.dataset.ingested.keyFields = ["student_id"]
    return resource
  }

  /// A consumer request.
  package static func terms(
    _ code: String, org: String = county, fields: [String] = [], masking: Eduhub_Sharing_V1_MaskingLevel = .masked,
    kind: Eduhub_Sharing_V1_ConsumerKind = .org
  ) -> Eduhub_Sharing_V1_RequestAccessRequest {
    var request = Eduhub_Sharing_V1_RequestAccessRequest()
    request.terms.resourceCode = code
    request.terms.consumer.kind = kind
    request.terms.consumer.id = org
    request.terms.purpose = "学位预警分析"
    request.terms.fields = fields
    request.terms.masking = masking
    return request
  }

  package static func start(_ world: IdentityWorld) async throws -> SharingFixture {
    try await world.account("steward", role: .dataSteward, org: IdentityWorld.school)
    try await world.account("bureau", role: .dataConsumer, org: county)
    try await world.account("officer", role: .securityOfficer, org: CitySeeder.cityCode)
    try await world.account("cityadmin", role: .cityAdmin, org: CitySeeder.cityCode)
    return SharingFixture(world: world)
  }

  package func publish(_ resource: Eduhub_Catalog_V1_Resource) async throws -> Eduhub_Catalog_V1_Resource {
    var request = Eduhub_Catalog_V1_PublishResourceRequest()
    request.resource = resource
    return try await catalog.publishResource(request, options: try await world.options("steward"))
  }

  package static func value(_ text: String) -> Eduhub_Catalog_V1_Value {
    var value = Eduhub_Catalog_V1_Value()
    value.text = text
    return value
  }

  /// Rows of the roster: id, name, ID number, birth date, class, score.
  package static func student(_ index: Int, className: String = "一班", score: String = "88.5") -> [String] {
    ["S\(String(format: "%04d", index))", "王小\(index)", "51170220140501\(String(format: "%04d", index))", "2014-05-01", className, score]
  }

  package func ingest(_ rows: [[String]], code: String = roster, as user: String = "steward") async throws {
    let options = try await world.options(user)
    _ = try await catalog.ingestRows(options: options) { writer in
      var message = Eduhub_Catalog_V1_IngestRowsRequest()
      message.resourceCode = code
      message.columns = ["student_id", "name", "national_id", "birth_date", "class_name", "score"]
      for row in rows {
        var ingestRow = Eduhub_Catalog_V1_IngestRow()
        ingestRow.values = row.map(Self.value)
        message.rows.append(ingestRow)
      }
      try await writer.write(message)
    }
  }

  package func decide(_ id: String, _ decision: Eduhub_Sharing_V1_Decision, as user: String, reason: String = "")
    async throws -> Eduhub_Sharing_V1_AccessRequest
  {
    var request = Eduhub_Sharing_V1_DecideRequest()
    request.requestID = id
    request.decision = decision
    request.reason = reason
    return try await sharing.decide(request, options: try await world.options(user))
  }

  package func change(_ grant: String, _ action: Eduhub_Sharing_V1_GrantAction, reason: String = "审计发现", expires: Int64 = 0)
    async throws -> Eduhub_Sharing_V1_Grant
  {
    var request = Eduhub_Sharing_V1_ChangeGrantRequest()
    request.grantID = grant
    request.action = action
    request.reason = reason
    request.expiresMs = expires
    return try await sharing.changeGrant(request, options: try await world.options("steward"))
  }

  /// Subscribes and collects messages until `stop` says so (or the stream ends).
  package func subscribe(
    _ code: String = roster, cursor: String = "", fields: [String] = [], options: CallOptions, batch: Int32 = 0,
    until stop: @escaping @Sendable ([Eduhub_Sharing_V1_SubscribeResponse]) -> Bool
  ) async throws -> [Eduhub_Sharing_V1_SubscribeResponse] {
    var request = Eduhub_Sharing_V1_SubscribeRequest()
    request.resourceCode = code
    request.cursor = cursor
    request.fields = fields
    request.batchSize = batch
    return try await sharing.subscribe(request, options: options) { stream in
      var messages: [Eduhub_Sharing_V1_SubscribeResponse] = []
      for try await message in stream {
        messages.append(message)
        if stop(messages) { break }
      }
      return messages
    }
  }

  /// Publishes the roster, ingests `count` students and has `bureau` granted `fields` at `masking`
  /// through the whole chain; returns the grant id.
  package func granted(
    count: Int = 12, fields: [String] = ["student_id", "name", "class_name", "score"], masking: Eduhub_Sharing_V1_MaskingLevel = .masked
  ) async throws -> String {
    _ = try await publish(Self.rosterResource())
    try await ingest((1...max(count, 1)).map { Self.student($0) }.prefix(count).map { $0 })
    let asked = try await sharing.requestAccess(Self.terms(Self.roster, fields: fields, masking: masking), options: try await world.options("bureau"))
    var decided = try await decide(asked.id, .approve, as: "steward")
    if decided.state == .pendingSecurity { decided = try await decide(asked.id, .approve, as: "officer") }
    #expect(decided.state == .approved)
    return decided.grantID
  }
}

package func withSharing<R>(log: CapturedLog? = nil, _ body: (SharingFixture) async throws -> R) async throws -> R {
  try await withWorld(log: log) { world in try await body(try await SharingFixture.start(world)) }
}

extension SharingFixture {
  /// The roster keyed by its pupils' ID numbers ("roster.by-id"), with three pupils.
  package static func publishRosterByID(_ fixture: SharingFixture) async throws {
    var table = SharingFixture.rosterResource(code: "roster.by-id")
    table.dataset.ingested.keyFields = ["national_id"]
    _ = try await fixture.publish(table)
    // Rows keyed by ID number are written by a steward who reads the school's pupils in clear.
    await expectStatus(.permissionDenied) {
      try await fixture.ingest([SharingFixture.student(1)], code: "roster.by-id")
    }
    let registrar = try await fixture.world.account("registrar", role: .dataSteward, org: IdentityWorld.school)
    var clear = Eduhub_Identity_V1_GrantRoleRequest()
    clear.accountID = registrar
    clear.role = .teacher
    clear.orgCode = IdentityWorld.school
    _ = try fixture.world.identity.grantRole(clear, caller: .operator(name: "test"), peer: "test")
    try await fixture.ingest((1...3).map { SharingFixture.student($0) }, code: "roster.by-id", as: "registrar")
  }
}

extension SharingFixture {
  /// Two APIs over the roster: counts and mean score by class (a parameter, groups under 5 hidden),
  /// and a point lookup by student id.
  package func publishApis(sharing: Eduhub_Catalog_V1_SharingClass = .unconditional) async throws {
    var stats = SharingFixture.resource("roster.by-class", sharing, type: .api)
    stats.api.datasetCode = SharingFixture.roster
    stats.api.groupBy = ["class_name"]
    var count = Eduhub_Catalog_V1_ApiAggregate()
    count.function = .count
    var mean = Eduhub_Catalog_V1_ApiAggregate()
    mean.function = .avg
    mean.field = "score"
    stats.api.aggregates = [count, mean]
    stats.api.minGroupSize = 5
    var parameter = Eduhub_Catalog_V1_ApiParameter()
    parameter.name = "min_score"
    parameter.field = "score"
    parameter.operator = .atLeast
    stats.api.parameters = [parameter]
    let published = try await publish(stats)
    #expect(published.fields.map(\.name) == ["class_name", "count", "avg_score"])
    var lookup = SharingFixture.resource("roster.lookup", sharing, type: .api)
    lookup.api.datasetCode = SharingFixture.roster
    lookup.api.fields = ["student_id", "name", "class_name", "score"]
    var id = Eduhub_Catalog_V1_ApiParameter()
    id.name = "id"
    id.field = "student_id"
    id.required = true
    lookup.api.parameters = [id]
    _ = try await publish(lookup)
  }
}
