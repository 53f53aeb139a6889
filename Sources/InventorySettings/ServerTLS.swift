import NIOSSL

extension ServiceConfiguration {
    /// The HTTPS configuration of `tlsCertificateFile` and `tlsKeyFile`, nil for plain HTTP; throws naming the
    /// variable whose file cannot be read or parsed.
    public func serverTLS() throws -> TLSConfiguration? {
        guard let certificateFile = tlsCertificateFile, let keyFile = tlsKeyFile else { return nil }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw ConfigurationError(description: "INVENTORY_TLS_CERT_FILE=\(certificateFile): not a readable PEM certificate (\(error))")
        }
        guard !chain.isEmpty else {
            throw ConfigurationError(description: "INVENTORY_TLS_CERT_FILE=\(certificateFile): no certificate in the file")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ConfigurationError(description: "INVENTORY_TLS_KEY_FILE=\(keyFile): not a readable PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }
}

extension ServiceConfiguration {
    /// A client TLS configuration with full verification: against the CA certificates of `caFile` (PEM), or the
    /// system's trust roots when it is not set; throws naming `variable` when the file cannot be used.
    static func clientTLS(caFile: String?, variable: String) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        guard let caFile, !caFile.isEmpty else { return configuration }
        do {
            let roots = try NIOSSLCertificate.fromPEMFile(caFile)
            guard !roots.isEmpty else { throw ConfigurationError(description: "no certificate in the file") }
            configuration.trustRoots = .certificates(roots)
        } catch {
            throw ConfigurationError(description: "\(variable)=\(caFile): not a readable PEM CA certificate (\(error))")
        }
        return configuration
    }
}
