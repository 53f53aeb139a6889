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
