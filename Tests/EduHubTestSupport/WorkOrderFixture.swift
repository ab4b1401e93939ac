import EduHubAPI

/// Work order requests the suites share.
package enum WorkOrderFixture {
  package static func submission(_ title: String = "学籍数据缺失", kind: Eduhub_Workorder_V1_OrderKind = .dataQuality) -> Eduhub_Workorder_V1_SubmitRequest {
    var request = Eduhub_Workorder_V1_SubmitRequest()
    request.order.kind = kind
    request.order.title = title
    request.order.description_p = "三年级二班有 3 名学生缺少身份证号"
    request.order.priority = .p2
    request.order.resourceCode = "dz.student.basic"
    return request
  }

  package static func act(
    _ id: String, _ action: Eduhub_Workorder_V1_Action, note: String = "", version: Int64 = 0, assignee: String = "",
    org: String = ""
  ) -> Eduhub_Workorder_V1_ActRequest {
    var request = Eduhub_Workorder_V1_ActRequest()
    request.orderID = id
    request.action = action
    request.note = note
    request.expectedVersion = version
    request.assignee = assignee
    request.assigneeOrgCode = org
    return request
  }
}
