import ArgumentParser
import EduHubAPI
import EduHubCore
import EduHubNode
import EduHubRPC
import Foundation
import NIOCore

extension EduHubCommand {
  struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ask a node who it is and measure round trips.",
      discussion: "Prints the node's id, role, scope, version and uptime, then one line per ping."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The node's address, HOST:PORT or https://HOST:PORT.")
    var address: String

    @Option(help: "How many pings to send.")
    var count: Int = 3

    @Option(help: "Bytes of payload in each ping.")
    var payloadSize: Int = 100

    @Option(help: "Seconds to wait for each answer.")
    var timeout: Double = 5

    @Option(help: "PEM file of the CA that signed the node's certificate (implies TLS).")
    var tlsCA: String?

    @Option(help: "The name of an environment variable holding an access token (nodes with data need one).")
    var tokenEnv: String?

    func validate() throws {
      do { _ = try NodeAddress(parsing: address) } catch { throw ValidationError("\(error)") }
      guard count >= 0 else { throw ValidationError("--count must not be negative") }
      guard payloadSize >= 0, payloadSize <= 4 * 1024 * 1024 else {
        throw ValidationError("--payload-size must be from 0 to 4194304")
      }
      guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
      let target = try NodeAddress(parsing: address)
      let rpc = try connect(target, tlsCA: tlsCA)
      defer { Task { await rpc.close() } }
      let node = Eduhub_Node_V1_NodeService.Client(rpc)
      var metadata = RPCMetadata()
      if let tokenEnv {
        metadata.add("authorization", "Bearer " + (try environmentSecret(tokenEnv, "token")))
      }
      let options = CallOptions(timeout: .milliseconds(Int64(timeout * 1000)), metadata: metadata)
      do {
        let info = try await node.info(options: options)
        print(
          "node \(info.nodeID) (\(info.role)) scope \"\(info.scope)\" version \(info.version) up \(String(format: "%.1f", info.uptimeSeconds)) s"
        )
        var request = Eduhub_Node_V1_PingRequest()
        request.payload = Data(repeating: 0x2A, count: payloadSize)
        for index in 0..<count {
          let start = ContinuousClock.now
          let reply = try await node.ping(request, options: options)
          let elapsed = ContinuousClock.now - start
          guard reply.payload == request.payload else {
            throw FailureMessage("ping \(index + 1): the payload came back changed")
          }
          let micros = Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6
          print("ping \(index + 1): \(payloadSize) bytes, \(String(format: "%.3f", micros / 1000)) ms")
        }
      } catch let error as RPCError {
        throw FailureMessage("\(target): \(error.code): \(error.message)")
      }
    }
  }
}

