import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryAPI
import InventorySettings
import InventoryTestSupport
import Logging
import NIOCore
import Testing

/// The status page and the JSON it polls, over the real engine, stores and write-back worker.
@Suite("Status page")
struct StatusPageTests {
    static let json: HTTPFields = [.contentType: "application/json"]

    /// An application on this test's stores with a running write-back worker, as `inventoryd serve` has.
    func withClient(_ body: @escaping @Sendable (any TestClientProtocol, TestStores) async throws -> Void) async throws {
        try await TestStores.with { stores in
            var logger = Logger(label: "status-test")
            logger.logLevel = .warning
            let app = try buildApplication(
                engine: stores.engine, configuration: ServiceConfiguration(), services: [stores.worker()], logger: logger
            )
            try await app.test(.router) { client in try await body(client, stores) }
        }
    }

    static func send(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil
    ) async throws -> TestResponse {
        try await client.execute(uri: uri, method: method, headers: json, body: body.map { ByteBuffer(string: $0) })
    }

    static func reserve(_ client: any TestClientProtocol, _ stores: TestStores, _ orderId: String, sku: Int, quantity: Int) async throws {
        let body = #"{"orderId": "\#(orderId)", "bizId": "\#(stores.bizId)", "items": [{"skuId": \#(sku), "quantity": \#(quantity)}]}"#
        let response = try await send(client, .post, "/v1/reservations", body)
        #expect(response.status == .created, "reserve \(orderId): \(response.status)")
    }

