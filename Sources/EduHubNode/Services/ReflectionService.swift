import EduHubAPI
import EduHubRPC
import Foundation

/// `grpc.reflection.v1.ServerReflection` (and the older `v1alpha`, which has the same messages): lets
/// generic tools (grpcurl, grpcio's reflection client) list the services and fetch their descriptors.
public struct ReflectionService: Grpc_Reflection_V1_ServerReflection.Handler {
  private let serviceNames: [String]
  private let catalog: DescriptorCatalog

  /// - Parameter serviceNames: the services to list.
  public init(serviceNames: [String]) {
    self.serviceNames = serviceNames
    self.catalog = DescriptorCatalog.shared
  }

  /// The v1 methods and the same handler under the `v1alpha` name.
  public var methods: [RPCMethod] {
    let v1 = RPCMethod.bidirectionalStreaming(Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo) {
      (requests: RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>,
        response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext) in
      try await self.serverReflectionInfo(requests: requests, response: response, context: context)
    }
    let alpha = RPCMethod.bidirectionalStreaming(
      Grpc_Reflection_V1alpha_ServerReflection.Method.serverReflectionInfo
    ) {
      (requests: RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>,
        response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext) in
      try await self.serverReflectionInfo(requests: requests, response: response, context: context)
    }
    return [v1, alpha]
  }

  public func serverReflectionInfo(
    requests: RPCStream<Grpc_Reflection_V1_ServerReflectionRequest>,
    response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext
  ) async throws {
    var sent = Set<String>()
    for try await request in requests {
      var reply = Grpc_Reflection_V1_ServerReflectionResponse()
      reply.validHost = request.host
      reply.originalRequest = request
      switch request.messageRequest {
      case .listServices:
        var list = Grpc_Reflection_V1_ListServiceResponse()
        list.service = serviceNames.map { name in
          var service = Grpc_Reflection_V1_ServiceResponse()
          service.name = name
          return service
        }
        reply.listServicesResponse = list
      case .fileByFilename(let name):
        reply.messageResponse = files(catalog.file(named: name), what: "file \(name)", sent: &sent)
      case .fileContainingSymbol(let symbol):
        reply.messageResponse = files(catalog.file(definingSymbol: symbol), what: "symbol \(symbol)", sent: &sent)
      case .fileContainingExtension(let request):
        reply.messageResponse = notFound("extension \(request.extensionNumber) of \(request.containingType)")
      case .allExtensionNumbersOfType(let type):
        if catalog.file(definingSymbol: type) != nil {
          var numbers = Grpc_Reflection_V1_ExtensionNumberResponse()
          numbers.baseTypeName = type
          reply.allExtensionNumbersResponse = numbers
        } else {
          reply.messageResponse = notFound("type \(type)")
        }
      case nil:
        var error = Grpc_Reflection_V1_ErrorResponse()
        error.errorCode = Int32(RPCError.Code.invalidArgument.rawValue)
        error.errorMessage = "empty reflection request"
        reply.errorResponse = error
      }
      try await response.write(reply)
    }
  }

  private func files(
    _ file: DescriptorCatalog.File?, what: String, sent: inout Set<String>
  ) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
    guard let file else { return notFound(what) }
    var response = Grpc_Reflection_V1_FileDescriptorResponse()
    // The file first, then whatever it imports that this stream has not sent yet.
    for name in [file.name] + catalog.transitiveDependencies(of: file.name) {
      guard let item = catalog.file(named: name), sent.insert(name).inserted || name == file.name else { continue }
      response.fileDescriptorProto.append(item.bytes)
    }
    return .fileDescriptorResponse(response)
  }

  private func notFound(_ what: String) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
    var error = Grpc_Reflection_V1_ErrorResponse()
    error.errorCode = Int32(RPCError.Code.notFound.rawValue)
    error.errorMessage = "\(what) not found"
    return .errorResponse(error)
  }
}

/// The generated descriptor table, decoded once and indexed by file name and by symbol.
final class DescriptorCatalog: Sendable {
  struct File: Sendable {
    let name: String
    let dependencies: [String]
    let bytes: Data
  }

  static let shared = DescriptorCatalog(EduHubDescriptors.files)

  private let byName: [String: File]
  private let bySymbol: [String: String]

  init(_ files: [EduHubDescriptors.File]) {
    var byName: [String: File] = [:]
    var bySymbol: [String: String] = [:]
    for file in files {
      byName[file.name] = File(
        name: file.name, dependencies: file.dependencies, bytes: Data(base64Encoded: file.base64) ?? Data())
      for symbol in file.symbols { bySymbol[symbol] = file.name }
    }
    self.byName = byName
    self.bySymbol = bySymbol
  }

  func file(named name: String) -> File? { byName[name] }

  func file(definingSymbol symbol: String) -> File? {
    let symbol = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
    return bySymbol[symbol].flatMap { byName[$0] }
  }

  func transitiveDependencies(of name: String) -> [String] {
    var order: [String] = []
    var seen: Set<String> = [name]
    var queue = byName[name]?.dependencies ?? []
    while !queue.isEmpty {
      let next = queue.removeFirst()
      guard seen.insert(next).inserted else { continue }
      order.append(next)
      queue += byName[next]?.dependencies ?? []
    }
    return order
  }
}
