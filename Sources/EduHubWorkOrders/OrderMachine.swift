import EduHubAPI

/// The lifecycle of a work order and the derivation of its state from its events.
///
/// Events are facts, written once by the node where they happened (and stamped with its hybrid
/// logical clock). Every node derives an order's state from all the events it holds, sorted by
/// (HLC, node): the same events give the same state, the same history and the same superseded
/// marks everywhere, whatever order they arrived in.
public enum OrderMachine {
  public typealias State = Eduhub_Workorder_V1_OrderState
  public typealias Action = Eduhub_Workorder_V1_Action

  /// The state `action` leads to from `state`; nil when it is not allowed there. Reassigning,
  /// escalating and comments keep the state.
  public static func transition(_ action: Action, from state: State) -> State? {
    switch (action, state) {
    case (.accept, .submitted): .accepted
    case (.reassign, .accepted), (.reassign, .inProgress), (.escalate, .submitted), (.escalate, .accepted),
      (.escalate, .inProgress):
      state
    case (.start, .accepted): .inProgress
    case (.askRequester, .inProgress): .waitingRequester
    case (.answer, .waitingRequester): .inProgress
    case (.resolve, .inProgress): .resolved
    case (.verifyClose, .resolved), (.autoClose, .resolved): .closed
    case (.reopen, .resolved), (.reopen, .closed): .inProgress
    case (.reject, .submitted), (.reject, .accepted): .rejected
    case (.cancel, .submitted), (.cancel, .accepted): .cancelled
    case (.comment, _), (.slaWarning, _), (.slaBreach, _): state
    default: nil
    }
  }

  /// The two SLA clocks, as the notes of SLA marks name them.
  public enum Clock: String, Sendable {
    case firstResponse = "first_response"
    case resolution
  }

  /// How `Derived.slaMarks` holds a recorded SLA warning or breach of `clock`.
  public static func slaMark(_ action: Action, _ clock: Clock) -> String { slaMark(action, note: clock.rawValue) }

  static func slaMark(_ action: Action, note: String) -> String { "\(action.rawValue)|\(note)" }

  /// Whether the SLA clocks run in `state` (they pause while waiting for the requester and stop
  /// once the order is resolved, closed, rejected or cancelled).
  static func clockRuns(_ state: State) -> Bool {
    state == .submitted || state == .accepted || state == .inProgress
  }

  /// The total order of events: HLC, then node, then id (two events of one node never share a stamp,
  /// the id only makes the order total for hostile input).
  public static func precedes(_ a: Eduhub_Workorder_V1_OrderEvent, _ b: Eduhub_Workorder_V1_OrderEvent) -> Bool {
    (a.hlc, a.node, a.id) < (b.hlc, b.node, b.id)
  }

  /// What the events make of an order.
  public struct Derived: Sendable {
    public var state: State = .submitted
    public var serviceOrg: String
    public var assigneeOrg = ""
    public var assignee = ""
    public var version: Int64 = 0
    public var reopenCount: Int32 = 0
    public var feedback = ""
    public var updatedMs: Int64
    /// Every event, in (HLC, node) order, superseded ones marked.
    public var timeline: [Eduhub_Workorder_V1_OrderEvent] = []
    /// When the first response came (accepted or rejected), if it has.
    public var firstResponseMs: Int64?
    /// Intervals in which the resolution clock ran, the last one open (`end` nil) if it runs now.
    public var running: [(start: Int64, end: Int64?)] = []
    /// When the order was last resolved, if it is resolved or closed.
    public var resolvedMs: Int64?
    /// SLA warnings and breaches recorded ("<action>|<clock>").
    public var slaMarks: Set<String> = []
  }

  /// Replays `events` (any order; duplicates by id ignored) over the order as submitted.
  /// - Parameter reopenWindowMs: how long after resolution the submitter may reopen.
  public static func derive(
    _ order: Eduhub_Workorder_V1_WorkOrder, events: [Eduhub_Workorder_V1_OrderEvent], reopenWindowMs: Int64
  ) -> Derived {
    var derived = Derived(serviceOrg: order.serviceOrgCode, updatedMs: order.createdMs)
    derived.running = [(order.createdMs, nil)]
    var seen = Set<String>()
    let sorted = events.filter { seen.insert($0.id).inserted }.sorted(by: precedes)
    for var event in sorted {
      let current = derived.state
      var reason = ""
      if event.orderID != order.id {
        reason = "the event belongs to another order"
      } else if event.action == .slaWarning || event.action == .slaBreach {
        // Marks of the system; two nodes may both write one: the first counts.
        let mark = slaMark(event.action, note: event.note)
        if derived.slaMarks.insert(mark).inserted {
          derived.updatedMs = max(derived.updatedMs, event.timeMs)
        } else {
          reason = "already recorded"
        }
      } else if let next = transition(event.action, from: current) {
        if event.action == .reopen, let resolved = derived.resolvedMs, event.timeMs - resolved > reopenWindowMs {
          reason = "the reopen period had passed"
        } else {
          apply(event, from: current, to: next, to: &derived)
        }
      } else {
        reason = "not valid in state \(name(current))"
      }
      if !reason.isEmpty {
        event.superseded = true
        event.supersededReason = reason
      } else {
        event.superseded = false
        event.supersededReason = ""
      }
      derived.timeline.append(event)
    }
    return derived
  }

  private static func apply(
    _ event: Eduhub_Workorder_V1_OrderEvent, from current: State, to next: State, to derived: inout Derived
  ) {
    if event.action != .comment { derived.version += 1 }
    derived.updatedMs = max(derived.updatedMs, event.timeMs)
    switch event.action {
    case .accept, .reassign:
      derived.assigneeOrg = event.assigneeOrgCode
      derived.assignee = event.assignee
    case .escalate:
      derived.serviceOrg = event.assigneeOrgCode
      derived.assigneeOrg = event.assigneeOrgCode
      derived.assignee = ""
    case .resolve:
      derived.feedback = event.note
      derived.resolvedMs = event.timeMs
    case .reopen:
      derived.reopenCount += 1
      derived.resolvedMs = nil
    default:
      break
    }
    if derived.firstResponseMs == nil, event.action == .accept || event.action == .reject {
      derived.firstResponseMs = event.timeMs
    }
    // The resolution clock: stop when leaving a running state, start when entering one.
    if clockRuns(current) != clockRuns(next) {
      if clockRuns(next) {
        derived.running.append((event.timeMs, nil))
      } else if let last = derived.running.indices.last {
        derived.running[last].end = event.timeMs
      }
    }
    derived.state = next
  }

  /// The state's name as a message shows it (`IN_PROGRESS`).
  public static func name(_ state: State) -> String {
    switch state {
    case .submitted: "SUBMITTED"
    case .accepted: "ACCEPTED"
    case .inProgress: "IN_PROGRESS"
    case .waitingRequester: "WAITING_REQUESTER"
    case .resolved: "RESOLVED"
    case .closed: "CLOSED"
    case .rejected: "REJECTED"
    case .cancelled: "CANCELLED"
    case .unspecified, .UNRECOGNIZED: "UNSPECIFIED"
    }
  }
}
