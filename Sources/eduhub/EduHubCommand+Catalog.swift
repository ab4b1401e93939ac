import ArgumentParser
import CSV
import EduHubAPI
import EduHubCatalog
import EduHubCore
import EduHubIdentity
import EduHubNode
import EduHubRPC
import Foundation
import SwiftProtobuf
import Yams

extension EduHubCommand {
  struct Catalog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Publish and search the node's data catalog (as the node's operator).",
      subcommands: [Publish.self, Import.self, Search.self])

    struct Publish: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Publish a resource from a YAML or JSON definition (the proto3 JSON form of eduhub.catalog.v1.Resource).",
        discussion: """
          Field names as in the .proto or in lowerCamelCase; enums by name, e.g. type: RESOURCE_TYPE_TABLE. \
          A table resource names its dataset: dataset: {ingested: {key_fields: [school_code]}} or \
          dataset: {view: {collection: person, person_kind: student}}. See Tools/examples/.
          """)

      @OptionGroup var node: DataOptions

      @Argument(help: "The resource definition file.")
      var file: String

      func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else {
          throw FailureMessage("cannot read \(file)")
        }
        var request = Eduhub_Catalog_V1_PublishResourceRequest()
        request.resource = try Self.definition(data, file: file)
        let open = try node.open()
        let resource = try await asOperator(open) { caller in try open.catalog.publishResource(request, caller: caller, peer: "console") }
        print("published \(resource.code) (\(resource.name)) for \(resource.responsibleOrgPath)")
      }

      /// A resource from YAML or JSON (JSON is YAML too, but its own parser gives better errors).
      static func definition(_ data: Data, file: String) throws -> Eduhub_Catalog_V1_Resource {
        let text = String(decoding: data, as: UTF8.self)
        var json = data
        if !text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
          do {
            // No timestamp rule: dates stay the strings the proto expects.
            let resolver = Resolver.default.removing(.timestamp)
            guard let tree = try Yams.load(yaml: text, resolver), JSONSerialization.isValidJSONObject(tree) else {
              throw FailureMessage("\(file) is not a resource definition: expected a mapping")
            }
            json = try JSONSerialization.data(withJSONObject: tree)
          } catch let error as YamlError {
            throw FailureMessage("\(file) is not valid YAML: \(error)")
          }
        }
        do {
          return try Eduhub_Catalog_V1_Resource(jsonUTF8Data: json)
        } catch {
          throw FailureMessage("\(file) is not a resource definition: \(error)")
        }
      }
    }

    struct Import: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Stream the rows of a CSV file into an ingested table resource (upsert by its key).",
        discussion: """
          The header row names the columns (the resource's field names; the key fields are required). \
          Cells are parsed by each field's type; an empty cell is null. Rows that do not fit are reported \
          by line and not written; the others are.
          """)

      @OptionGroup var node: DataOptions

      @Argument(help: "The resource's code.")
      var resource: String

      @Argument(help: "The CSV file (UTF-8, comma-separated, header row first).")
      var file: String

      @Option(help: "Rows per message of the stream.")
      var batch: Int = 1000

      func run() async throws {
        guard (1...10_000).contains(batch) else { throw ValidationError("--batch must be 1 to 10000") }
        guard FileManager.default.isReadableFile(atPath: file), let stream = InputStream(fileAtPath: file) else {
          throw FailureMessage("cannot read \(file)")
        }
        let reader: CSVReader
        do {
          reader = try CSVReader(stream: stream, hasHeaderRow: true)
        } catch {
          throw FailureMessage("\(file) is not CSV: \(error)")
        }
        guard let header = reader.headerRow, !header.isEmpty else { throw FailureMessage("\(file) has no header row") }
        let total = Self.lines(file) - 1
        let progress = ProgressBar(label: "import", total: max(total, 1))
        let rows = CSVRows(reader: reader, code: resource, columns: header.map { $0.trimmingCharacters(in: .whitespaces) }, batch: batch) {
          progress.show($0)
        }
        let open = try node.open()
        let response = try await asOperator(open) { caller in try await open.catalog.ingestRows(rows, caller: caller, peer: "console") }
        progress.finish()
        if let error = rows.readError { throw FailureMessage("\(file): \(error)") }
        print(
          "\(response.received) rows read: \(response.upserted) upserted, \(response.deleted) deleted, \(response.rejected) rejected; \(resource) holds \(response.rowCount) rows"
        )
        for error in response.errors.prefix(20) {
          // Line numbers of the file: the header is line 1.
          print("  line \(error.row + 1)\(error.key.isEmpty ? "" : " (\(error.key))"): \(error.message)")
        }
        if response.errors.count > 20 { print("  … \(response.rejected - 20) more") }
        if response.rejected > 0 { throw ExitCode(2) }
      }

      /// Lines in the file (for the progress bar), counted without reading it into memory.
      static func lines(_ path: String) -> Int {
        guard let handle = FileHandle(forReadingAtPath: path) else { return 0 }
        defer { try? handle.close() }
        var count = 0
        while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty {
          count += chunk.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
        }
        return count
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
        let found = try await asOperator(open) { caller in try open.catalog.searchResources(request, caller: caller, peer: "console") }
        print("\(found.total) resources")
        for resource in found.resources {
          print("  \(resource.code)  \(resource.name)  [\(resource.theme), \(resource.publishingSystem), \(resource.responsibleOrgCode)]")
        }
      }
    }
  }
}
