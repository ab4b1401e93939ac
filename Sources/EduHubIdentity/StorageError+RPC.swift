import EduHubRPC
import EduHubStorage

/// What a storage failure is to a caller: damage is DATA_LOSS, anything else INTERNAL with no
/// detail (SQLite's text stays in the node's log).
extension StorageError: RPCErrorConvertible {
  public var rpcError: RPCError {
    switch code {
    case .corrupted: RPCError(.dataLoss, "the database is damaged: \(message)")
    case .unavailable: RPCError(.unavailable, message)
    default: RPCError(.internalError, "storage failed")
    }
  }
}