    /// `GET /v1/status`, checked against the OpenAPI document, as a JSON object.
    static func status(_ client: any TestClientProtocol, _ contract: OpenAPIContract) async throws -> [String: Any] {
        let response = try await client.execute(uri: "/v1/status", method: .get)
        #expect(response.status == .ok)
        #expect(response.headers[.contentType] == "application/json")
        contract.check("status", .get, "/v1/status", body: nil, response)
        let data = Data(response.body.readableBytesView)
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// This test's entries of `lowStock`, as (sku, available, reserved, dangerNum).
    static func lowItems(_ status: [String: Any], _ stores: TestStores) -> [[Int]] {
        (status["lowStock"] as? [[String: Any]] ?? [])
            .filter { $0["bizId"] as? String == stores.bizId }
            .map { item in ["skuId", "available", "reserved", "dangerNum"].map { item[$0] as? Int ?? -1 } }
    }

    @Test("an item below its dangerNum is reported with its exact numbers, live; the outbox drains; worker and reconcile are known")
    func lowItemNumbers() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, stores in
            let biz = stores.bizId
            #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/1", #"{"stock": 10, "dangerNum": 4}"#).status == .ok)
            #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/2", #"{"stock": 100, "dangerNum": 4}"#).status == .ok)
            try await Self.reserve(client, stores, "st-1", sku: 1, quantity: 3)
            try await Self.reserve(client, stores, "st-2", sku: 1, quantity: 4)
            try await Self.reserve(client, stores, "st-3", sku: 2, quantity: 5)
            // A stock read is where an item is seen low (and gets its low-stock gauges).
            #expect(try await Self.send(client, .get, "/v1/stock/\(biz)/1").status == .ok)
            #expect(try await Self.send(client, .get, "/v1/stock/\(biz)/2").status == .ok)
            #expect(try await stores.drained())

            let first = try await Self.status(client, contract)
            #expect(Self.lowItems(first, stores) == [[1, 3, 7, 4]])
            #expect(first["outboxEntries"] as? Int == 0)
            let worker = try #require(first["worker"] as? [String: Any])
            #expect(worker["journalLagP50Ms"] is Int, "two reserves were written back just now")
            #expect(worker["journalLagP99Ms"] is Int)

            // Later holds show without another stock read: the page re-reads the tracked items every time.
            try await Self.reserve(client, stores, "st-4", sku: 1, quantity: 3)
            let second = try await Self.status(client, contract)
            #expect(Self.lowItems(second, stores) == [[1, 0, 10, 4]])

            // Restocked: no longer low, so no longer listed.
            #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/1", #"{"stock": 50}"#).status == .ok)
            #expect(Self.lowItems(try await Self.status(client, contract), stores).isEmpty)

            // The latest reconciliation recorded (this test's, or a later one of another test running meanwhile).
            let reconciler = Reconciler(
                redis: stores.redis, mysql: stores.mysql, replica: nil, scripts: try InventoryScripts.load(), keys: stores.keys,
                logger: stores.logger
            )
            let report = try await reconciler.run(.business(biz))
            #expect(report.clean)
            let reconcile = try #require(try await Self.status(client, contract)["lastReconcile"] as? [String: Any])
            #expect(reconcile["startedAt"] is String)
            #expect(reconcile["itemsChecked"] is Int)
        }
    }

    @Test("a business's status lists its low items only; one business's many low items leave room for the others' (issue 22 item 6)")
    func businessStatus() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, stores in
            let (mine, other) = (stores.bizId, stores.bizId + "b")
            // 101 items of mine sold out (a PUT of stock 0 is seen low): one more than a business may have tracked.
            for sku in 1...101 {
                #expect(try await Self.send(client, .put, "/v1/stock/\(mine)/\(sku)", #"{"stock": 0}"#).status == .ok)
            }
            // Before, these filled the shared table (1,000 slots) for everyone; now the other business is still tracked.
            #expect(try await Self.send(client, .put, "/v1/stock/\(other)/1", #"{"stock": 1, "dangerNum": 2}"#).status == .ok)
            func status(_ biz: String) async throws -> [String: Any] {
                let response = try await client.execute(uri: "/v1/businesses/\(biz)/status", method: .get)
                #expect(response.status == .ok)
                contract.check("business status", .get, "/v1/businesses/\(biz)/status", body: nil, response)
                return try #require(JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
            }
            let mineStatus = try await status(mine)
            let mineItems = mineStatus["lowStock"] as? [[String: Any]] ?? []
            #expect(mineStatus["lowStockCount"] as? Int == 100, "at most 100 items of one business are tracked")
            #expect(mineItems.count == 100)
            #expect(mineItems.allSatisfy { $0["bizId"] as? String == mine })
            let otherItems = try await status(other)["lowStock"] as? [[String: Any]] ?? []
            #expect(otherItems.map { [$0["bizId"] as? String ?? "", String($0["available"] as? Int ?? -1)] } == [[other, "1"]])
            // Restocked items free their slots: the 101st is tracked once it is seen low again.
            for sku in 1...50 {
                #expect(try await Self.send(client, .put, "/v1/stock/\(mine)/\(sku)", #"{"stock": 10}"#).status == .ok)
            }
            #expect(try await Self.send(client, .get, "/v1/stock/\(mine)/101").status == .ok)
            let after = try await status(mine)
            #expect(after["lowStockCount"] as? Int == 51)
            let bad = try await client.execute(uri: "/v1/businesses/Bad!/status", method: .get)
            #expect(bad.status == .badRequest)
            contract.check("business status, bad bizId", .get, "/v1/businesses/Bad!/status", body: nil, bad)
            // Cleanup: the table is the process's; the other tests' items need the room.
            for sku in 51...101 {
                _ = try await Self.send(client, .put, "/v1/stock/\(mine)/\(sku)", #"{"stock": 10}"#)
            }
            _ = try await Self.send(client, .put, "/v1/stock/\(other)/1", #"{"stock": 10, "dangerNum": 2}"#)
        }
    }

    @Test("without a worker in the process, /v1/status still answers 200, with worker null")
    func withoutWorker() async throws {
        let contract = try OpenAPIContract()
        try await TestStores.with { stores in
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: stores.logger)
            try await app.test(.router) { client in
                let status = try await Self.status(client, contract)
                #expect(status["worker"] is NSNull)
                #expect(status["outboxEntries"] as? Int == 0)
                #expect(status["lowStock"] is [Any])
            }
        }
    }

    @Test("/ is a self-contained HTML page whose script polls /v1/status")
    func page() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, _ in
            let response = try await client.execute(uri: "/", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/html; charset=utf-8")
            contract.check("status page", .get, "/", body: nil, response)
            let html = String(buffer: response.body)
            #expect(html.hasPrefix("<!doctype html>"))
            #expect(html.contains(#"const STATUS_URL = "/v1/status";"#))
            #expect(html.contains("fetch(STATUS_URL"))
            #expect(html.contains("const REFRESH_MS = 2000;"))
            #expect(!html.contains("http://") && !html.contains("https://"), "no external assets")
        }
    }
}
