import ArgumentParser
import EduHubAPI
import EduHubCatalog
import EduHubIdentity
import EduHubNode
import EduHubRPC
import Foundation
import SwiftProtobuf

extension EduHubCommand {
  struct Catalog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Publish and search the node's data catalog (as the node's operator).",
      subcommands: [Publish.self, Search.self])

    struct Publish: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Publish a resource from a JSON definition (the proto3 JSON form of eduhub.catalog.v1.Resource).",
        discussion: "Field names as in the .proto or in lowerCamelCase; enums by name, e.g. \"type\": \"RESOURCE_TYPE_TABLE\".")

      @OptionGroup var node: DataOptions

      @Argument(help: "The resource definition file.")
      var file: String

      func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else {
          throw FailureMessage(text: "cannot read \(file)")
        }
        var request = Eduhub_Catalog_V1_PublishResourceRequest()
        do {
          request.resource = try Eduhub_Catalog_V1_Resource(jsonUTF8Data: data)
        } catch {
          throw FailureMessage(text: "\(file) is not a resource definition: \(error)")
        }
        let open = try node.open()
        let resource = try await asOperator(open) { caller in try open.catalog.publish(request, caller: caller, peer: "console") }
        print("published \(resource.code) (\(resource.name)) for \(resource.responsibleOrgPath)")
      }
    }

    struct Search: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Search the catalog (Chinese terms of one or two characters work).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The words to look for.")
      var text: String

      func run() async throws {
        var request = Eduhub_Catalog_V1_SearchResourcesRequest()
        request.query = text
        request.page.pageSize = 50
        let open = try node.open()
        let found = try await asOperator(open) { caller in try open.catalog.search(request, caller: caller, peer: "console") }
        print("\(found.total) resources")
        for resource in found.resources {
          print("  \(resource.code)  \(resource.name)  [\(resource.theme), \(resource.publishingSystem), \(resource.responsibleOrgCode)]")
        }
      }
    }
  }
}
