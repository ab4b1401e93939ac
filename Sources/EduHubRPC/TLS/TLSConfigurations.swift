import NIOSSL

/// TLS for a server: a PEM certificate chain and its private key, ALPN `h2`.
public struct ServerTLSConfiguration: Sendable {
  let context: NIOSSLContext

  /// Loads the certificate chain and key.
  /// - Throws: ``RPCError`` with a one-line reason when a file is missing or unusable.
  public init(certificateChainFile: String, privateKeyFile: String) throws {
    let chain: [NIOSSLCertificate]
    do {
      chain = try NIOSSLCertificate.fromPEMFile(certificateChainFile)
    } catch {
      throw RPCError(.invalidArgument, "cannot read certificate \(certificateChainFile): \(ErrorText.describe(error))")
    }
    guard !chain.isEmpty else {
      throw RPCError(.invalidArgument, "no certificate in \(certificateChainFile)")
    }
    let key: NIOSSLPrivateKey
    do {
      key = try NIOSSLPrivateKey(file: privateKeyFile, format: .pem)
    } catch {
      throw RPCError(.invalidArgument, "cannot read private key \(privateKeyFile): \(ErrorText.describe(error))")
    }
    var configuration = TLSConfiguration.makeServerConfiguration(
      certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    configuration.minimumTLSVersion = .tlsv12
    // h2 first (gRPC and HTTP/2 clients); http/1.1 for plain HTTPS clients of the JSON endpoints.
    configuration.applicationProtocols = ["h2", "http/1.1"]
    do {
      context = try NIOSSLContext(configuration: configuration)
    } catch {
      throw RPCError(.invalidArgument, "certificate \(certificateChainFile) and key \(privateKeyFile) do not fit together: \(error)")
    }
  }
}

/// TLS for a client: which certificate authorities to trust and the name to verify.
public struct ClientTLSConfiguration: Sendable {
  let context: NIOSSLContext
  let serverHostname: String?

  /// Trusts the CA certificates in `caFile` (PEM), or the system's roots when nil.
  /// - Parameter serverHostname: the name the server's certificate must carry; defaults to the host
  ///   the client connects to.
  public init(caFile: String? = nil, serverHostname: String? = nil) throws {
    var configuration = TLSConfiguration.makeClientConfiguration()
    configuration.minimumTLSVersion = .tlsv12
    configuration.applicationProtocols = ["h2"]
    if let caFile {
      do {
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
      } catch {
        throw RPCError(.invalidArgument, "cannot read CA file \(caFile): \(ErrorText.describe(error))")
      }
    }
    do {
      context = try NIOSSLContext(configuration: configuration)
    } catch {
      throw RPCError(.invalidArgument, "cannot set up TLS: \(error)")
    }
    self.serverHostname = serverHostname
  }
}
