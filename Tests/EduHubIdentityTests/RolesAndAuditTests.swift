import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubRPC
import EduHubStorage
import EduHubTestSupport
import GRDB
import Testing

@Suite("Roles on subtrees and the audit log")
struct RolesAndAuditTests {
  @Test("grant, list and revoke a role; the grantee's next call sees the change")
  func grantListRevoke() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let teacher = try await world.account("teacher1", org: IdentityWorld.school)
      let admin = try await world.options("principal")
      let teacherOptions = try await world.options("teacher1")
      var get = Eduhub_Identity_V1_GetPersonRequest()
      get.id = IdentityWorld.student
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: teacherOptions) }

      var grant = Eduhub_Identity_V1_GrantRoleRequest()
      grant.accountID = teacher
      grant.role = .teacher
      grant.orgCode = IdentityWorld.school
      let granted = try await world.client.grantRole(grant, options: admin)
      #expect(granted.orgPath.hasSuffix(IdentityWorld.school) && granted.permissions.contains("people.read"))
      await expectStatus(.alreadyExists) { try await world.client.grantRole(grant, options: admin) }
      #expect(try await world.client.getPerson(get, options: teacherOptions).id == IdentityWorld.student)

      var list = Eduhub_Identity_V1_ListRoleGrantsRequest()
      list.accountID = teacher
      #expect(try await world.client.listRoleGrants(list, options: teacherOptions).grants.map(\.id) == [granted.id])

      var revoke = Eduhub_Identity_V1_RevokeRoleRequest()
      revoke.grantID = granted.id
      _ = try await world.client.revokeRole(revoke, options: admin)
      await expectStatus(.permissionDenied) { try await world.client.getPerson(get, options: teacherOptions) }
    }
  }

  @Test("no escalation: a teacher cannot grant, a school admin cannot grant county admin or act on another school")
  func escalationDenied() async throws {
    try await withWorld { world in
      try await world.account("principal", role: .schoolAdmin, org: IdentityWorld.school)
      let teacher = try await world.account("teacher1", role: .teacher, org: IdentityWorld.school)
      var grant = Eduhub_Identity_V1_GrantRoleRequest()
      grant.accountID = teacher
      grant.role = .schoolAdmin
      grant.orgCode = IdentityWorld.school
      await expectStatus(.permissionDenied) { try await world.client.grantRole(grant, options: try await world.options("teacher1")) }
      let admin = try await world.options("principal")
      grant.role = .countyAdmin
      grant.orgCode = "511702"
      await expectStatus(.permissionDenied) { try await world.client.grantRole(grant, options: admin) }
      grant.role = .countyAdmin
      grant.orgCode = IdentityWorld.school
      let county = grant
      let message = await expectStatus(.permissionDenied) { try await world.client.grantRole(county, options: admin) }
      #expect(message.contains("org.write"))
      grant.role = .teacher
      grant.orgCode = IdentityWorld.otherSchool
      await expectStatus(.permissionDenied) { try await world.client.grantRole(grant, options: admin) }
      let denials = try world.auditEvents(action: "identity.GrantRole")
      #expect(denials.filter { $0.outcome == "denied" }.count == 4)
    }
  }

  @Test("auditors list events; others may not")
  func listAudit() async throws {
    try await withWorld { world in
      try await world.account("auditor1", role: .auditor)
      try await world.account("city", role: .cityAdmin)
      let city = try await world.options("city")
      await expectStatus(.permissionDenied) { try await world.client.listAuditEvents(options: city) }
      var request = Eduhub_Identity_V1_ListAuditEventsRequest()
      request.action = "identity.Login"
      request.limit = 1
      let options = try await world.options("auditor1")
      let first = try await world.client.listAuditEvents(request, options: options)
      #expect(first.events.count == 1 && first.nextAfterSequence == first.events[0].sequence)
      request.afterSequence = first.nextAfterSequence
      request.limit = 100
      let rest = try await world.client.listAuditEvents(request, options: options)
      #expect(rest.events.allSatisfy { $0.action == "identity.Login" && $0.sequence > first.events[0].sequence })
      #expect(rest.events.count >= 1)
      request.afterSequence = 0
      request.action = ""
      request.outcome = "denied"
      #expect(try await world.client.listAuditEvents(request, options: options).events.contains { $0.action == "identity.ListAuditEvents" })
    }
  }

  @Test("audit verify detects a changed entry and a removed entry")
  func chainTampering() async throws {
    try await withWorld { world in
      try await world.account("city", role: .cityAdmin)
      _ = try await world.login("city")
      _ = try await world.login("city")
      let intact = try world.node.audit.verify()
      #expect(intact.brokenAt == nil && intact.entries >= 4)

      try world.node.database.write { db in try db.execute(sql: "UPDATE audit_event SET detail = 'nothing to see' WHERE sequence = 2") }
      let changed = try world.node.audit.verify()
      #expect(changed.brokenAt == 2 && changed.reason?.contains("changed") == true)

      try world.node.database.write { db in try db.execute(sql: "DELETE FROM audit_event WHERE sequence = 2") }
      let removed = try world.node.audit.verify()
      #expect(removed.brokenAt == 3 && removed.reason?.contains("missing") == true)
    }
  }
}
