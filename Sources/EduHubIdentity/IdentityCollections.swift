import EduHubAPI
import EduHubReplication
import EduHubStorage
import SwiftProtobuf

/// The record-store collections Identity keeps, with the indexes its queries use.
///
/// Keys are read straight from the wire (field numbers of identity.proto): a sync applies hundreds
/// of thousands of records, and a full decode of each costs more than its insert.
public enum IdentityCollections {
  public static let org = RecordCollection<Eduhub_Identity_V1_Org>("org", indexes: ["parent"]) { body in
    let fields = try WireFields.strings(body, [4])
    return .init(keys: [("parent", fields[4] ?? "")])
  }

  /// People of an org are found by its path (the scope index), so no index by org code.
  public static let person = RecordCollection<Eduhub_Identity_V1_Person>(
    "person", indexes: ["national_id", "phone"], searchable: true
  ) { body in
    // 3 name, 6 national_id, 8 phone.
    let fields = try WireFields.strings(body, [3, 6, 8])
    var keys: [(index: String, key: String)] = []
    if let id = fields[6], !id.isEmpty { keys.append(("national_id", id)) }
    if let phone = fields[8], !phone.isEmpty { keys.append(("phone", phone)) }
    return .init(keys: keys, text: fields[3] ?? "")
  }

  public static let guardianship = RecordCollection<Eduhub_Identity_V1_GuardianBinding>(
    "guardianship", indexes: ["guardian", "child"]
  ) { body in
    let fields = try WireFields.strings(body, [1, 2])
    return .init(keys: [("guardian", fields[1] ?? ""), ("child", fields[2] ?? "")])
  }

  public static let account = RecordCollection<Eduhub_Identity_V1_AccountRecord>(
    "account", indexes: ["username", "phone", "person"]
  ) { body in
    // 2 username, 3 phone, 4 person_id.
    let fields = try WireFields.strings(body, [2, 3, 4])
    var keys: [(index: String, key: String)] = [("username", (fields[2] ?? "").lowercased())]
    if let phone = fields[3], !phone.isEmpty { keys.append(("phone", phone)) }
    if let person = fields[4], !person.isEmpty { keys.append(("person", person)) }
    return .init(keys: keys)
  }

  public static let session = RecordCollection<Eduhub_Identity_V1_SessionRecord>("session", indexes: ["account"]) { body in
    .init(keys: [("account", try WireFields.strings(body, [2])[2] ?? "")])
  }

  public static let roleGrant = RecordCollection<Eduhub_Identity_V1_RoleGrant>("role_grant", indexes: ["account"]) { body in
    .init(keys: [("account", try WireFields.strings(body, [2])[2] ?? "")])
  }

  public static let nodeKey = RecordCollection<Eduhub_Identity_V1_NodeKeyRecord>("node_key")

  public static var all: [CollectionDefinition] {
    [
      org.definition, person.definition, guardianship.definition, account.definition, session.definition,
      roleGrant.definition, nodeKey.definition,
    ]
  }
}
