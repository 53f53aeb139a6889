import Foundation
import InventoryTestSupport
import Logging
import Testing

@testable import MySQLClient

/// TLS to MariaDB (issue 19): a mariadbd of this test's own with a certificate made by openssl and a user that must
/// use TLS; the client verifies the certificate against the CA it is given, and refuses one it cannot verify.
@Suite("MariaDB over TLS", .serialized)
struct MySQLTLSTests {
    static func client(_ server: TLSTestServers.MariaDB, tls: MySQLConfiguration.TLS?) -> MySQLClient {
        var logger = Logger(label: "mysql-tls-test")
        logger.logLevel = .critical
        var configuration = MySQLConfiguration(
            host: "127.0.0.1", port: server.port, user: server.user, password: server.password, database: server.database,
            poolSize: 1
        )
        configuration.tls = tls
        return MySQLClient(configuration: configuration, logger: logger)
    }

    @Test("verified against its CA: queries run over TLS; against the default trust store: refused")
    func verifiedTLS() async throws {
        let server = try await TLSTestServers.startMariaDB()
        defer { server.stop() }

        let verified = Self.client(server, tls: .init(caFile: server.certificate))
        let status = try await verified.query("SHOW SESSION STATUS LIKE 'Ssl_version'")
        let version = status.rows.first?.string("Value") ?? ""
        #expect(version.hasPrefix("TLSv1"), "Ssl_version \(version)")
        #expect(try await verified.query("SELECT 41 + 1 AS answer").rows.first?.int64("answer") == 42)
        await verified.shutdown()

        // The library's default trust store does not hold this self-made certificate: the connect fails.
        let unverified = Self.client(server, tls: .init(caFile: nil))
        await #expect {
            _ = try await unverified.query("SELECT 1")
        } throws: { error in
            guard let error = error as? MySQLError, error.code == .connectionFailed else { return false }
            return ["certificate", "SSL", "TLS", "verif"].contains { error.message.contains($0) }
        }
        await unverified.shutdown()
    }
}
