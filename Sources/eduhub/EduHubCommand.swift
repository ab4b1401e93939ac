import ArgumentParser
import EduHubNode
import Logging

/// The `eduhub` command: one program runs every node of the region and talks to them.
@main
struct EduHubCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eduhub",
    abstract: "EduHub: the data backbone of a regional education system.",
    discussion: """
      One program runs every node: the city's central node and the county and school edge nodes. \
      Nodes answer typed RPCs (gRPC over HTTP/2) for identity, the data catalog, sharing and work \
      orders. See README.md for a tour.
      """,
    version: EduHubVersion.current,
    subcommands: [
      Serve.self, Init.self, Seed.self, User.self, Grant.self, Node.self, Sync.self, Status.self, Catalog.self, Orders.self, Share.self,
      App.self, Audit.self, Backup.self, Restore.self,
      Login.self, Ping.self,
      Keygen.self, Rekey.self,
    ]
  )
}

/// Options every subcommand has.
struct GlobalOptions: ParsableArguments {
  @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
  var logLevel: Logger.Level = .info

  /// Sets up swift-log once with the chosen level, writing to standard error.
  func bootstrapLogging() {
    let level = logLevel
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
  }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
