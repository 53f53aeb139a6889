import Foundation
import InventoryTestSupport
import Logging
import NIOSSL
import Testing

@testable import RedisClient

/// TLS to Redis (issue 19): a redis-server of this test's own that speaks only TLS (`TLSTestServers`); the client
/// verifies its certificate against the CA it is given and the server name, and refuses one it cannot verify.
@Suite("Redis over TLS", .serialized)
struct RedisTLSTests {
    static func client(port: Int, tls: TLSConfiguration, serverName: String? = nil) -> RedisClient {
        var logger = Logger(label: "redis-tls-test")
        logger.logLevel = .critical
        var configuration = RedisConfiguration(port: port, connections: 1, commandTimeoutMilliseconds: 3000)
        configuration.tls = tls
        configuration.tlsServerName = serverName
        return RedisClient(configuration: configuration, logger: logger)
    }

    @Test("commands over TLS with the server's CA and name; without that CA, or with another name, refused")
    func verifiedTLS() async throws {
        let server = try await TLSTestServers.startRedis()
        defer { server.stop() }
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(server.certificate))

        // The certificate names localhost (not 127.0.0.1, which the client connects to).
        let client = Self.client(port: server.port, tls: trusting, serverName: "localhost")
        #expect(try await client.command("SET", "tls-key", "over tls").text == "OK")
        #expect(try await client.command("GET", "tls-key").text == "over tls")
        await client.shutdown()

        // By address alone: the certificate does not carry 127.0.0.1.
        let byAddress = Self.client(port: server.port, tls: trusting)
        await #expect(throws: RedisError.self) { try await byAddress.command("PING") }
        await byAddress.shutdown()

        // The system's trust roots do not include this certificate: no command gets through.
        let doubting = Self.client(port: server.port, tls: .makeClientConfiguration())
        await #expect(throws: RedisError.self) { try await doubting.command("PING") }
        await doubting.shutdown()

        // Nor does a name the certificate does not carry.
        let misnamed = Self.client(port: server.port, tls: trusting, serverName: "redis.example")
        await #expect(throws: RedisError.self) { try await misnamed.command("PING") }
        await misnamed.shutdown()
    }
}
