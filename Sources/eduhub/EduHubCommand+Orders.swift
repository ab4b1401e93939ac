import ArgumentParser
import EduHubAPI
import EduHubIdentity
import EduHubNode
import EduHubWorkOrders
import Foundation

extension EduHubCommand {
  struct Orders: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Work orders on this node (as its operator): list, show one with its timeline, statistics.",
      subcommands: [List.self, Show.self, Stats.self, Sweep.self])

    /// An instant as China time (the region's), to the minute.
    static func chinaTime(_ ms: Int64) -> String {
      let formatter = DateFormatter()
      formatter.dateFormat = "yyyy-MM-dd HH:mm"
      formatter.timeZone = TimeZone(identifier: "Asia/Shanghai")
      return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    struct List: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Orders, newest first.")

      @OptionGroup var node: DataOptions

      @Option(help: "Only orders submitted in this org's subtree.")
      var org: String = ""

      @Option(help: "Only orders in this state, e.g. submitted, in-progress, resolved (repeatable).")
      var state: [String] = []

      @Option(help: "How many at most.")
      var limit: Int32 = 50

      func run() async throws {
        var request = Eduhub_Workorder_V1_ListOrdersRequest()
        request.orgCode = org
        request.page.pageSize = limit
        for name in state {
          let wanted = name.uppercased().replacingOccurrences(of: "-", with: "_")
          guard let found = Eduhub_Workorder_V1_OrderState.allCases.first(where: { OrderMachine.name($0) == wanted }) else {
            throw ValidationError("unknown state \(name)")
          }
          request.states.append(found)
        }
        let open = try node.open()
        let response = try await asOperator(open) { caller in try open.workOrders.listOrders(request, caller: caller) }
        print("\(response.total) orders")
        for order in response.orders {
          let sla = order.sla.resolutionBreached ? "  SLA breached" : order.sla.warning ? "  SLA warning" : ""
          print(
            "  \(order.id)  \(OrderMachine.name(order.state))  P\(order.priority.rawValue)  \(Orders.chinaTime(order.createdMs))  \(order.title)\(sla)"
          )
        }
      }
    }

    struct Show: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "One order and its timeline (times in Asia/Shanghai).")

      @OptionGroup var node: DataOptions

      @Argument(help: "The order's id.")
      var id: String

      func run() async throws {
        var request = Eduhub_Workorder_V1_GetOrderRequest()
        request.id = id
        let open = try node.open()
        let detail = try await asOperator(open) { caller in try open.workOrders.getOrder(request, caller: caller) }
        let order = detail.order
        print("\(order.id)  \(order.title)")
        print("  state \(OrderMachine.name(order.state)), version \(order.version), P\(order.priority.rawValue)")
        print("  submitted \(Orders.chinaTime(order.createdMs)) by \(order.submitter) at \(order.submittingOrgCode); service org \(order.serviceOrgCode)")
        if !order.assigneeOrgCode.isEmpty { print("  assigned to \(order.assigneeOrgCode)\(order.assignee.isEmpty ? "" : " / \(order.assignee)")") }
        print(
          "  SLA: first response \(order.sla.firstResponseMinutes)/\(order.sla.firstResponseTargetMinutes) min, resolution \(order.sla.resolutionMinutes)/\(order.sla.resolutionTargetMinutes) min (working time)\(order.sla.paused ? ", paused" : "")"
        )
        for event in detail.timeline {
          let mark = event.superseded ? "  [superseded: \(event.supersededReason)]" : ""
          print("  \(Orders.chinaTime(event.timeMs))  \(event.actor) @\(event.node): \(WorkOrderService.verbName(event.action))\(event.note.isEmpty ? "" : " — \(event.note)")\(mark)")
        }
      }
    }

    struct Sweep: AsyncParsableCommand {
      static let configuration = CommandConfiguration(
        abstract: "Run the system's sweep now (serve runs it every minute): auto-close, SLA warnings and breaches, sync conflicts to orders.")

      @OptionGroup var node: DataOptions

      func run() async throws {
        let open = try node.open()
        let report = try await asOperator(open) { _ in try open.workOrders.sweep() }
        print(
          "closed \(report.autoClosed), SLA warnings \(report.warnings), breaches \(report.breaches), conflict orders \(report.conflictOrders)")
      }
    }

    struct Stats: AsyncParsableCommand {
      static let configuration = CommandConfiguration(abstract: "Counts, working-time durations, SLA attainment, backlog.")

      @OptionGroup var node: DataOptions

      @Option(help: "Only orders submitted in this org's subtree.")
      var org: String = ""

      func run() async throws {
        var request = Eduhub_Workorder_V1_StatsRequest()
        request.orgCode = org
        let open = try node.open()
        let stats = try await asOperator(open) { caller in try open.workOrders.getStats(request, caller: caller) }
        func line(_ name: String, _ counts: [String: Int64]) {
          print("  \(name): " + counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        print("\(stats.total) orders")
        line("by state", stats.byState)
        line("by kind", stats.byKind)
        line("by priority", stats.byPriority)
        line("by county", stats.byOrg)
        line("open by age", stats.backlogByAge)
        print(
          String(
            format: "  first response: median %d, p90 %d working minutes (%d); met %.0f%%",
            stats.firstResponse.medianMinutes, stats.firstResponse.p90Minutes, stats.firstResponse.count,
            stats.firstResponseAttainment * 100))
        print(
          String(
            format: "  resolution: median %d, p90 %d working minutes (%d); met %.0f%%; reopened %.0f%%",
            stats.resolution.medianMinutes, stats.resolution.p90Minutes, stats.resolution.count,
            stats.resolutionAttainment * 100, stats.reopenRate * 100))
      }
    }
  }
}
