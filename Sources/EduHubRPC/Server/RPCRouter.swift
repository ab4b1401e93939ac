#if canImport(Glibc)
  import Glibc
#endif

/// Finds a method by the raw bytes of a request's `:path`, without making a String.
///
/// Every path lives in one flat byte array; paths are bucketed by length, so a lookup is an array
/// index and a memcmp or two, with no retain per candidate.
struct RPCRouter: Sendable {
  private var bytes: [UInt8] = []
  /// For each path length, the (offset into `bytes`, index into `methods`) of the paths that long.
  private var byLength: [[(offset: Int, method: Int)]] = []
  private var methods: [RPCMethod] = []
  /// What hears each method's calls (parallel to `methods`).
  private var observers: [(any CallObserver)?] = []
  private let observer: (any ServerObserver)?
  private(set) var services: [String] = []

  init(services: [any RPCService], observer: (any ServerObserver)? = nil) {
    self.observer = observer
    for service in services {
      for method in service.methods { add(method) }
    }
  }

  /// Adds a method; a later method with the same path replaces an earlier one.
  mutating func add(_ method: RPCMethod) {
    if let existing = index(of: method.descriptor.path) {
      methods[existing] = method
      return
    }
    let path = Array(method.descriptor.path.utf8)
    if byLength.count <= path.count { byLength += Array(repeating: [], count: path.count + 1 - byLength.count) }
    byLength[path.count].append((bytes.count, methods.count))
    bytes += path
    methods.append(method)
    observers.append(observer?.observe(method.descriptor))
    if !services.contains(method.descriptor.service) { services.append(method.descriptor.service) }
  }

  /// A method and what hears its calls.
  struct Route {
    let method: RPCMethod
    let observer: (any CallObserver)?
  }

  /// The route of a request's `:path`, given as raw bytes.
  func route(_ pointer: UnsafePointer<UInt8>, _ count: Int) -> Route? {
    index(pointer, count).map { Route(method: methods[$0], observer: observers[$0]) }
  }

  func lookup(path: String) -> RPCMethod? {
    index(of: path).map { methods[$0] }
  }

  private func index(_ pointer: UnsafePointer<UInt8>, _ count: Int) -> Int? {
    guard count < byLength.count else { return nil }
    return bytes.withUnsafeBufferPointer { flat -> Int? in
      byLength.withUnsafeBufferPointer { buckets in
        for candidate in buckets[count] where memcmp(flat.baseAddress! + candidate.offset, pointer, count) == 0 {
          return candidate.method
        }
        return nil
      }
    }
  }

  private func index(of path: String) -> Int? {
    var path = path
    return path.withUTF8 { $0.isEmpty ? nil : index($0.baseAddress!, $0.count) }
  }
}
