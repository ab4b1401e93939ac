import EduHubNode
import Testing

@Suite("Addresses given on the command line")
struct NodeAddressTests {
  @Test("valid forms", arguments: [
    ("127.0.0.1:50051", "127.0.0.1", 50051, false), ("localhost:1", "localhost", 1, false),
    ("[::1]:443", "::1", 443, false), ("https://node.dz.edu.cn:8443", "node.dz.edu.cn", 8443, true),
    ("http://10.0.0.2:0/", "10.0.0.2", 0, false),
  ])
  func valid(text: String, host: String, port: Int, secure: Bool) throws {
    let address = try NodeAddress(parsing: text)
    #expect(address.host == host)
    #expect(address.port == port)
    #expect(address.secure == secure)
  }

  @Test("invalid forms name what is wrong", arguments: [
    ("nonsense", "expected HOST:PORT"), (":50051", "the host is empty"), ("host:99999", "the port must be"),
    ("host:abc", "the port must be"), ("[::1:5", "missing ]"), ("bad host:1", "characters"),
  ])
  func invalid(text: String, reason: String) {
    do {
      _ = try NodeAddress(parsing: text)
      Issue.record("\(text) was accepted")
    } catch {
      #expect(error.description.contains(reason))
    }
  }
}
