import Foundation
import HTTPTypes
import HummingbirdTesting
import Inventory
import InventoryAPI
import InventorySettings
import InventoryTestSupport
import NIOCore
import NIOSSL
import Testing

/// HTTPS for clients (issue 19): `inventoryd serve` with a certificate and key answers over TLS to a client that
/// trusts the certificate, and a client that does not is refused.
@Suite("HTTPS")
struct HTTPSTests {
    @Test("inventoryd serve over HTTPS: a client trusting the certificate reserves; one that does not is refused")
    func servesHTTPS() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("inventoryd-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let made = try TLSTestServers.makeCertificate(in: directory, names: "DNS:localhost,IP:127.0.0.1")

        try await TestStores.with { stores in try await Self.exercise(stores, binary: binary, made: made) }
    }

    static func exercise(_ stores: TestStores, binary: String, made: (certificate: String, key: String)) async throws {
        do {
            var environment = stores.serviceEnvironment()
            environment["INVENTORY_TLS_CERT_FILE"] = made.certificate
            environment["INVENTORY_TLS_KEY_FILE"] = made.key
            environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
            environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
            let server = try ServeProcess.launch(binary: binary, environment: environment)
            defer {
                server.killIfRunning()
                server.removeLog()
            }
            var trusting = TLSConfiguration.makeClientConfiguration()
            trusting.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(made.certificate))
            func trustingClient() -> TestClient {
                let client = TestClient(
                    host: "127.0.0.1", port: server.port,
                    configuration: .init(tlsConfiguration: trusting, timeout: .seconds(5), serverName: "localhost")
                )
                client.connect()
                return client
            }
            // Serving once a TLS client gets an answer (bounded; a new client per try, as the port opens).
            try await waitFor("an answer over TLS; output:\n\(server.output())", within: .seconds(15), every: .milliseconds(50)) {
                guard server.process.isRunning else { return true }
                let probe = trustingClient()
                let status = (try? await probe.get("/healthz"))?.status
                try? await probe.shutdown()
                return status == .ok
            }
            #expect(server.process.isRunning, "inventoryd exited; output:\n\(server.output())")
            let client = trustingClient()
            let json: HTTPFields = [.contentType: "application/json"]
            #expect(try await client.put("/v1/stock/\(stores.bizId)/1", headers: json, body: ByteBuffer(string: #"{"stock": 4}"#)).status == .ok)
            let reserve = #"{"orderId": "\#(stores.bizId)-t", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#
            #expect(try await client.post("/v1/reservations", headers: json, body: ByteBuffer(string: reserve)).status == .created)
            try await client.shutdown()

            // A client with the system's trust roots (not this certificate) does not get through the handshake.
            let doubting = TestClient(
                host: "127.0.0.1", port: server.port,
                configuration: .init(tlsConfiguration: .makeClientConfiguration(), timeout: .seconds(5), serverName: "localhost")
            )
            doubting.connect()
            await #expect(throws: (any Error).self) { _ = try await doubting.get("/healthz") }
            try? await doubting.shutdown()

            // Plain HTTP to the TLS port gets no HTTP answer.
            let plain = TestClient(host: "127.0.0.1", port: server.port, configuration: .init(timeout: .seconds(5)))
            plain.connect()
            await #expect(throws: (any Error).self) { _ = try await plain.get("/healthz") }
            try? await plain.shutdown()

            server.terminate()
            #expect(try await server.exitStatus(within: .seconds(10)) == 0)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 1)
        }
    }

    @Test("a certificate or key that cannot be used stops the start with a message naming the setting")
    func unusableFiles() throws {
        #expect {
            try ServiceConfiguration.fromEnvironment(["INVENTORY_TLS_CERT_FILE": "/nonexistent/cert.pem"])
        } throws: { "\($0)".contains("INVENTORY_TLS_KEY_FILE") }
        #expect {
            try ServiceConfiguration.fromEnvironment([
                "INVENTORY_TLS_CERT_FILE": "/nonexistent/cert.pem", "INVENTORY_TLS_KEY_FILE": "/nonexistent/key.pem",
            ])
        } throws: { "\($0)".contains("INVENTORY_TLS_CERT_FILE=/nonexistent/cert.pem") }
    }
}
