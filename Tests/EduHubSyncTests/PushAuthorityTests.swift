import EduHubAPI
import EduHubCatalog
import EduHubCrypto
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubReplication
import EduHubStorage
import EduHubSync
import EduHubTestSupport
import EduHubWorkOrders
import Foundation
import PropertyBased
import SwiftProtobuf
import Synchronization
import Testing

@Suite("Push accepts from a node only what it could have written through the API")
struct PushAuthorityTests {
  @Test("a county node binds no guardian: not a child of another county filed under its own scope, not one of its own schools' (guardians.bind is the school's)")
  func guardianOfAnotherChild() async throws {
    try await withWorld { world in
      let owned = try await OwnedNode.start(world)
      let guardian = try #require(try world.identity.store.records.find(IdentityCollections.guardianship, index: "child", key: IdentityWorld.otherStudent).first)
      let guardianID = try Eduhub_Identity_V1_GuardianBinding(serializedBytes: guardian.body).guardianID
      var binding = Eduhub_Identity_V1_GuardianBinding()
      binding.guardianID = guardianID
      binding.childID = IdentityWorld.otherStudent
      binding.boundBy = "someone"
      binding.confirmedBy = "someone-else"
      let id = guardianID + ":" + IdentityWorld.otherStudent
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.guardianship.name, id + "x", scope: OwnedNode.scope, body: try binding.serializedBytes())],
        "guardians.bind is needed")
      // One of its own pupils, filed at the pupil's school: a county administrator reads pupils
      // masked and binds nobody, so neither does its node.
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      binding.childID = IdentityWorld.student
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.guardianship.name, guardianID + ":" + IdentityWorld.student, scope: schoolPath, body: try binding.serializedBytes())],
        "guardians.bind is needed")
      await owned.county.close()
    }
  }

  /// Publishes at central (as its operator) a view of Tongchuan's students, as dz.student.basic is
  /// of the city's; returns it as stored.
  func publishCountyStudentView(_ world: IdentityWorld) throws {
    _ = try CatalogSeeder.run(into: world.node.catalog)
    var view = try Eduhub_Catalog_V1_Resource(serializedBytes: try #require(try world.identity.store.records.get(CatalogCollections.resource, "dz.student.basic")).body)
    view.code = "tc.student.basic"
    view.responsibleOrgCode = "511702"
    view.dataset.view.orgCode = ""
    var publish = Eduhub_Catalog_V1_PublishResourceRequest()
    publish.resource = view
    _ = try world.node.catalog.publishResource(publish, caller: .operator(name: "test"), peer: "console")
  }

  func countyStudentView(_ world: IdentityWorld) throws -> Eduhub_Catalog_V1_Resource {
    try Eduhub_Catalog_V1_Resource(serializedBytes: try #require(try world.identity.store.records.get(CatalogCollections.resource, "tc.student.basic")).body)
  }

  @Test("a catalog view widened to the whole city or declassified, an API singling pupils out, a retired resource revived, a role the county cannot grant, a node key and an application are refused")
  func escalations() async throws {
    try await withWorld { world in
      try publishCountyStudentView(world)
      let owned = try await OwnedNode.start(world)
      // A view of the county's own that reads people of the whole city, one that declares its
      // pupils' ID numbers internal, and an API grouping them by ID number: none is what
      // PublishResource would store.
      let basic = try countyStudentView(world)
      var widened = basic
      widened.code = "tc.all.pupils"
      widened.dataset.view.orgCode = "511700"
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, widened.code, scope: OwnedNode.scope, body: try widened.serializedBytes())],
        "the view's org must lie within the responsible org's subtree")
      var quiet = basic
      quiet.code = "tc.quiet.pupils"
      for index in quiet.fields.indices where quiet.fields[index].name == "national_id" {
        quiet.fields[index].sensitivity = .internal
        quiet.fields[index].masking = .none
      }
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, quiet.code, scope: OwnedNode.scope, body: try quiet.serializedBytes())],
        "not what PublishResource would store")
      var api = Eduhub_Catalog_V1_Resource()
      api.code = "tc.ids"
      api.name = "学号"
      api.type = .api
      api.responsibleOrgCode = "511702"
      api.sharingClass = .unconditional
      api.openingClass = basic.openingClass
      api.api.datasetCode = basic.code
      api.api.groupBy = ["national_id"]
      var count = Eduhub_Catalog_V1_ApiAggregate()
      count.function = .count
      count.name = "n"
      api.api.aggregates = [count]
      api.api.minGroupSize = 1
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, api.code, scope: OwnedNode.scope, body: try api.serializedBytes())], "is personal")
      // A city administrator's role on the county (it carries share.apps, which a county's lacks).
      let account = try #require(try world.identity.store.records.find(IdentityCollections.account.name, index: "username", key: "city-county-511702").first)
      var grant = Eduhub_Identity_V1_RoleGrant()
      grant.id = "Gforged"
      grant.accountID = account.id
      grant.role = .cityAdmin
      grant.orgCode = "511702"
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.roleGrant.name, "Gforged", scope: OwnedNode.scope, body: try grant.serializedBytes())],
        "share.apps is needed")
      grant.role = .node
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.roleGrant.name, "Gforged", scope: OwnedNode.scope, body: try grant.serializedBytes())],
        "that role is not granted through the API")
      var key = Eduhub_Identity_V1_NodeKeyRecord()
      key.nodeID = "county-shadow"
      key.publicKey = Data(SigningKey().publicKey)
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.nodeKey.name, "county-shadow", scope: OwnedNode.scope, body: try key.serializedBytes())],
        "written only above")
      var app = Eduhub_Sharing_V1_AppRecord()
      app.app.clientID = "app-forged"
      app.app.orgCode = "511702"
      try await owned.expectRefused(
        [try owned.record("share_app", "app-forged", scope: OwnedNode.scope, body: try app.serializedBytes())], "written only above")
      // A teacher's role reads pupils in clear: a masked county cannot give it.
      let schoolPath = try #require(try owned.stored(IdentityCollections.org.name, IdentityWorld.school)).scope
      grant.id = "Gteacher"
      grant.role = .teacher
      grant.orgCode = IdentityWorld.school
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.roleGrant.name, "Gteacher", scope: schoolPath, body: try grant.serializedBytes())],
        "people.read.clear is needed")
      // What it may grant passes: a dispatcher's role in one of its schools.
      grant.id = "Gdispatcher"
      grant.role = .dispatcher
      try await owned.push([try owned.record(IdentityCollections.roleGrant.name, "Gdispatcher", scope: schoolPath, body: try grant.serializedBytes())])
      #expect(try owned.stored(IdentityCollections.roleGrant.name, "Gdispatcher") != nil)
      // A school's roster declaring its pupils' names internal: the county does not read them in
      // clear, so it may not lower what its stored rows are masked by (nor through UpdateResource).
      _ = try world.node.catalog.publishResource(CatalogFixture.roster(), caller: .operator(name: "test"), peer: "console")
      let roster = try #require(try owned.stored(CatalogCollections.resource.name, "school.roster"))
      var lowered = try Eduhub_Catalog_V1_Resource(serializedBytes: roster.body)
      for index in lowered.fields.indices where lowered.fields[index].name == "name" {
        lowered.fields[index].sensitivity = .internal
        lowered.fields[index].masking = .none
      }
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, lowered.code, scope: roster.scope, body: try lowered.serializedBytes(), over: roster)],
        "lowers the classification of name")
      var update = Eduhub_Catalog_V1_UpdateResourceRequest()
      update.resource = lowered
      let official = world.bearer(try await world.login("city-county-511702").accessToken)
      let refusal = await expectStatus(.permissionDenied) {
        try await Eduhub_Catalog_V1_CatalogService.Client(world.rpc).updateResource(update, options: official)
      }
      #expect(refusal.contains("people.read.clear"), "\(refusal)")
      // Raising it is anyone's who publishes there.
      for index in lowered.fields.indices where lowered.fields[index].name == "score" {
        lowered.fields[index].sensitivity = .sensitive
        lowered.fields[index].masking = .redact
      }
      for index in lowered.fields.indices where lowered.fields[index].name == "name" {
        lowered.fields[index].sensitivity = .sensitive
        lowered.fields[index].masking = .name
      }
      update.resource = lowered
      _ = try await Eduhub_Catalog_V1_CatalogService.Client(world.rpc).updateResource(update, options: official)
      // A retired resource brought back to life: no RPC does that.
      var retire = Eduhub_Catalog_V1_RetireResourceRequest()
      retire.code = basic.code
      _ = try world.node.catalog.retireResource(retire, caller: .operator(name: "test"), peer: "console")
      let retired = try #require(try owned.stored(CatalogCollections.resource.name, basic.code))
      var revived = try Eduhub_Catalog_V1_Resource(serializedBytes: retired.body)
      revived.retired = false
      try await owned.expectRefused(
        [try owned.record(CatalogCollections.resource.name, basic.code, scope: OwnedNode.scope, body: try revived.serializedBytes(), over: retired)],
        "stays retired")
      await owned.county.close()
    }
  }

  @Test("an account that takes another's username or phone is refused; a login stays the account it was")
  func loginsStayUnique() async throws {
    try await withWorld { world in
      try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      let owned = try await OwnedNode.start(world)
      let admin = try #require(try world.identity.store.records.find(IdentityCollections.account, index: "username", key: "city-county-511702").first)
      let mine = try #require(try world.identity.store.records.find(IdentityCollections.account, index: "username", key: "tc-teacher").first)
      var account = try Eduhub_Identity_V1_AccountRecord(serializedBytes: mine.body)
      account.id = "A0000"
      account.username = "City-County-511702"
      try await owned.expectRefused(
        [try owned.record(IdentityCollections.account.name, "A0000", scope: mine.scope, body: try account.serializedBytes())],
        "the username is already another account's")
      #expect(try world.identity.store.records.find(IdentityCollections.account.name, index: "username", key: "city-county-511702").map(\.id) == [admin.id])
      await owned.county.close()
    }
  }

  @Test("an account whose password, person or state an owned node wrote logs in at central but speaks only for that node: the pupil it names is not its to read, roles above the node are dropped")
  func credentialsWrittenBelow() async throws {
    try await withWorld { world in
      let teacher = try await world.account("tc-teacher", role: .teacher, org: IdentityWorld.school)
      var steward = Eduhub_Identity_V1_GrantRoleRequest()
      steward.accountID = teacher
      steward.role = .dataSteward
      steward.orgCode = CitySeeder.cityCode
      _ = try world.identity.grantRole(steward, caller: .operator(name: "test"), peer: "test")
      let owned = try await OwnedNode.start(world)
      let chosen = "owned node password 1"
      let hash = try PasswordHash.hash(chosen, limits: .init(opsLimit: 1, memLimit: 256 * 1024))
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      let clear = try await world.client.getPerson(get, options: try await world.options("tc-teacher"))
      #expect(!clear.masked)

      // A new account of its own making that names a pupil as its person.
      let pupil = try #require(try owned.stored(IdentityCollections.person.name, IdentityWorld.student))
      var made = Eduhub_Identity_V1_AccountRecord()
      made.id = "Aowned"
      made.username = "owned-pupil"
      made.personID = IdentityWorld.student
      made.state = .active
      made.orgCode = IdentityWorld.school
      made.passwordHash = hash
      try await owned.push([try owned.record(IdentityCollections.account.name, "Aowned", scope: pupil.scope, body: try made.serializedBytes())])
      // Central then makes it a steward of the city: a role above the node.
      steward.accountID = "Aowned"
      _ = try world.identity.grantRole(steward, caller: .operator(name: "test"), peer: "test")
      let asPupil = world.bearer(try await world.login("owned-pupil", password: chosen).accessToken)
      // Its token speaks as nobody: the pupil is not its to read at all, the city role is dropped.
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: asPupil) }
      let whoAmI = try await world.client.whoAmI(options: asPupil)
      #expect(whoAmI.personID.isEmpty)
      #expect(!whoAmI.grants.contains { $0.role == .dataSteward }, "the city steward role came with a password the county set")

      // The teacher's account with a password of the node's choosing.
      let stored = try #require(try owned.stored(IdentityCollections.account.name, teacher))
      var account = try Eduhub_Identity_V1_AccountRecord(serializedBytes: stored.body)
      account.passwordHash = hash
      // Over the stored account, the hash it sees masked keeps central's value.
      try await owned.push([try owned.record(IdentityCollections.account.name, teacher, scope: stored.scope, body: try account.serializedBytes(), over: stored)])
      await expectStatus(.unauthenticated) { try await world.login("tc-teacher", password: chosen) }
      // A tombstone first, then the account anew: the tombstone keeps its last body, and the hash
      // the node sees masked keeps central's value there too.
      let now = try #require(try owned.stored(IdentityCollections.account.name, teacher))
      try await owned.push([try owned.record(IdentityCollections.account.name, teacher, scope: now.scope, body: now.body, deleted: true, over: now)])
      let gone = try #require(try owned.stored(IdentityCollections.account.name, teacher))
      try await owned.push([try owned.record(IdentityCollections.account.name, teacher, scope: gone.scope, body: try account.serializedBytes(), over: gone)])
      await expectStatus(.unauthenticated) { try await world.login("tc-teacher", password: chosen) }
      await owned.county.close()
    }
  }

  @Test("the write rules judge what a push would store: a version concurrent with central's, merged field by field, cannot approve clear terms without the security officer")
  func mergedVersionsAreJudged() async throws {
    try await withSharing { fixture in
      let world = fixture.world
      _ = try await fixture.publish(SharingFixture.rosterResource())
      // A consumer of the county the node holds, asking for the roster's non-personal columns.
      try await world.account("tc-bureau", role: .dataConsumer, org: "511702")
      let asked = try await fixture.sharing.requestAccess(
        SharingFixture.terms(SharingFixture.roster, org: "511702", fields: ["student_id", "class_name", "score"]),
        options: try await world.options("tc-bureau"))
      #expect(!asked.needsSecurityOfficer)
      let owned = try await OwnedNode.start(world)
      let v1 = try #require(try owned.county.node.identity.store.records.get("share_request", asked.id))
      // At central the requester amends the terms to clear: the chain now needs the officer.
      var amend = Eduhub_Sharing_V1_AmendRequestRequest()
      amend.requestID = asked.id
      amend.terms = SharingFixture.terms(SharingFixture.roster, org: "511702", masking: .clear).terms
      #expect(try await fixture.sharing.amendRequest(amend, options: try await world.options("tc-bureau")).needsSecurityOfficer)
      let v2 = try #require(try owned.stored("share_request", asked.id))
      // The node's version: central's history, then an amendment back to masked terms and the
      // steward's approval, written as if central's amendment had not reached it (its vector
      // lacks it), its terms stamped just before central's and the rest after. Alone it is what a
      // county steward may write; merged with central's, it is clear terms approved without the
      // officer, and a grant would follow.
      var mine = try Eduhub_Sharing_V1_AccessRequest(serializedBytes: v2.body)
      mine.terms = asked.terms
      var amended = Eduhub_Sharing_V1_RequestStep()
      amended.actor = "operator:county"
      amended.action = "amended"
      var approved = amended
      approved.action = "approved"
      mine.steps += [amended, approved]
      mine.state = .approved
      mine.needsSecurityOfficer = false
      mine.version += 2
      var vector = try ReplicationEncoding.decodeVector(v1.version)
      try vector.increment("county-511702")
      var stamps = try ReplicationEncoding.decodeStamps(v2.stamps)
      let theirs = try #require(stamps[2])
      let now = UInt64(world.identity.nowMs()) + 1000
      for number in [4, 5, 6, 7, 10] {
        stamps[number] = FieldStamp(time: HLCTimestamp(milliseconds: now, counter: 0), node: "county-511702", counter: vector["county-511702"])
      }
      stamps[2] = FieldStamp(
        time: HLCTimestamp(milliseconds: theirs.time.milliseconds - 1, counter: 0), node: "county-511702", counter: vector["county-511702"])
      var record = Eduhub_Sync_V1_SyncRecord()
      record.collection = "share_request"
      record.id = asked.id
      record.scope = v2.scope
      record.body = try mine.serializedData()
      record.version = Data(ReplicationEncoding.encode(vector))
      record.stamps = Data(ReplicationEncoding.encode(stamps))
      // Judged as merged: clear terms routed past the steward wait for the officer.
      try await owned.expectRefused([record], "its steps lead to pending-security, not approved")
      #expect(try fixture.world.identity.store.records.get("share_request", asked.id)?.body == v2.body)
      await owned.county.close()
    }
  }
}
