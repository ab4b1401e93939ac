import EduHubAPI

/// What the console calls things, in Chinese, and how it writes times (China Standard Time).
enum Labels {
  static func type(_ type: Eduhub_Catalog_V1_ResourceType) -> String {
    switch type {
    case .table: "库表"
    case .api: "接口"
    case .file: "文件"
    default: "未指定"
    }
  }

  static func sharing(_ sharing: Eduhub_Catalog_V1_SharingClass) -> String {
    switch sharing {
    case .unconditional: "无条件共享"
    case .conditional: "有条件共享"
    case .notShared: "不予共享"
    default: "未指定"
    }
  }

  /// A facet value as the catalog counts it (org codes, themes and systems are shown as they are).
  static func facetValue(_ filter: String, _ value: String) -> String {
    switch (filter, value) {
    case ("type", "table"): "库表"
    case ("type", "api"): "接口"
    case ("type", "file"): "文件"
    case ("sharing_class", "unconditional"): "无条件共享"
    case ("sharing_class", "conditional"): "有条件共享"
    case ("sharing_class", "notShared"): "不予共享"
    default: value
    }
  }

  static func facetName(_ filter: String) -> String {
    switch filter {
    case "org_code": "责任单位"
    case "publishing_system": "发布系统"
    case "type": "资源类型"
    case "theme": "主题"
    case "exchange_form": "交换方式"
    case "sharing_class": "共享属性"
    default: filter
    }
  }

  static func sensitivity(_ sensitivity: Eduhub_Common_V1_Sensitivity) -> String {
    switch sensitivity {
    case .public: "公开"
    case .internal: "内部"
    case .sensitive: "敏感"
    case .highlySensitive: "高度敏感"
    default: "未分级"
    }
  }

  static func masking(_ masking: Eduhub_Common_V1_MaskingKind) -> String {
    switch masking {
    case .none: "不脱敏"
    case .name: "姓名脱敏"
    case .phone: "电话脱敏"
    case .nationalID: "身份证号脱敏"
    case .address: "地址脱敏"
    case .birthDate: "出生日期脱敏"
    case .email: "邮箱脱敏"
    case .freeText: "文本脱敏"
    case .redact: "删除"
    default: "未指定"
    }
  }

  static func fieldType(_ type: Eduhub_Catalog_V1_FieldType) -> String {
    switch type {
    case .string: "文本"
    case .integer: "整数"
    case .decimal: "小数"
    case .date: "日期"
    case .timestamp: "时间"
    case .boolean: "布尔"
    default: "未指定"
    }
  }

  static func request(_ state: Eduhub_Sharing_V1_RequestState) -> String {
    switch state {
    case .pendingSteward: "待数据管理员审批"
    case .pendingSecurity: "待数据安全官审批"
    case .changesRequested: "需修改"
    case .approved: "已批准"
    case .rejected: "已驳回"
    case .withdrawn: "已撤回"
    default: "未知"
    }
  }

  static func grant(_ state: Eduhub_Sharing_V1_GrantState) -> String {
    switch state {
    case .active: "生效中"
    case .suspended: "已暂停"
    case .revoked: "已撤销"
    case .expired: "已过期"
    default: "未知"
    }
  }

  static func maskingLevel(_ level: Eduhub_Sharing_V1_MaskingLevel) -> String {
    switch level {
    case .clear: "明文"
    case .masked: "脱敏"
    case .deidentified: "去标识化"
    default: "未指定"
    }
  }

  /// A step of a request's history (`RequestMachine.Step`'s names).
  static func step(_ action: String) -> String {
    switch action {
    case "submitted": "提交申请"
    case "amended": "修改申请"
    case "granted": "自动授权"
    case "approved": "数据管理员批准"
    case "security-approved": "数据安全官批准"
    case "rejected": "驳回"
    case "changes-requested": "要求修改"
    case "withdrawn": "撤回"
    default: action
    }
  }

  static func order(_ state: Eduhub_Workorder_V1_OrderState) -> String {
    switch state {
    case .submitted: "已提交"
    case .accepted: "已受理"
    case .inProgress: "处理中"
    case .waitingRequester: "待提交人补充"
    case .resolved: "已解决"
    case .closed: "已关闭"
    case .rejected: "已驳回"
    case .cancelled: "已撤销"
    default: "未知"
    }
  }

  static func orderKind(_ kind: Eduhub_Workorder_V1_OrderKind) -> String {
    switch kind {
    case .dataRequest: "数据需求"
    case .dataQuality: "数据质量问题"
    case .dataCorrection: "数据纠错"
    case .accessProblem: "访问问题"
    case .safetyHazard: "安全隐患"
    case .syncConflict: "同步冲突"
    default: "未指定"
    }
  }

  static func priority(_ priority: Eduhub_Workorder_V1_Priority) -> String {
    switch priority {
    case .p1: "P1 紧急"
    case .p2: "P2 高"
    case .p3: "P3 中"
    case .p4: "P4 低"
    default: "未指定"
    }
  }

  static func action(_ action: Eduhub_Workorder_V1_Action) -> String {
    switch action {
    case .accept: "受理"
    case .reassign: "转派"
    case .escalate: "升级"
    case .start: "开始处理"
    case .askRequester: "请提交人补充"
    case .answer: "补充说明"
    case .resolve: "标记已解决"
    case .verifyClose: "确认关闭"
    case .reopen: "重新打开"
    case .reject: "驳回"
    case .cancel: "撤销"
    case .autoClose: "自动关闭"
    case .comment: "评论"
    case .slaWarning: "时限预警"
    case .slaBreach: "超时"
    default: "未知"
    }
  }

  static func personKind(_ kind: Eduhub_Identity_V1_PersonKind) -> String {
    switch kind {
    case .student: "学生"
    case .teacher: "教师"
    case .staff: "职工"
    case .guardian: "监护人"
    default: "未指定"
    }
  }

  /// `2026-12-07 15:04` in China Standard Time (UTC+8, no daylight saving); empty for 0.
  static func time(_ milliseconds: Int64) -> String {
    guard milliseconds > 0 else { return "" }
    let seconds = milliseconds / 1000 + 8 * 3600
    let days = seconds / 86_400
    let rest = seconds % 86_400
    let (year, month, day) = civil(days)
    func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
    return "\(year)-\(two(month))-\(two(day)) \(two(rest / 3600)):\(two(rest % 3600 / 60))"
  }

  /// The date of `time(_:)` only.
  static func day(_ milliseconds: Int64) -> String { String(time(milliseconds).prefix(10)) }

  /// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
  static func civil(_ days: Int64) -> (Int64, Int64, Int64) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }

  /// A duration in minutes as `3 天 4 小时` / `5 小时 20 分` / `12 分`.
  static func minutes(_ minutes: Int64) -> String {
    if minutes >= 1440 { return "\(minutes / 1440) 天 \(minutes % 1440 / 60) 小时" }
    if minutes >= 60 { return "\(minutes / 60) 小时 \(minutes % 60) 分" }
    return "\(max(0, minutes)) 分"
  }
}
