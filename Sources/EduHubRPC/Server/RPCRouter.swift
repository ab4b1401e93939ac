/// Finds a method by the raw bytes of a request's `:path`, without making a String.
struct RPCRouter: Sendable {
  private struct Entry: Sendable {
    let path: [UInt8]
    let method: RPCMethod
  }

  /// Entries grouped by path length: a lookup is one array index and a few memcmp calls.
  private var byLength: [[Entry]] = []
  private(set) var services: [String] = []

  init(services: [any RPCService]) {
    for service in services {
      for method in service.methods { add(method) }
    }
  }

  /// Adds a method; a later method with the same path replaces an earlier one.
  mutating func add(_ method: RPCMethod) {
    let path = Array(method.descriptor.path.utf8)
    if byLength.count <= path.count { byLength += Array(repeating: [], count: path.count + 1 - byLength.count) }
    byLength[path.count].removeAll { $0.path == path }
    byLength[path.count].append(Entry(path: path, method: method))
    if !services.contains(method.descriptor.service) { services.append(method.descriptor.service) }
  }

  func lookup(_ pointer: UnsafePointer<UInt8>, _ count: Int) -> RPCMethod? {
    guard count < byLength.count else { return nil }
    for entry in byLength[count] {
      let equal = entry.path.withUnsafeBufferPointer { memcmp($0.baseAddress!, pointer, count) == 0 }
      if equal { return entry.method }
    }
    return nil
  }

  func lookup(path: String) -> RPCMethod? {
    var path = path
    return path.withUTF8 { lookup($0.baseAddress!, $0.count) }
  }
}

#if canImport(Glibc)
  import Glibc
#endif
