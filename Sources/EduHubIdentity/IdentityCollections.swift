import EduHubAPI
import EduHubStorage
import SwiftProtobuf

/// The record-store collections Identity keeps, with the indexes its queries use.
public enum IdentityCollections {
  public static let org = "org"
  public static let person = "person"
  public static let guardianship = "guardianship"
  public static let account = "account"
  public static let session = "session"
  public static let roleGrant = "role_grant"
  public static let nodeKey = "node_key"

  public static var all: [CollectionDefinition] {
    [
      CollectionDefinition(name: org, indexes: ["parent"]) { body in
        let org = try Eduhub_Identity_V1_Org(serializedBytes: body)
        return .init(keys: [("parent", org.parentCode)])
      },
      CollectionDefinition(name: person, indexes: ["org", "national_id", "phone"], searchable: true) { body in
        let person = try Eduhub_Identity_V1_Person(serializedBytes: body)
        var keys: [(index: String, key: String)] = [("org", person.orgCode)]
        if !person.nationalID.isEmpty { keys.append(("national_id", person.nationalID)) }
        if !person.phone.isEmpty { keys.append(("phone", person.phone)) }
        return .init(keys: keys, text: person.name)
      },
      CollectionDefinition(name: guardianship, indexes: ["guardian", "child"]) { body in
        let binding = try Eduhub_Identity_V1_GuardianBinding(serializedBytes: body)
        return .init(keys: [("guardian", binding.guardianID), ("child", binding.childID)])
      },
      CollectionDefinition(name: account, indexes: ["username", "phone", "person"]) { body in
        let account = try Eduhub_Identity_V1_AccountRecord(serializedBytes: body)
        var keys: [(index: String, key: String)] = [("username", account.username.lowercased())]
        if !account.phone.isEmpty { keys.append(("phone", account.phone)) }
        if !account.personID.isEmpty { keys.append(("person", account.personID)) }
        return .init(keys: keys)
      },
      CollectionDefinition(name: session, indexes: ["account"]) { body in
        let session = try Eduhub_Identity_V1_SessionRecord(serializedBytes: body)
        return .init(keys: [("account", session.accountID)])
      },
      CollectionDefinition(name: roleGrant, indexes: ["account"]) { body in
        let grant = try Eduhub_Identity_V1_RoleGrant(serializedBytes: body)
        return .init(keys: [("account", grant.accountID)])
      },
      CollectionDefinition(name: nodeKey),
    ]
  }
}

extension StoredRecord {
  /// The body decoded as `M`.
  func decode<M: Message>(_ type: M.Type) throws -> M {
    try M(serializedBytes: body)
  }
}
