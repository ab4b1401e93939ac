/// The privacy classification of one protobuf field, from its `(eduhub.common.v1.privacy)` option.
/// Generated tables (EduHubClassification.eduhub.swift) hold one per field.
public struct ClassifiedField: Sendable, Hashable {
  public let number: Int
  /// The field's proto name (`national_id`).
  public let name: String
  public let sensitivity: Eduhub_Common_V1_Sensitivity
  public let masking: Eduhub_Common_V1_MaskingKind

  public init(number: Int, name: String, sensitivity: Int, masking: Int) {
    self.number = number
    self.name = name
    self.sensitivity = Eduhub_Common_V1_Sensitivity(rawValue: sensitivity) ?? .unspecified
    self.masking = Eduhub_Common_V1_MaskingKind(rawValue: masking) ?? .unspecified
  }

  /// Whether the field carries a classification at all.
  public var isClassified: Bool { sensitivity != .unspecified }
}

/// A message whose personal fields are classified in its .proto; the plugin generates the table.
public protocol ClassifiedMessage {
  /// Its classified fields, in declaration order.
  static var classifiedFields: [ClassifiedField] { get }
}
