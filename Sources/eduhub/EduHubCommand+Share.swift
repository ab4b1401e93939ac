import ArgumentParser
import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubSharing
import Foundation

extension EduHubCommand {
  struct Share: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Access requests and grants on this node (as its operator): list, approve, reject, revoke.",
      subcommands: [Request.self, Requests.self, Approve.self, Reject.self, Grants.self, Revoke.self, Suspend.self, Resume.self])

    static func describe(_ request: Eduhub_Sharing_V1_AccessRequest) -> String {
      let terms = request.terms
      let fields = terms.fields.isEmpty ? "all fields" : terms.fields.joined(separator: ",")
      let chain = request.needsSecurityOfficer ? "steward + security officer" : "steward"
      return
        "\(request.id)  \(SharingService.stateName(request.state))  \(terms.resourceCode) for \(terms.consumer.id) (\(fields), \(level(terms.masking)); chain: \(chain))  \(terms.purpose)"
    }

    static func level(_ masking: Eduhub_Sharing_V1_MaskingLevel) -> String {
      switch masking {
      case .clear: "clear"
      case .masked: "masked"
      case .deidentified: "de-identified"
      case .unspecified, .UNRECOGNIZED: "masked"
      }
    }

    struct Request: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Ask for a resource on behalf of an org (the chain then runs as for any request).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The resource's code.")
      var resource: String

      @Option(help: "The consumer org's code (or an application's client id with --app).")
      var consumer: String

      @Flag(help: "The consumer is an application.")
      var app = false

      @Option(help: "What the data is for.")
      var purpose: String

      @Option(help: "Fields, comma-separated (default: all).")
      var fields = ""

      @Option(help: "How the consumer sees personal fields.")
      var masking: MaskingArgument = .masked

      func run() async throws {
        var request = Eduhub_Sharing_V1_RequestAccessRequest()
        request.terms.resourceCode = resource
        request.terms.consumer.kind = app ? .app : .org
        request.terms.consumer.id = consumer
        request.terms.purpose = purpose
        request.terms.fields = fields.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        request.terms.masking = masking.level
        let open = try node.open()
        let asked = try await asOperator(open) { caller in try open.sharing.requestAccess(request, caller: caller, peer: "console") }
        print(Share.describe(asked))
        if !asked.grantID.isEmpty { print("grant \(asked.grantID) is active (shared unconditionally)") }
      }
    }

    struct Requests: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Access requests waiting for a decision (or all of them).")

      @OptionGroup var node: DataOptions

      @Flag(help: "Every request, decided or not.")
      var all = false

      func run() async throws {
        var request = Eduhub_Sharing_V1_ListRequestsRequest()
        request.filter = all ? .stewarded : .toDecide
        request.page.pageSize = 500
        let open = try node.open()
        let response = try await asOperator(open) { caller in try open.sharing.listRequests(request, caller: caller) }
        print("\(response.requests.count) requests")
        for request in response.requests {
          print("  " + Share.describe(request))
          for step in request.steps {
            print("      \(Orders.chinaTime(step.timeMs))  \(step.action) by \(step.actor)\(step.reason.isEmpty ? "" : ": \(step.reason)")")
          }
        }
      }
    }

    /// Decides one step of a request as the operator.
    static func decide(_ node: DataOptions, _ id: String, _ decision: Eduhub_Sharing_V1_Decision, reason: String) async throws {
      var request = Eduhub_Sharing_V1_DecideRequest()
      request.requestID = id
      request.decision = decision
      request.reason = reason
      let open = try node.open()
      let decided = try await asOperator(open) { caller in try open.sharing.decide(request, caller: caller, peer: "console") }
      print(Share.describe(decided))
      if decided.state == .pendingSecurity { print("next: the city's data security officer approves (run approve again to act as them)") }
      if !decided.grantID.isEmpty { print("grant \(decided.grantID) is active") }
    }

    struct Approve: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Approve the current step of a request (steward, then security officer).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The request's id.")
      var id: String

      @Option(help: "A note for the requester.")
      var reason = ""

      func run() async throws { try await Share.decide(node, id, .approve, reason: reason) }
    }

    struct Reject: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Reject a request, with the reason the requester sees.")

      @OptionGroup var node: DataOptions

      @Argument(help: "The request's id.")
      var id: String

      @Option(help: "Why (required).")
      var reason: String

      func run() async throws { try await Share.decide(node, id, .reject, reason: reason) }
    }

    struct Grants: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Grants, newest first.")

      @OptionGroup var node: DataOptions

      @Option(help: "Only the grants of this resource.")
      var resource = ""

      func run() async throws {
        var request = Eduhub_Sharing_V1_ListGrantsRequest()
        request.resourceCode = resource
        request.page.pageSize = 500
        let open = try node.open()
        let response = try await asOperator(open) { caller in try open.sharing.listGrants(request, caller: caller) }
        print("\(response.grants.count) grants")
        for grant in response.grants {
          let terms = grant.terms
          print(
            "  \(grant.id)  \(Share.grantState(grant.state))  \(terms.resourceCode) for \(terms.consumer.id)  \(Share.level(terms.masking)), until \(Orders.chinaTime(terms.expiresMs)), \(terms.ratePerSecond)/s, \(terms.dailyQuota)/day"
          )
        }
      }
    }

    static func grantState(_ state: Eduhub_Sharing_V1_GrantState) -> String {
      switch state {
      case .active: "active"
      case .suspended: "suspended"
      case .revoked: "revoked"
      case .expired: "expired"
      case .unspecified, .UNRECOGNIZED: "unspecified"
      }
    }

    static func change(_ node: DataOptions, _ id: String, _ action: Eduhub_Sharing_V1_GrantAction, reason: String) async throws {
      var request = Eduhub_Sharing_V1_ChangeGrantRequest()
      request.grantID = id
      request.action = action
      request.reason = reason
      let open = try node.open()
      let grant = try await asOperator(open) { caller in try open.sharing.changeGrant(request, caller: caller, peer: "console") }
      print("grant \(grant.id) is \(grantState(grant.state)) (open streams end and calls stop at their next message)")
    }

    struct Revoke: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Revoke a grant for good.")

      @OptionGroup var node: DataOptions

      @Argument(help: "The grant's id.")
      var id: String

      @Option(help: "Why (required).")
      var reason: String

      func run() async throws { try await Share.change(node, id, .revoke, reason: reason) }
    }

    struct Suspend: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Suspend a grant (resume brings it back).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The grant's id.")
      var id: String

      @Option(help: "Why (required).")
      var reason: String

      func run() async throws { try await Share.change(node, id, .suspend, reason: reason) }
    }

    struct Resume: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Resume a suspended grant.")

      @OptionGroup var node: DataOptions

      @Argument(help: "The grant's id.")
      var id: String

      func run() async throws { try await Share.change(node, id, .resume, reason: "") }
    }
  }

  struct App: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "External applications on this node (as its operator): register, rotate the secret, disable, list.",
      subcommands: [Register.self, Rotate.self, Disable.self, List.self])

    static func printSecret(_ secret: Eduhub_Sharing_V1_AppSecret) {
      print("client id:     \(secret.app.clientID)")
      print("client secret: \(secret.clientSecret)")
      print("(the secret is shown only now; it is stored as a hash. Exchange it with SharingService/ExchangeToken.)")
    }

    struct Register: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Register an application; prints its client id and secret once.")

      @OptionGroup var node: DataOptions

      @Option(help: "The application's name.")
      var name: String

      @Option(help: "The org that registers it and answers for it.")
      var org: String

      @Option(help: "What it is for.")
      var description = ""

      func run() async throws {
        var request = Eduhub_Sharing_V1_RegisterAppRequest()
        request.name = name
        request.orgCode = org
        request.description_p = description
        let open = try node.open()
        App.printSecret(try await asOperator(open) { caller in try open.sharing.registerApp(request, caller: caller, peer: "console") })
      }
    }

    struct Rotate: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "A new secret (the old one and its tokens stop working).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The client id.")
      var id: String

      func run() async throws {
        var request = Eduhub_Sharing_V1_RotateAppSecretRequest()
        request.clientID = id
        let open = try node.open()
        App.printSecret(try await asOperator(open) { caller in try open.sharing.rotateAppSecret(request, caller: caller, peer: "console") })
      }
    }

    struct Disable: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Disable an application (or enable it again).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The client id.")
      var id: String

      @Flag(help: "Enable it again.")
      var enable = false

      func run() async throws {
        var request = Eduhub_Sharing_V1_SetAppDisabledRequest()
        request.clientID = id
        request.disabled = !enable
        let open = try node.open()
        let app = try await asOperator(open) { caller in try open.sharing.setAppDisabled(request, caller: caller, peer: "console") }
        print("\(app.clientID) is \(app.disabled ? "disabled" : "enabled")")
      }
    }

    struct List: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Registered applications.")

      @OptionGroup var node: DataOptions

      func run() async throws {
        let open = try node.open()
        let response = try await asOperator(open) { caller in try open.sharing.listApps(caller: caller) }
        print("\(response.apps.count) applications")
        for app in response.apps {
          print("  \(app.clientID)  \(app.name)  org \(app.orgCode)\(app.disabled ? "  disabled" : "")  registered \(Orders.chinaTime(app.createdMs))")
        }
      }
    }
  }
}
