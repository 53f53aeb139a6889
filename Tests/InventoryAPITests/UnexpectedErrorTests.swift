import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryAPI
import InventorySettings
import Logging
import NIOCore
import Testing

/// What the API answers when something fails that no layer maps: a 500 problem that still carries the request id.
@Suite("Unexpected errors")
struct UnexpectedErrorTests {
    static let requestId = HTTPField.Name("X-Request-Id")!

    @Test("an unexpected error is a 500 problem+json with X-Request-Id, the caller's or a fresh one; 404 and 405 carry it too")
    func internalErrorCarriesRequestId() async throws {
        let contract = try OpenAPIContract()
        var logger = Logger(label: "unexpected-error-test")
        logger.logLevel = .critical
        let app = try buildApplication(engine: BrokenEngine(), configuration: ServiceConfiguration(), logger: logger)
        try await app.test(.router) { client in
            let given = try await client.execute(uri: "/v1/stock/shop/1", method: .get, headers: [Self.requestId: "boom-1"])
            #expect(given.status == .internalServerError)
            #expect(given.headers[Self.requestId] == "boom-1")
            #expect(given.headers[.contentType] == "application/problem+json")
            contract.check("unexpected error", .get, "/v1/stock/shop/1", body: nil, given)
            let problem = try #require(
                JSONSerialization.jsonObject(with: Data(given.body.readableBytesView)) as? [String: Any]
            )
            #expect(problem["type"] as? String == "https://inventory.example/problems/internal")
            #expect(problem["status"] as? Int == 500)
            #expect(problem["title"] as? String == "Internal error")
            #expect((problem["detail"] as? String)?.contains("secret") == false, "the error's text stays in the log")

            let reserve = try await client.execute(
                uri: "/v1/reservations", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"orderId": "o-1", "items": [{"skuId": 1, "quantity": 1}]}"#)
            )
            #expect(reserve.status == .internalServerError)
            #expect(reserve.headers[Self.requestId]?.isEmpty == false, "a fresh id when the caller sent none")

            let missing = try await client.execute(uri: "/nowhere", method: .get)
            #expect(missing.status == .notFound)
            #expect(missing.headers[Self.requestId]?.isEmpty == false)
            let wrongMethod = try await client.execute(uri: "/healthz", method: .delete, headers: [Self.requestId: "boom-2"])
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.headers[Self.requestId] == "boom-2")
        }
    }
}

/// An error no layer knows: what a bug looks like from outside.
private struct Bug: Error, CustomStringConvertible {
    var description: String { "secret internal state" }
}

/// An engine whose every call fails with `Bug`.
private struct BrokenEngine: InventoryService {
    var defaultTTLSeconds: Int { 1800 }
    func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome { throw Bug() }
    func confirm(orderId: String, bizId: String) async throws -> TransitionOutcome { throw Bug() }
    func cancel(orderId: String, bizId: String) async throws -> TransitionOutcome { throw Bug() }
    func refund(orderId: String, bizId: String) async throws -> TransitionOutcome { throw Bug() }
    func reservation(orderId: String, bizId: String) async throws -> Reservation { throw Bug() }
    func stock(_ id: StockItemID) async throws -> StockLevel { throw Bug() }
    func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel { throw Bug() }
    func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome { throw Bug() }
    func readinessChecks() async -> [(name: String, ok: Bool)] { [] }
}
