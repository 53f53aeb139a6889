import Foundation
import HTTPTypes
import HummingbirdTesting
import InventoryAPI
import InventoryTestSupport
import NIOCore
import Testing

/// `inventoryd` against a MariaDB that requires TLS (issue 19): with the CA it migrates and writes stock through
/// TLS; without it, the database is not reached and a stock write is 503.
@Suite("The service over TLS to MariaDB", .serialized)
struct MySQLTLSServiceTests {
    static func environment(_ stores: TestStores, mariadb: TLSTestServers.MariaDB, caFile: String?) -> [String: String] {
        var environment = stores.serviceEnvironment()
        environment["INVENTORY_MYSQL_PORT"] = String(mariadb.port)
        environment["INVENTORY_MYSQL_USER"] = mariadb.user
        environment["INVENTORY_MYSQL_PASSWORD"] = mariadb.password
        environment["INVENTORY_MYSQL_DATABASE"] = mariadb.database
        environment["INVENTORY_MYSQL_TLS"] = "on"
        environment["INVENTORY_MYSQL_TLS_CA_FILE"] = caFile
        environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
        environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
        return environment
    }

    static func migrate(_ binary: String, _ environment: [String: String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["migrate"]
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test("with the CA: migrate and stock writes go through TLS; without it: migrate fails and a write is 503")
    func serviceOverTLS() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        let mariadb = try await TLSTestServers.startMariaDB()
        defer { mariadb.stop() }
        try await TestStores.with { stores in
            let verified = Self.environment(stores, mariadb: mariadb, caFile: mariadb.certificate)
            #expect(try Self.migrate(binary, verified) == 0)
            let server = try ServeProcess.launch(binary: binary, environment: verified)
            defer {
                server.killIfRunning()
                server.removeLog()
            }
            try await server.waitUntilServing()
            let client = TestClient(host: "127.0.0.1", port: server.port, configuration: .init(timeout: .seconds(5)))
            client.connect()
            let json: HTTPFields = [.contentType: "application/json"]
            #expect(try await client.get("/readyz").status == .ok, "\(server.output())")
            let put = try await client.put("/v1/stock/\(stores.bizId)/1", headers: json, body: ByteBuffer(string: #"{"stock": 6}"#))
            #expect(put.status == .ok)
            try await client.shutdown()
            server.terminate()
            #expect(try await server.exitStatus(within: .seconds(10)) == 0)

            let unverified = Self.environment(stores, mariadb: mariadb, caFile: nil)
            #expect(try Self.migrate(binary, unverified) != 0)
            let refused = try ServeProcess.launch(binary: binary, environment: unverified)
            defer {
                refused.killIfRunning()
                refused.removeLog()
            }
            try await refused.waitUntilServing()
            let second = TestClient(host: "127.0.0.1", port: refused.port, configuration: .init(timeout: .seconds(5)))
            second.connect()
            let write = try await second.put("/v1/stock/\(stores.bizId)/2", headers: json, body: ByteBuffer(string: #"{"stock": 1}"#))
            #expect(write.status == .serviceUnavailable)
            #expect(try await second.get("/readyz").status == .serviceUnavailable)
            try await second.shutdown()
        }
    }
}
