import EduHubAPI

/// The access request workflow as a value: which step may follow which state, where it leads, who
/// takes it. The RPCs (RequestAccess, Decide, AmendRequest, WithdrawRequest) and the check of a
/// request pushed from below both go through it, so a node's replica cannot hold a request in a
/// state its steps do not lead to.
///
/// ```
///             submitted / amended                 approved (no officer)
///   (new) ───────────────────────► PENDING_STEWARD ───────────────────────► APPROVED
///                 │ granted (system,     │ approved (officer needed)            ▲
///                 │  no steward needed)  ▼                                       │
///                 └──────────► APPROVED  PENDING_SECURITY ── security-approved ──┘
///   PENDING_* ── rejected ──► REJECTED      PENDING_* ── changes-requested ──► CHANGES_REQUESTED
///   CHANGES_REQUESTED ── amended ──► PENDING_STEWARD   PENDING_*, CHANGES_REQUESTED ── withdrawn ──► WITHDRAWN
/// ```
public enum RequestMachine {
  public typealias State = Eduhub_Sharing_V1_RequestState

  /// Who must approve a request's terms, from its terms and its resource.
  public struct Chain: Sendable, Hashable {
    /// The data steward of the resource's org (not needed for unconditional, impersonal terms).
    public var steward: Bool
    /// The city's data security officer as well (minors' personal fields).
    public var securityOfficer: Bool

    public init(steward: Bool, securityOfficer: Bool) {
      self.steward = steward
      self.securityOfficer = securityOfficer
    }
  }

  /// A step of a request's history, as its `action` records it.
  public enum Step: String, Sendable, CaseIterable {
    case submitted, amended, granted, approved
    case securityApproved = "security-approved"
    case rejected
    case changesRequested = "changes-requested"
    case withdrawn
  }

  /// Who takes a step.
  public enum Taker: Sendable, Hashable {
    /// The requester, or whoever acts for the consumer.
    case requester
    /// The data steward of the resource's org.
    case steward
    /// The city's data security officer.
    case securityOfficer
    /// The system, granting terms no one needs to approve.
    case system
  }

  public static func taker(of step: Step) -> Taker {
    switch step {
    case .submitted, .amended, .withdrawn: .requester
    case .approved, .rejected, .changesRequested: .steward
    case .securityApproved: .securityOfficer
    case .granted: .system
    }
  }

  /// Who decides a request in `state` (Decide); nil when there is nothing to decide.
  public static func decider(in state: State) -> Taker? {
    switch state {
    case .pendingSteward: .steward
    case .pendingSecurity: .securityOfficer
    default: nil
    }
  }

  /// The state `step` leads to from `state` under `chain`; nil when it may not be taken there.
  public static func transition(_ step: Step, from state: State, chain: Chain) -> State? {
    switch (step, state) {
    case (.submitted, .unspecified), (.amended, .changesRequested), (.amended, .pendingSteward):
      .pendingSteward
    case (.granted, .pendingSteward):
      chain.steward ? nil : .approved
    case (.approved, .pendingSteward):
      chain.securityOfficer ? .pendingSecurity : .approved
    case (.securityApproved, .pendingSecurity):
      .approved
    case (.rejected, .pendingSteward), (.rejected, .pendingSecurity):
      .rejected
    case (.changesRequested, .pendingSteward), (.changesRequested, .pendingSecurity):
      .changesRequested
    case (.withdrawn, .pendingSteward), (.withdrawn, .pendingSecurity), (.withdrawn, .changesRequested):
      .withdrawn
    default:
      nil
    }
  }

  /// The step Decide records for `decision` in `state`.
  public static func step(deciding decision: Eduhub_Sharing_V1_Decision, in state: State) -> Step? {
    switch decision {
    case .approve: state == .pendingSecurity ? .securityApproved : .approved
    case .reject: .rejected
    case .askChanges: .changesRequested
    default: nil
    }
  }

  /// Where `steps` lead from `state`, or the index of the first that may not be taken (or is not a
  /// step at all).
  public static func replay(_ steps: some Sequence<String>, from state: State, chain: Chain) -> Result<State, ReplayError> {
    var state = state
    for (index, action) in steps.enumerated() {
      guard let step = Step(rawValue: action), let next = transition(step, from: state, chain: chain) else {
        return .failure(ReplayError(index: index, action: action, state: state))
      }
      state = next
    }
    return .success(state)
  }

  /// A step that cannot follow the state before it.
  public struct ReplayError: Error, Sendable, Hashable {
    public var index: Int
    public var action: String
    public var state: State

    public init(index: Int, action: String, state: State) {
      self.index = index
      self.action = action
      self.state = state
    }
  }

  /// Whether the approvals `steps` hold since the terms were last set (submitted or amended) cover
  /// `chain`: what an approved request, and every use of its grant, rests on.
  public static func approvalsCover(_ chain: Chain, in steps: [Eduhub_Sharing_V1_RequestStep]) -> Bool {
    let since = steps.lastIndex { $0.action == Step.submitted.rawValue || $0.action == Step.amended.rawValue } ?? -1
    let actions = Set(steps.dropFirst(since + 1).compactMap { Step(rawValue: $0.action) })
    return chain.steward
      ? actions.contains(.approved) && (!chain.securityOfficer || actions.contains(.securityApproved))
      : actions.contains(.granted) || actions.contains(.approved)
  }
}
