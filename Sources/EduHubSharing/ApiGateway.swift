import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubRPC
import Foundation
import SwiftProtobuf

/// Shared APIs over HTTPS/JSON on the node's gRPC port: `POST /v1/apis/{code}` with a bearer token
/// and a JSON object of parameters, so a consumer needs nothing but an HTTP client. The same call
/// as `CallApi` (grant, rate limit, quota, masking, log); the answer is
/// `{"columns": [...], "rows": [{"column": value, ...}], "truncated": false, "suppressed_groups": 0}`,
/// errors `{"error": {"code": "PERMISSION_DENIED", "message": "..."}}` with the matching HTTP status.
///
/// Query parameters: `consumer` (the org to act for) and `test=true` (an online test). The body is
/// read as JSON whatever its declared content type (curl's `-d` declares a form).
public struct ApiGateway: HTTPHandler {
  let sharing: SharingService
  let authenticator: Authenticator
  static let prefix = "/v1/apis/"

  public init(sharing: SharingService, authenticator: Authenticator) {
    self.sharing = sharing
    self.authenticator = authenticator
  }

  /// A body over the limit is refused before the gateway sees it, in the gateway's JSON shape too.
  public func refused(status: Int, message: String, path: Substring) -> HTTPResponse {
    Self.error(RPCError(.resourceExhausted, message), status: status)
  }

  public func handle(_ request: HTTPRequest) async -> HTTPResponse {
    respond(request, quick: false) ?? Self.error(RPCError(.internalError, "the call was not answered"))
  }

  /// A point lookup (every key field bound), and any refusal made before the call, answered on the
  /// event loop like `CallApi`'s over gRPC; anything else goes to `handle`, as a task.
  public func handleInline(_ request: HTTPRequest) -> HTTPResponse? {
    respond(request, quick: true)
  }

  /// The answer, or nil when `quick` and the call is not a point lookup.
  func respond(_ request: HTTPRequest, quick: Bool) -> HTTPResponse? {
    let path = request.path
    guard path.hasPrefix(Self.prefix) else {
      return Self.error(RPCError(.notFound, "no such endpoint: shared APIs are POST /v1/apis/{code}"))
    }
    let code = String(path.dropFirst(Self.prefix.count))
    guard request.method == "POST" else {
      var response = Self.error(RPCError(.unimplemented, "shared APIs are called with POST"), status: 405)
      response.headers.append(("allow", "POST"))
      return response
    }
    do {
      guard let header = request.header("authorization"), header.hasPrefix("Bearer ") || header.hasPrefix("bearer ") else {
        throw RPCError(.unauthenticated, "send the access token as authorization: Bearer <token>")
      }
      let caller = try authenticator.caller(for: String(header.dropFirst(7)), peer: request.peer, method: Self.prefix)
      var call = Eduhub_Sharing_V1_CallApiRequest()
      call.apiCode = code
      call.parameters = try Self.parameters(request.body)
      let query = request.query
      call.consumerID = query["consumer"] ?? ""
      call.test = ["true", "1", "yes"].contains(query["test"]?.lowercased() ?? "")
      let encoded: [UInt8]
      if quick {
        guard let point = try sharing.pointLookupEncoded(call, caller: caller, peer: request.peer) else { return nil }
        encoded = point
      } else {
        encoded = try sharing.callApiEncoded(call, caller: caller, peer: request.peer)
      }
      let response = try Eduhub_Sharing_V1_CallApiResponse(serializedBytes: encoded)
      return HTTPResponse(status: 200, headers: [("content-type", "application/json; charset=utf-8")], body: ApiJSON.answer(response))
    } catch {
      return Self.error(RPCError.from(error))
    }
  }

  /// One member of the parameters object: strings as they are, numbers and booleans as written.
  struct Scalar: Decodable {
    let text: String?

    init(from decoder: any Swift.Decoder) throws {
      let container = try decoder.singleValueContainer()
      if container.decodeNil() {
        text = nil
      } else if let flag = try? container.decode(Bool.self) {
        text = flag ? "true" : "false"
      } else if let number = try? container.decode(Int64.self) {
        text = String(number)
      } else if let number = try? container.decode(Decimal.self) {
        text = "\(number)"
      } else {
        text = try container.decode(String.self)
      }
    }
  }

  /// A JSON object's members as parameter text.
  static func parameters(_ body: [UInt8]) throws -> [String: String] {
    guard !body.isEmpty else { return [:] }
    if let flat = ApiParameters.flat(body) { return flat }
    guard let object = try? JSONDecoder().decode([String: Scalar].self, from: Data(body)) else {
      throw RPCError(.invalidArgument, "the body must be a JSON object whose members are strings, numbers or booleans")
    }
    return object.compactMapValues(\.text)
  }

  /// The HTTP status of a gRPC status.
  static func status(_ code: RPCError.Code) -> Int {
    switch code {
    case .ok: 200
    case .invalidArgument, .failedPrecondition, .outOfRange: 400
    case .unauthenticated: 401
    case .permissionDenied: 403
    case .notFound: 404
    case .alreadyExists, .aborted: 409
    case .resourceExhausted: 429
    case .cancelled: 499
    case .unimplemented: 501
    case .unavailable: 503
    case .deadlineExceeded: 504
    default: 500
    }
  }

  static func error(_ error: RPCError, status: Int? = nil) -> HTTPResponse {
    let object: [String: Any] = ["error": ["code": error.code.description, "message": error.message]]
    var response = HTTPResponse(
      status: status ?? Self.status(error.code), headers: [("content-type", "application/json; charset=utf-8")],
      body: Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()))
    if let retry = error.trailers["retry-after"] { response.headers.append(("retry-after", retry)) }
    if error.code == .unauthenticated { response.headers.append(("www-authenticate", "Bearer")) }
    return response
  }
}
