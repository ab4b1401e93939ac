import EduHubAPI
import EduHubSharing
import Testing

/// The access request workflow as a pure machine: every step in every state, replays of histories.
@Suite("Access request workflow")
struct RequestMachineTests {
  typealias M = RequestMachine
  static let states: [M.State] = [.unspecified, .pendingSteward, .pendingSecurity, .approved, .rejected, .changesRequested, .withdrawn]
  static let steward = M.Chain(steward: true, securityOfficer: false)
  static let officer = M.Chain(steward: true, securityOfficer: true)
  static let open = M.Chain(steward: false, securityOfficer: false)

  @Test("every step in every state: exactly the workflow's transitions, nothing after a final state")
  func transitions() {
    var allowed: [String: M.State] = [:]
    for chain in [Self.steward, Self.officer, Self.open] {
      for state in Self.states {
        for step in M.Step.allCases {
          if let next = M.transition(step, from: state, chain: chain) {
            allowed["\(chain.steward)\(chain.securityOfficer) \(state) \(step.rawValue)"] = next
          }
        }
      }
    }
    let expected: [String: M.State] = [
      // Submitting and amending go to the steward; unconditional terms are then granted by the system.
      "truefalse unspecified submitted": .pendingSteward, "truetrue unspecified submitted": .pendingSteward,
      "falsefalse unspecified submitted": .pendingSteward,
      "truefalse pendingSteward amended": .pendingSteward, "truetrue pendingSteward amended": .pendingSteward,
      "falsefalse pendingSteward amended": .pendingSteward,
      "truefalse changesRequested amended": .pendingSteward, "truetrue changesRequested amended": .pendingSteward,
      "falsefalse changesRequested amended": .pendingSteward,
      "falsefalse pendingSteward granted": .approved,
      // The steward approves, then the officer when minors' personal fields are asked for.
      "truefalse pendingSteward approved": .approved, "truetrue pendingSteward approved": .pendingSecurity,
      "falsefalse pendingSteward approved": .approved,
      "truefalse pendingSecurity security-approved": .approved, "truetrue pendingSecurity security-approved": .approved,
      "falsefalse pendingSecurity security-approved": .approved,
    ]
    for (key, state) in expected { #expect(allowed[key] == state, "\(key)") }
    // Rejecting, asking for changes and withdrawing from the pending states only.
    for chain in ["truefalse", "truetrue", "falsefalse"] {
      for state in ["pendingSteward", "pendingSecurity"] {
        #expect(allowed["\(chain) \(state) rejected"] == .rejected)
        #expect(allowed["\(chain) \(state) changes-requested"] == .changesRequested)
        #expect(allowed["\(chain) \(state) withdrawn"] == .withdrawn)
      }
      #expect(allowed["\(chain) changesRequested withdrawn"] == .withdrawn)
    }
    #expect(allowed.count == expected.count + 3 * 7)
    // Nothing leaves a final state: a grant is revoked, a request is not reopened.
    for state: M.State in [.approved, .rejected, .withdrawn] {
      #expect(!allowed.keys.contains { $0.contains(" \(state) ") })
    }
  }

  @Test("Decide: who decides in which state, and the step each decision records")
  func deciding() {
    #expect(M.decider(in: .pendingSteward) == .steward)
    #expect(M.decider(in: .pendingSecurity) == .securityOfficer)
    for state: M.State in [.unspecified, .approved, .rejected, .changesRequested, .withdrawn] { #expect(M.decider(in: state) == nil) }
    #expect(M.step(deciding: .approve, in: .pendingSteward) == .approved)
    #expect(M.step(deciding: .approve, in: .pendingSecurity) == .securityApproved)
    #expect(M.step(deciding: .reject, in: .pendingSecurity) == .rejected)
    #expect(M.step(deciding: .askChanges, in: .pendingSteward) == .changesRequested)
    #expect(M.step(deciding: .unspecified, in: .pendingSteward) == nil)
    #expect(M.taker(of: .granted) == .system && M.taker(of: .withdrawn) == .requester && M.taker(of: .securityApproved) == .securityOfficer)
  }

  @Test("a history replays to its state; a step out of turn, or no step at all, is named")
  func replays() {
    #expect(M.replay(["submitted", "approved", "security-approved"], from: .unspecified, chain: Self.officer) == .success(.approved))
    #expect(M.replay(["submitted", "granted"], from: .unspecified, chain: Self.open) == .success(.approved))
    #expect(
      M.replay(["submitted", "changes-requested", "amended", "approved"], from: .unspecified, chain: Self.steward) == .success(.approved))
    #expect(M.replay([], from: .rejected, chain: Self.steward) == .success(.rejected))
    // The system does not grant what a steward must approve.
    #expect(
      M.replay(["submitted", "granted"], from: .unspecified, chain: Self.steward)
        == .failure(.init(index: 1, action: "granted", state: .pendingSteward)))
    // A rejected request is not reopened by an amendment.
    #expect(M.replay(["amended"], from: .rejected, chain: Self.steward) == .failure(.init(index: 0, action: "amended", state: .rejected)))
    #expect(M.replay(["reopened"], from: .pendingSteward, chain: Self.steward) == .failure(.init(index: 0, action: "reopened", state: .pendingSteward)))
  }

  @Test("approvals count since the terms were last set: an amendment needs them again")
  func approvalsCover() {
    func steps(_ actions: String...) -> [Eduhub_Sharing_V1_RequestStep] {
      actions.map { action in
        var step = Eduhub_Sharing_V1_RequestStep()
        step.action = action
        return step
      }
    }
    #expect(M.approvalsCover(Self.officer, in: steps("submitted", "approved", "security-approved")))
    #expect(!M.approvalsCover(Self.officer, in: steps("submitted", "approved")))
    #expect(!M.approvalsCover(Self.steward, in: steps("submitted", "approved", "amended")))
    #expect(M.approvalsCover(Self.open, in: steps("submitted", "granted")))
    #expect(!M.approvalsCover(Self.steward, in: steps("submitted", "granted")))
  }
}
