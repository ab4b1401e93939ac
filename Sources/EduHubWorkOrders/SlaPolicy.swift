import EduHubAPI

/// SLA targets per kind and priority, in working minutes, and the clocks of an order.
public struct SlaPolicy: Sendable {
  public var calendar: WorkCalendar
  /// (first response, resolution) by priority; safety hazards get half.
  public var targets: [Eduhub_Workorder_V1_Priority: (firstResponse: Int64, resolution: Int64)]
  /// Share of a target after which an order is flagged.
  public var warningShare = 0.8

  public init(calendar: WorkCalendar = .china2026) {
    self.calendar = calendar
    // A working day is 420 minutes.
    targets = [.p1: (60, 420), .p2: (240, 3 * 420), .p3: (420, 5 * 420), .p4: (2 * 420, 10 * 420)]
  }

  public func target(_ kind: Eduhub_Workorder_V1_OrderKind, _ priority: Eduhub_Workorder_V1_Priority) -> (firstResponse: Int64, resolution: Int64) {
    let base = targets[priority] ?? targets[.p3] ?? (420, 2100)
    return kind == .safetyHazard ? (max(1, base.firstResponse / 2), max(1, base.resolution / 2)) : base
  }

  /// The order's clocks at `now`.
  public func clocks(
    _ order: Eduhub_Workorder_V1_WorkOrder, _ derived: OrderMachine.Derived, now: Int64
  ) -> Eduhub_Workorder_V1_Sla {
    let target = target(order.kind, order.priority)
    var sla = Eduhub_Workorder_V1_Sla()
    sla.firstResponseTargetMinutes = target.firstResponse
    sla.resolutionTargetMinutes = target.resolution
    sla.firstResponseMinutes = calendar.workingMinutes(from: order.createdMs, to: derived.firstResponseMs ?? now)
    let used = resolutionUsed(derived, now: now)
    sla.resolutionMinutes = used
    sla.firstResponseBreached = sla.firstResponseMinutes > target.firstResponse
    sla.resolutionBreached = used > target.resolution
    sla.paused = derived.state == .waitingRequester
    let open = derived.running.last.map { $0.end == nil } ?? false
    sla.warning =
      (derived.firstResponseMs == nil && Double(sla.firstResponseMinutes) >= warningShare * Double(target.firstResponse)
        && !sla.firstResponseBreached)
      || (open && Double(used) >= warningShare * Double(target.resolution) && !sla.resolutionBreached)
    sla.resolutionDueMs = resolutionInstant(reaching: target.resolution, derived, now: now) ?? 0
    return sla
  }

  /// Working minutes the resolution clock has used by `now`, over every interval it ran.
  public func resolutionUsed(_ derived: OrderMachine.Derived, now: Int64) -> Int64 {
    derived.running.reduce(0) { $0 + calendar.workingMinutes(from: $1.start, to: $1.end ?? now) }
  }

  /// When the running resolution clock reaches `minutes` in all (nil when it does not run).
  public func resolutionInstant(reaching minutes: Int64, _ derived: OrderMachine.Derived, now: Int64) -> Int64? {
    guard let open = derived.running.last, open.end == nil else { return nil }
    let before = derived.running.dropLast().reduce(Int64(0)) { $0 + calendar.workingMinutes(from: $1.start, to: $1.end ?? now) }
    return calendar.adding(minutes: max(0, minutes - before), to: open.start)
  }
}
