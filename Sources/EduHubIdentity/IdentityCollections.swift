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
      // Keys are read straight from the wire (field numbers of identity.proto): a sync applies
      // hundreds of thousands of records, and a full decode of each costs more than its insert.
      CollectionDefinition(name: org, indexes: ["parent"]) { body in
        let fields = try WireFields.strings(body, [4])
        return .init(keys: [("parent", fields[4] ?? "")])
      },
      // People of an org are found by its path (the scope index), so no index by org code.
      CollectionDefinition(name: person, indexes: ["national_id", "phone"], searchable: true) { body in
        // 3 name, 6 national_id, 8 phone.
        let fields = try WireFields.strings(body, [3, 6, 8])
        var keys: [(index: String, key: String)] = []
        if let id = fields[6], !id.isEmpty { keys.append(("national_id", id)) }
        if let phone = fields[8], !phone.isEmpty { keys.append(("phone", phone)) }
        return .init(keys: keys, text: fields[3] ?? "")
      },
      CollectionDefinition(name: guardianship, indexes: ["guardian", "child"]) { body in
        let fields = try WireFields.strings(body, [1, 2])
        return .init(keys: [("guardian", fields[1] ?? ""), ("child", fields[2] ?? "")])
      },
      CollectionDefinition(name: account, indexes: ["username", "phone", "person"]) { body in
        // 2 username, 3 phone, 4 person_id.
        let fields = try WireFields.strings(body, [2, 3, 4])
        var keys: [(index: String, key: String)] = [("username", (fields[2] ?? "").lowercased())]
        if let phone = fields[3], !phone.isEmpty { keys.append(("phone", phone)) }
        if let person = fields[4], !person.isEmpty { keys.append(("person", person)) }
        return .init(keys: keys)
      },
      CollectionDefinition(name: session, indexes: ["account"]) { body in
        .init(keys: [("account", try WireFields.strings(body, [2])[2] ?? "")])
      },
      CollectionDefinition(name: roleGrant, indexes: ["account"]) { body in
        .init(keys: [("account", try WireFields.strings(body, [2])[2] ?? "")])
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
