import Foundation
import HTTPTypes
import HummingbirdTesting
import InventoryAPI
import InventoryTestSupport
import NIOCore
import Testing

/// `inventoryd serve` against a Redis that speaks only TLS (issue 19): with the CA and the name its certificate
/// carries it serves; without that CA it is not ready and answers 503, never a guess.
@Suite("The service over TLS to Redis", .serialized)
struct RedisTLSServiceTests {
    static func environment(_ stores: TestStores, redis: TLSTestServers.Redis, caFile: String?) -> [String: String] {
        var environment = stores.serviceEnvironment()
        environment["INVENTORY_REDIS_PORT"] = String(redis.port)
        environment["INVENTORY_REDIS_DB"] = "0"
        environment["INVENTORY_REDIS_CLUSTER"] = nil
        environment["INVENTORY_REDIS_TLS"] = "on"
        environment["INVENTORY_REDIS_TLS_CA_FILE"] = caFile
        environment["INVENTORY_REDIS_TLS_SERVER_NAME"] = "localhost"
        environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
        environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
        return environment
    }

    @Test("with the server's CA: the service sets stock and reserves through TLS Redis")
    func verified() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        let redis = try await TLSTestServers.startRedis()
        defer { redis.stop() }
        try await TestStores.with(cluster: false) { stores in
            let server = try ServeProcess.launch(
                binary: binary, environment: Self.environment(stores, redis: redis, caFile: redis.certificate)
            )
            defer {
                server.killIfRunning()
                server.removeLog()
            }
            try await server.waitUntilServing()
            let client = TestClient(host: "127.0.0.1", port: server.port, configuration: .init(timeout: .seconds(5)))
            client.connect()
            let json: HTTPFields = [.contentType: "application/json"]
            let ready = try await client.get("/readyz")
            #expect(ready.status == .ok, "\(server.output())")
            let put = try await client.put("/v1/stock/\(stores.bizId)/1", headers: json, body: ByteBuffer(string: #"{"stock": 6}"#))
            #expect(put.status == .ok)
            let reserve = #"{"orderId": "\#(stores.bizId)-r", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 2}]}"#
            let held = try await client.post("/v1/reservations", headers: json, body: ByteBuffer(string: reserve))
            #expect(held.status == .created)
            let level = try await client.get("/v1/stock/\(stores.bizId)/1")
            #expect(String(buffer: level.body ?? ByteBuffer()).contains(#""available":4"#))
            try await client.shutdown()
            server.terminate()
            #expect(try await server.exitStatus(within: .seconds(10)) == 0)
        }
    }

    @Test("without the server's CA (the system's roots): not ready, and a reserve is 503")
    func unverified() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        let redis = try await TLSTestServers.startRedis()
        defer { redis.stop() }
        try await TestStores.with(cluster: false) { stores in
            let server = try ServeProcess.launch(binary: binary, environment: Self.environment(stores, redis: redis, caFile: nil))
            defer {
                server.killIfRunning()
                server.removeLog()
            }
            try await server.waitUntilServing()
            let client = TestClient(host: "127.0.0.1", port: server.port, configuration: .init(timeout: .seconds(5)))
            client.connect()
            #expect(try await client.get("/readyz").status == .serviceUnavailable)
            let reserve = #"{"orderId": "\#(stores.bizId)-u", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#
            let refused = try await client.post(
                "/v1/reservations", headers: [.contentType: "application/json"], body: ByteBuffer(string: reserve)
            )
            #expect(refused.status == .serviceUnavailable)
            try await client.shutdown()
        }
    }
}
