import ArgumentParser
import EduHubCore
import EduHubCrypto
import EduHubStorage
import Foundation

/// Where a command takes a database key from: a key file, or a passphrase in an environment
/// variable (never on the command line, where `ps` would show it).
struct KeyOptions: ParsableArguments {
  @Option(help: "A 32-byte key file (mode 0600).")
  var keyFile: String?

  @Option(help: "The name of an environment variable holding the passphrase.")
  var passphraseEnv: String?

  func source() throws -> DatabaseKeySource {
    switch (keyFile, passphraseEnv) {
    case let (file?, nil):
      return .keyFile(file)
    case let (nil, variable?):
      return .passphrase(try environmentSecret(variable, "passphrase"))
    default:
      throw FailureMessage("give exactly one of --key-file and --passphrase-env")
    }
  }
}

extension EduHubCommand {
  struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create a new random database key file (mode 0600).")

    @Argument(help: "The key file to create; it must not exist.")
    var path: String

    func run() throws {
      do {
        try KeyFile.create(at: path, key: AEAD.makeKey())
      } catch {
        throw FailureMessage(error.message)
      }
      print("created key file \(path)")
    }
  }

  struct Rekey: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Re-encrypt a node's database under a new key, keeping every row.",
      discussion: """
        Copies every page into a new file encrypted with the new key, verifies it, then moves it \
        over the old one. Stop the node first. Passphrases come from environment variables.
        """)

    @Argument(help: "The database file.")
    var database: String

    @OptionGroup(title: "Current key") var current: KeyOptions

    @Option(help: "The new key file (see eduhub keygen).")
    var newKeyFile: String?

    @Option(help: "The name of an environment variable holding the new passphrase.")
    var newPassphraseEnv: String?

    func run() throws {
      let old = try current.source()
      let new = try KeyOptions(keyFile: newKeyFile, passphraseEnv: newPassphraseEnv).source()
      do {
        try EncryptedDatabase.rekey(path: database, from: old, to: new)
      } catch let error as StorageError {
        throw FailureMessage(error.message)
      }
      print("rekeyed \(database)")
    }
  }
}

extension KeyOptions {
  init(keyFile: String?, passphraseEnv: String?) {
    self.init()
    self.keyFile = keyFile
    self.passphraseEnv = passphraseEnv
  }
}
