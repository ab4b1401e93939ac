import ArgumentParser
import EduHubAPI
import EduHubCore
import EduHubNode
import EduHubRPC
import Foundation

/// A client of the node at `target`, with TLS when the address says https or a CA is given.
func connect(_ target: NodeAddress, tlsCA: String?) throws -> RPCClient {
  var tls: ClientTLSConfiguration?
  if tlsCA != nil || target.secure {
    do { tls = try ClientTLSConfiguration(caFile: tlsCA) } catch let error as RPCError {
      throw FailureMessage(error.message)
    }
  }
  return RPCClient(host: target.host, port: target.port, tls: tls)
}

/// A secret from the environment variable `name` (never from the command line, where `ps` shows it).
func environmentSecret(_ name: String, _ what: String) throws -> String {
  guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
    throw FailureMessage("the environment variable \(name) holds no \(what)")
  }
  return value
}

extension EduHubCommand {
  struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Log in to a node and print an access token (for scripts: TOKEN=$(eduhub login …)).",
      discussion: "The password comes from an environment variable, never the command line.")

    @Argument(help: "The node's address, HOST:PORT or https://HOST:PORT.")
    var address: String

    @Option(help: "A username or phone number.")
    var login: String

    @Option(help: "The name of an environment variable holding the password.")
    var passwordEnv: String

    @Option(help: "PEM file of the CA that signed the node's certificate (implies TLS).")
    var tlsCA: String?

    func validate() throws {
      do { _ = try NodeAddress(parsing: address) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
      let password = try environmentSecret(passwordEnv, "password")
      let target = try NodeAddress(parsing: address)
      let rpc = try connect(target, tlsCA: tlsCA)
      var request = Eduhub_Identity_V1_LoginRequest()
      request.login = login
      request.password = password
      do {
        let pair = try await Eduhub_Identity_V1_IdentityService.Client(rpc).login(request, options: CallOptions(timeout: .seconds(30)))
        await rpc.close()
        print(pair.accessToken)
      } catch let error as RPCError {
        await rpc.close()
        throw FailureMessage("\(target): \(error.code): \(error.message)")
      }
    }
  }
}
