import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
@testable import InventoryAPI
@testable import InventorySettings
import InventoryTestSupport
import Logging
import NIOCore
import Prometheus
import Testing

/// Keeps `openapi/openapi.json` true: real answers of the real application (real Redis and MariaDB) are checked
/// against it, and the document's operations against the routes the code registers.
@Suite("OpenAPI document")
struct OpenAPITests {
    static let json: HTTPFields = [.contentType: "application/json"]

    /// The application on this test's stores, as `inventoryd serve` builds it (with a metrics registry).
    func withClient(
        redisTimeoutMilliseconds: Int64 = 2000, redisPort: Int? = nil,
        _ body: @escaping @Sendable (any TestClientProtocol, TestStores) async throws -> Void
    ) async throws {
        try await TestStores.with(redisTimeoutMilliseconds: redisTimeoutMilliseconds, redisPort: redisPort) { stores in
            var logger = Logger(label: "openapi-test")
            logger.logLevel = .critical
            let app = try buildApplication(
                engine: stores.engine, configuration: ServiceConfiguration(), metrics: PrometheusCollectorRegistry(),
                logger: logger
            )
            try await app.test(.router) { client in try await body(client, stores) }
        }
    }

    @Test("the document is OpenAPI 3.1 and its operations are exactly the routes the code registers")
    func operationsMatchRoutes() async throws {
        let contract = try OpenAPIContract()
        #expect(contract.document["openapi"]?.stringValue?.hasPrefix("3.1.") == true)
        // Every $ref in the document resolves, and every schema uses only keywords the validator checks.
        #expect(contract.brokenReferences().isEmpty, "\(contract.brokenReferences())")
        #expect(contract.unsupportedSchemaKeywords().isEmpty, "\(contract.unsupportedSchemaKeywords())")

        let documented = contract.operations
        // The routes InventoryRoutes registers, and the router-wide list the 404/405 answers are built from.
        let router = Router(context: BasicRequestContext.self)
        InventoryRoutes(engine: NoEngine()).register(on: router)
        let registered = Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        #expect(registered.subtracting(documented).isEmpty, "registered but not documented: \(registered.subtracting(documented).sorted())")
        let templates = Set(
            InventoryRoutes.templates.map { route in
                "\(route.method.rawValue) /" + route.path.map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
            }
        )
        #expect(templates == documented, "routes without a document entry: \(templates.subtracting(documented).sorted()); documented without a route: \(documented.subtracting(templates).sorted())")
    }

    @Test("every route's real answers, successes and errors, are documented and match their schemas")
    func realAnswersMatchTheDocument() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, stores in
            let biz = stores.bizId
            let json = Self.json
            @discardableResult
            func send(
                _ label: String, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, headers: HTTPFields = json,
                expect status: Int, sourceLocation: SourceLocation = #_sourceLocation
            ) async throws -> TestResponse {
                let response = try await client.execute(
                    uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }
                )
                #expect(Int(response.status.code) == status, "\(label): got \(response.status.code)", sourceLocation: sourceLocation)
                contract.check(label, method, uri, body: body, response, sourceLocation: sourceLocation)
                return response
            }
            let oversized = #"{"pad": "\#(String(repeating: "x", count: 70_000))"}"#

            // Operations.
            try await send("liveness", .get, "/healthz", expect: 200)
            try await send("readiness", .get, "/readyz", expect: 200)
            let document = try await send("the document", .get, "/openapi.json", expect: 200)
            #expect(Data(document.body.readableBytesView) == contract.bytes, "/openapi.json must serve the file byte for byte")
            try await send("metrics", .get, "/metrics", expect: 200)
            try await send("status page", .get, "/", expect: 200)
            try await send("status", .get, "/v1/status", expect: 200)
            try await send("a business's status", .get, "/v1/businesses/\(biz)/status", expect: 200)
            try await send("a business's status, bad bizId", .get, "/v1/businesses/BAD!/status", expect: 400)
            try await send("wrong method on the status page", .post, "/", expect: 405)

            // Stock.
            try await send("set stock", .put, "/v1/stock/\(biz)/1", #"{"stock": 10, "dangerNum": 2, "infinite": false, "backorderLimit": null}"#, expect: 200)
            try await send("set stock", .put, "/v1/stock/\(biz)/2", #"{"stock": 1}"#, expect: 200)
            try await send("set stock with a backorder limit", .put, "/v1/stock/\(biz)/3", #"{"stock": 0, "backorderLimit": 5}"#, expect: 200)
            try await send("stock negative", .put, "/v1/stock/\(biz)/1", #"{"stock": -1}"#, expect: 422)
            try await send("stock fields wrong", .put, "/v1/stock/\(biz)/1", #"{"stock": 1, "infinite": "yes", "dangerNum": 1000000000001}"#, expect: 422)
            try await send("stock missing", .put, "/v1/stock/\(biz)/1", "{}", expect: 422)
            try await send("stock without content type", .put, "/v1/stock/\(biz)/1", #"{"stock": 1}"#, headers: [:], expect: 415)
            try await send("stock malformed", .put, "/v1/stock/\(biz)/1", "{", expect: 400)
            try await send("stock oversized", .put, "/v1/stock/\(biz)/1", oversized, expect: 413)
            try await send("stock skuId 0 in path", .put, "/v1/stock/\(biz)/0", #"{"stock": 1}"#, expect: 400)
            try await send("read stock", .get, "/v1/stock/\(biz)/1", expect: 200)
            try await send("read unknown stock", .get, "/v1/stock/\(biz)/999", expect: 404)
            try await send("bad bizId in path", .get, "/v1/stock/BAD!/1", expect: 400)
            try await send("skuId beyond 64 bits in path", .get, "/v1/stock/\(biz)/18446744073709551616", expect: 400)

            // Adjustments.
            let adjust = "/v1/stock/\(biz)/1/adjustments"
            try await send("adjust", .post, adjust, #"{"adjustmentId": "adj-1", "delta": 5, "reason": "recount"}"#, expect: 200)
            let adjustReplay = try await send("adjust replay", .post, adjust, #"{"adjustmentId": "adj-1", "delta": 5, "reason": "recount"}"#, expect: 200)
            #expect(adjustReplay.headers[.idempotentReplayed] == "true")
            try await send("adjust same id, other delta", .post, adjust, #"{"adjustmentId": "adj-1", "delta": 6}"#, expect: 422)
            try await send("adjust zero", .post, adjust, #"{"adjustmentId": "adj-2", "delta": 0}"#, expect: 422)
            try await send("adjust bad fields", .post, adjust, #"{"adjustmentId": "a b", "delta": 1, "reason": "x|y"}"#, expect: 422)
            try await send("adjust unknown item", .post, "/v1/stock/\(biz)/999/adjustments", #"{"adjustmentId": "adj-3", "delta": 1}"#, expect: 404)
            try await send("adjust as text", .post, adjust, #"{"adjustmentId": "adj-4", "delta": 1}"#, headers: [.contentType: "text/plain"], expect: 415)
            try await send("adjust not an object", .post, adjust, "[1]", expect: 400)
            try await send("adjust oversized", .post, adjust, oversized, expect: 413)
            try await send("adjust bad skuId in path", .post, "/v1/stock/\(biz)/abc/adjustments", #"{"adjustmentId": "adj-5", "delta": 1}"#, expect: 400)

            // Reservations.
            let reserve = #"{"orderId": "o-1", "bizId": "\#(biz)", "userId": "u-1", "items": [{"skuId": 1, "quantity": 3}], "ttlSeconds": 600, "shortage": "reject"}"#
            try await send("reserve", .post, "/v1/reservations", reserve, expect: 201)
            let replay = try await send("reserve replay", .post, "/v1/reservations", reserve, expect: 200)
            #expect(replay.headers[.idempotentReplayed] == "true")
            try await send(
                "reserve same id, other body", .post, "/v1/reservations",
                #"{"orderId": "o-1", "bizId": "\#(biz)", "userId": "u-1", "items": [{"skuId": 1, "quantity": 4}], "ttlSeconds": 600}"#,
                expect: 422
            )
            try await send("reserve empty", .post, "/v1/reservations", #"{"orderId": "", "items": []}"#, expect: 422)
            try await send(
                "reserve every field wrong", .post, "/v1/reservations",
                #"{"orderId": "a b", "bizId": "B!", "userId": "", "items": [{"skuId": 0, "quantity": 0}, 7], "ttlSeconds": 0, "shortage": "maybe"}"#,
                expect: 422
            )
            try await send("reserve items not an array", .post, "/v1/reservations", #"{"orderId": "o-x", "items": "none"}"#, expect: 422)
            try await send(
                "reserve too many items", .post, "/v1/reservations",
                #"{"orderId": "o-x", "items": ["# + (1...51).map { #"{"skuId": \#($0), "quantity": 1}"# }.joined(separator: ",") + "]}",
                expect: 422
            )
            try await send(
                "reserve quantity above max", .post, "/v1/reservations",
                #"{"orderId": "o-x", "items": [{"skuId": 1, "quantity": 1000001}]}"#, expect: 422
            )
            try await send(
                "reserve ttl above max", .post, "/v1/reservations",
                #"{"orderId": "o-x", "items": [{"skuId": 1, "quantity": 1}], "ttlSeconds": 86401}"#, expect: 422
            )
            try await send(
                "reserve userId with a bar", .post, "/v1/reservations",
                #"{"orderId": "o-x", "items": [{"skuId": 1, "quantity": 1}], "userId": "a|b"}"#, expect: 422
            )
            try await send(
                "reserve skuId beyond Int64", .post, "/v1/reservations",
                #"{"orderId": "o-x", "items": [{"skuId": 9223372036854775808, "quantity": 1}]}"#, expect: 422
            )
            try await send("reserve malformed", .post, "/v1/reservations", #"{"orderId": "#, expect: 400)
            try await send("reserve not an object", .post, "/v1/reservations", "[1, 2]", expect: 400)
            try await send("reserve empty body", .post, "/v1/reservations", "", expect: 400)
            try await send("reserve without content type", .post, "/v1/reservations", reserve, headers: [:], expect: 415)
            try await send("reserve as text", .post, "/v1/reservations", reserve, headers: [.contentType: "text/plain"], expect: 415)
            try await send("reserve oversized", .post, "/v1/reservations", oversized, expect: 413)
            try await send(
                "reserve with a charset", .post, "/v1/reservations",
                #"{"orderId": "o-charset", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}], "userId": null}"#,
                headers: [.contentType: "application/json; charset=utf-8"], expect: 201
            )
            let unknown = try await send(
                "reserve unknown item", .post, "/v1/reservations",
                #"{"orderId": "o-unknown", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}, {"skuId": 999, "quantity": 1}]}"#,
                expect: 404
            )
            #expect(try JSONValue.parse(Data(unknown.body.readableBytesView))["unknownSkuIds"] == .array([.integer(999)]))
            try await send(
                "reserve short", .post, "/v1/reservations",
                #"{"orderId": "o-short", "bizId": "\#(biz)", "items": [{"skuId": 2, "quantity": 5}]}"#, expect: 409
            )
            try await send(
                "reserve partial", .post, "/v1/reservations",
                #"{"orderId": "o-partial", "bizId": "\#(biz)", "items": [{"skuId": 2, "quantity": 5}], "shortage": "partial"}"#,
                expect: 201
            )
            try await send(
                "reserve backorder", .post, "/v1/reservations",
                #"{"orderId": "o-back", "bizId": "\#(biz)", "items": [{"skuId": 3, "quantity": 2}], "shortage": "backorder"}"#,
                expect: 201
            )
            let backordered = try await send("stock below zero", .get, "/v1/stock/\(biz)/3", expect: 200)
            #expect(try JSONValue.parse(Data(backordered.body.readableBytesView))["available"] == .integer(-2))
            try await send("read reservation", .get, "/v1/businesses/\(biz)/reservations/o-1", expect: 200)
            try await send("read unknown reservation", .get, "/v1/businesses/\(biz)/reservations/nope", expect: 404)
            try await send("orderId too long in path", .get, "/v1/businesses/\(biz)/reservations/" + String(repeating: "a", count: 65), expect: 400)

            // Confirm, refund, cancel.
            try await send("confirm", .post, "/v1/businesses/\(biz)/reservations/o-1/confirm", expect: 200)
            let confirmAgain = try await send("confirm replay", .post, "/v1/businesses/\(biz)/reservations/o-1/confirm", expect: 200)
            #expect(confirmAgain.headers[.idempotentReplayed] == "true")
            try await send("confirm unknown", .post, "/v1/businesses/\(biz)/reservations/nope/confirm", expect: 404)
            try await send("confirm bad id", .post, "/v1/businesses/\(biz)/reservations/bad~id/confirm", expect: 400)
            try await send("refund", .post, "/v1/businesses/\(biz)/reservations/o-1/refund", expect: 200)
            let refundAgain = try await send("refund replay", .post, "/v1/businesses/\(biz)/reservations/o-1/refund", expect: 200)
            #expect(refundAgain.headers[.idempotentReplayed] == "true")
            try await send("refund unknown", .post, "/v1/businesses/\(biz)/reservations/nope/refund", expect: 404)
            try await send("refund unconfirmed", .post, "/v1/businesses/\(biz)/reservations/o-partial/refund", expect: 409)
            try await send("refund bad id", .post, "/v1/businesses/\(biz)/reservations/" + String(repeating: "r", count: 65) + "/refund", expect: 400)
            try await send("cancel refunded", .post, "/v1/businesses/\(biz)/reservations/o-1/cancel", expect: 409)
            try await send("cancel", .post, "/v1/businesses/\(biz)/reservations/o-partial/cancel", expect: 200)
            let cancelAgain = try await send("cancel replay", .post, "/v1/businesses/\(biz)/reservations/o-partial/cancel", expect: 200)
            #expect(cancelAgain.headers[.idempotentReplayed] == "true")
            try await send("confirm cancelled", .post, "/v1/businesses/\(biz)/reservations/o-partial/confirm", expect: 409)
            try await send("cancel unknown", .post, "/v1/businesses/\(biz)/reservations/never-1/cancel", expect: 200)
            try await send("read order cancelled unseen", .get, "/v1/businesses/\(biz)/reservations/never-1", expect: 200)
            try await send(
                "reserve after cancel", .post, "/v1/reservations",
                #"{"orderId": "never-1", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#, expect: 409
            )
            try await send("cancel bad id", .post, "/v1/businesses/\(biz)/reservations/bad~id/cancel", expect: 400)

            // Per-user limits.
            try await send(
                "set a per-user limit", .put, "/v1/stock/\(biz)/4",
                #"{"stock": 50, "perUserLimit": 2, "perUserWindowSeconds": 86400}"#, expect: 200
            )
            try await send("per-user limit out of range", .put, "/v1/stock/\(biz)/4", #"{"stock": 50, "perUserLimit": -1}"#, expect: 422)
            try await send(
                "per-user window out of range", .put, "/v1/stock/\(biz)/4",
                #"{"stock": 50, "perUserWindowSeconds": 99999999999}"#, expect: 422
            )
            try await send(
                "reserve within the per-user limit", .post, "/v1/reservations",
                #"{"orderId": "o-user-1", "bizId": "\#(biz)", "userId": "u-9", "items": [{"skuId": 4, "quantity": 2}]}"#,
                expect: 201
            )
            let overLimit = try await send(
                "reserve past the per-user limit", .post, "/v1/reservations",
                #"{"orderId": "o-user-2", "bizId": "\#(biz)", "userId": "u-9", "items": [{"skuId": 4, "quantity": 1}]}"#,
                expect: 409
            )
            #expect(
                try JSONValue.parse(Data(overLimit.body.readableBytesView))["type"]
                    == .string("https://inventory.example/problems/user-limit-exceeded")
            )
            let anonymous = try await send(
                "reserve a limited item without a user", .post, "/v1/reservations",
                #"{"orderId": "o-user-3", "bizId": "\#(biz)", "items": [{"skuId": 4, "quantity": 1}]}"#, expect: 409
            )
            #expect(
                try JSONValue.parse(Data(anonymous.body.readableBytesView))["userRequiredSkuIds"] == .array([.integer(4)])
            )
            let limitedStock = try await send("stock with a per-user limit", .get, "/v1/stock/\(biz)/4", expect: 200)
            #expect(try JSONValue.parse(Data(limitedStock.body.readableBytesView))["perUserLimit"] == .integer(2))
            #expect(try JSONValue.parse(Data(limitedStock.body.readableBytesView))["reserved"] == .integer(2))

            // Code pools.
            let text: HTTPFields = [.contentType: "text/plain"]
            try await send("pool unknown", .get, "/v1/stock/\(biz)/20/pool", expect: 404)
            try await send("codes without a pool", .post, "/v1/stock/\(biz)/20/codes", "A1\n", headers: text, expect: 404)
            try await send("set a one-time pool", .put, "/v1/stock/\(biz)/20/pool", #"{"kind": "one-time", "maxPerUser": 5}"#, expect: 200)
            try await send("pool kind unknown", .put, "/v1/stock/\(biz)/20/pool", #"{"kind": "forever"}"#, expect: 422)
            try await send(
                "batch pool without its code", .put, "/v1/stock/\(biz)/21/pool", #"{"kind": "batch", "expiresAt": "soon"}"#, expect: 422
            )
            try await send("pool kind change", .put, "/v1/stock/\(biz)/20/pool", #"{"kind": "reusable"}"#, expect: 409)
            try await send("read the pool", .get, "/v1/stock/\(biz)/20/pool", expect: 200)
            let loaded = try await send(
                "upload codes", .post, "/v1/stock/\(biz)/20/codes", "C-1\r\nC-2\n\nC-3\nC-1\n", headers: text, expect: 200
            )
            #expect(try JSONValue.parse(Data(loaded.body.readableBytesView))["duplicates"] == .integer(1))
            let badUpload = try await send(
                "upload with bad lines", .post, "/v1/stock/\(biz)/20/codes", "C-4\nnot a code\nC-5\nC|6\n", headers: text,
                expect: 422
            )
            #expect(
                try JSONValue.parse(Data(badUpload.body.readableBytesView))["errors"]?.arrayValue?.count == 2,
                "lines 2 and 4 are reported"
            )
            try await send("upload as JSON", .post, "/v1/stock/\(biz)/20/codes", #"{"codes": []}"#, expect: 415)
            try await send(
                "reserve a code", .post, "/v1/reservations",
                #"{"orderId": "o-code-1", "bizId": "\#(biz)", "userId": "u-1", "items": [{"skuId": 20, "quantity": 1, "codes": ["C-2"]}]}"#,
                expect: 201
            )
            try await send(
                "reserve a held code", .post, "/v1/reservations",
                #"{"orderId": "o-code-2", "bizId": "\#(biz)", "items": [{"skuId": 20, "quantity": 1, "codes": ["C-2"]}]}"#,
                expect: 409
            )
            try await send("read a reservation with codes", .get, "/v1/businesses/\(biz)/reservations/o-code-1", expect: 200)
            let exported = try await send("export codes", .get, "/v1/stock/\(biz)/20/codes", expect: 200)
            #expect(String(buffer: exported.body).split(separator: "\n").sorted() == ["C-1", "C-3"], "in the store's order")
            try await send("set the pool offline", .put, "/v1/stock/\(biz)/20/pool", #"{"kind": "one-time", "status": "offline"}"#, expect: 200)
            try await send(
                "reserve from an offline pool", .post, "/v1/reservations",
                #"{"orderId": "o-code-4", "bizId": "\#(biz)", "items": [{"skuId": 20, "quantity": 1}]}"#, expect: 409
            )

            // Orders of the path's business; the paths without one are business default's.
            try await send(
                "reserve in the path's business", .post, "/v1/businesses/\(biz)/reservations",
                #"{"orderId": "o-path", "items": [{"skuId": 1, "quantity": 1}]}"#, expect: 201
            )
            try await send(
                "reserve naming another business than the path", .post, "/v1/businesses/\(biz)/reservations",
                #"{"orderId": "o-path-2", "bizId": "\#(biz)x", "items": [{"skuId": 1, "quantity": 1}]}"#, expect: 422
            )
            try await send("bad bizId in an order path", .get, "/v1/businesses/BAD!/reservations/o-path", expect: 400)
            try await send("an order of another business", .get, "/v1/businesses/\(biz)x/reservations/o-path", expect: 404)
            let defaultSku = UInt64.random(in: 1_000_000_000...9_000_000_000)
            try await send("set stock of business default", .put, "/v1/stock/default/\(defaultSku)", #"{"stock": 5}"#, expect: 200)
            for (index, action) in ["confirm", "refund", "cancel"].enumerated() {
                let order = "o-default-\(index)-\(biz)"
                try await send(
                    "reserve in business default", .post, "/v1/reservations",
                    #"{"orderId": "\#(order)", "items": [{"skuId": \#(defaultSku), "quantity": 1}]}"#, expect: 201
                )
                try await send("read an order of business default", .get, "/v1/reservations/\(order)", expect: 200)
                if action == "refund" {
                    try await send("confirm an order of business default", .post, "/v1/reservations/\(order)/confirm", expect: 200)
                }
                try await send("\(action) an order of business default", .post, "/v1/reservations/\(order)/\(action)", expect: 200)
            }

            // Stock below what is held.
            try await send(
                "reserve to hold", .post, "/v1/reservations",
                #"{"orderId": "o-hold", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 5}]}"#, expect: 201
            )
            try await send("set stock below reserved", .put, "/v1/stock/\(biz)/1", #"{"stock": 1}"#, expect: 409)
            try await send("adjust below reserved", .post, adjust, #"{"adjustmentId": "adj-6", "delta": -1000}"#, expect: 409)

            // Requests that match no operation.
            try await send("wrong method", .delete, "/v1/reservations", expect: 405)
            try await send("wrong method on stock", .post, "/v1/stock/\(biz)/1", #"{"stock": 1}"#, expect: 405)
            try await send("wrong method on health", .put, "/healthz", expect: 405)
            try await send("wrong method on a reservation", .patch, "/v1/businesses/\(biz)/reservations/o-1", expect: 405)
            try await send("unknown path", .get, "/v1/nothing", expect: 404)
            try await send("unknown nested path", .post, "/v1/businesses/\(biz)/reservations/o-1/ship", expect: 404)

            // The caller's request id comes back.
            let tagged = try await send("request id", .get, "/healthz", headers: [HTTPField.Name("X-Request-Id")!: "openapi-test-1"], expect: 200)
            #expect(tagged.headers[HTTPField.Name("X-Request-Id")!] == "openapi-test-1")

            // With the hot-item limiter on (1 reservation per item per minute), a second reserve of the item is a 429.
            var limitedConfiguration = ServiceConfiguration()
            limitedConfiguration.hotItemLimit = 1
            limitedConfiguration.hotItemWindowMilliseconds = 60_000
            let limited = try buildApplication(engine: stores.engine, configuration: limitedConfiguration, logger: Logger(label: "openapi-test"))
            try await limited.test(.router) { client in
                var statuses: [Int] = []
                // At most one window boundary falls between three quick requests, so one of them is refused.
                for index in 0..<3 where !statuses.contains(429) {
                    let body = #"{"orderId": "hot-\#(index)", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#
                    let response = try await client.execute(
                        uri: "/v1/reservations", method: .post, headers: json, body: ByteBuffer(string: body)
                    )
                    statuses.append(Int(response.status.code))
                    contract.check("hot item \(index)", .post, "/v1/reservations", body: body, response)
                }
                #expect(statuses.contains(429), "the limiter never refused: \(statuses)")
            }

            // With the per-business admission limit on (1 request per second, no burst), a business's second request
            // in a second is a 429, on a reserve and on a stock route alike; another business is still admitted.
            var admissionConfiguration = ServiceConfiguration()
            admissionConfiguration.businessRateLimit = 1
            let admitted = try buildApplication(
                engine: stores.engine, configuration: admissionConfiguration, logger: Logger(label: "openapi-test")
            )
            try await admitted.test(.router) { client in
                let flood = "\(biz)-flood"
                let body = #"{"orderId": "flood-1", "bizId": "\#(flood)", "items": [{"skuId": 1, "quantity": 1}]}"#
                var statuses: [Int] = []
                // The bucket holds one request and refills one per second: a second request within a second is
                // refused (polled: up to 50 quick requests, each far under a second).
                for index in 0..<50 where !statuses.contains(429) {
                    let response = try await client.execute(uri: "/v1/stock/\(flood)/1", method: .get)
                    statuses.append(Int(response.status.code))
                    contract.check("business limit, stock \(index)", .get, "/v1/stock/\(flood)/1", body: nil, response)
                    if response.status == .tooManyRequests {
                        #expect(response.headers[.retryAfter] == "1")
                        let reserve = try await client.execute(
                            uri: "/v1/reservations", method: .post, headers: json, body: ByteBuffer(string: body)
                        )
                        #expect(reserve.status == .tooManyRequests)
                        contract.check("business limit, reserve", .post, "/v1/reservations", body: body, reserve)
                    }
                }
                #expect(statuses.contains(429), "the admission limit never refused: \(statuses)")
                let other = try await client.execute(uri: "/v1/stock/\(biz)/1", method: .get)
                #expect(other.status == .ok, "another business is admitted")
            }
            await #expect(throws: InventoryError.self, "refused: nothing was held") {
                try await stores.engine.reservation(orderId: "flood-1", bizId: stores.bizId)
            }

            // Without a metrics registry, /metrics is a 404 problem.
            let bare = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: Logger(label: "openapi-test"))
            try await bare.test(.router) { client in
                let response = try await client.execute(uri: "/metrics", method: .get)
                #expect(response.status == .notFound)
                contract.check("metrics not exported", .get, "/metrics", body: nil, response)
            }
        }

        let missed = contract.operations.subtracting(contract.exercised)
        #expect(missed.isEmpty, "documented operations never exercised: \(missed.sorted())")
        let seen = Set(contract.coverage.map { "\($0.operation) \($0.status)" })
        let documentedStatuses = contract.paths.flatMap { path, item in
            OpenAPIContract.methods.flatMap { method in
                (item[method]?["responses"]?.objectValue ?? [:]).keys.map { "\(method.uppercased()) \(path) \($0)" }
            }
        }
        print("OpenAPI: \(seen.count) of \(documentedStatuses.count) documented answers exercised; not exercised: \(Set(documentedStatuses).subtracting(seen).sorted())")
    }

    @Test("a store that is down: 503 with Retry-After, and readiness 503, as documented")
    func storeDown() async throws {
        let contract = try OpenAPIContract()
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await withClient(redisPort: proxy.port) { client, stores in
            let set = try await client.execute(
                uri: "/v1/stock/\(stores.bizId)/1", method: .put, headers: Self.json, body: ByteBuffer(string: #"{"stock": 5}"#)
            )
            #expect(set.status == .ok)
            proxy.down = true
            let cases: [(String, HTTPRequest.Method, String, String?)] = [
                ("read stock", .get, "/v1/stock/\(stores.bizId)/1", nil),
                ("reserve", .post, "/v1/reservations", #"{"orderId": "down-1", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#),
                ("confirm", .post, "/v1/reservations/down-1/confirm", nil),
                ("readiness", .get, "/readyz", nil),
                ("status", .get, "/v1/status", nil),
                ("business status", .get, "/v1/businesses/\(stores.bizId)/status", nil),
            ]
            for (label, method, uri, body) in cases {
                let response = try await client.execute(
                    uri: uri, method: method, headers: Self.json, body: body.map { ByteBuffer(string: $0) }
                )
                #expect(response.status == .serviceUnavailable, "\(label): got \(response.status.code)")
                contract.check(label, method, uri, body: body, response)
            }
            proxy.down = false
        }
        await proxy.close()
    }

    @Test("the schema validator checks what the document relies on")
    func validator() throws {
        let root = try JSONValue.parse(
            #"{"components": {"schemas": {"Id": {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}}}}"#
        )
        let validator = JSONSchemaValidator(root: root)
        func valid(_ instance: String, _ schema: String) throws -> Bool {
            validator.isValid(try JSONValue.parse(instance), against: try JSONValue.parse(schema))
        }
        let id = ##"{"$ref": "#/components/schemas/Id"}"##
        #expect(try valid("9223372036854775807", id))
        #expect(try !valid("9223372036854775808", id))
        #expect(try !valid("0", id))
        #expect(try !valid("true", id))
        #expect(try !valid("1.5", id))
        #expect(try valid("null", #"{"type": ["string", "null"], "minLength": 1}"#))
        #expect(try !valid(#""""#, #"{"type": ["string", "null"], "minLength": 1}"#))
        #expect(try !valid("1", #"{"type": "boolean"}"#))
        #expect(try valid(#""xa-1y""#, #"{"pattern": "a-[0-9]"}"#))
        #expect(try !valid(#""a b""#, #"{"pattern": "^[a-z]+$"}"#))
        let object = #"{"type": "object", "required": ["a"], "properties": {"a": {"const": 1}}, "additionalProperties": false}"#
        #expect(try valid(#"{"a": 1.0}"#, object))
        #expect(try !valid(#"{"a": 1, "b": 2}"#, object))
        #expect(try !valid("{}", object))
        let either = #"{"oneOf": [{"type": "integer"}, {"type": "number"}]}"#
        #expect(try valid("1.5", either))
        #expect(try !valid("1", either), "an integer is a number too: both branches match")
        #expect(try !valid("0", #"{"not": {"const": 0}}"#))
        #expect(try valid(#"["a", "b"]"#, #"{"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}"#))
        #expect(try !valid(#"["a", "c"]"#, #"{"type": "array", "items": {"enum": ["a", "b"]}}"#))
        #expect(try !valid(#""2026-13-01T00:00:00.000Z""#, #"{"format": "date-time"}"#))
        #expect(try !valid("1", #"{"multipleOf": 2}"#), "an unknown keyword is an error, not a pass")
        #expect(validator.unsupportedKeywords(in: try JSONValue.parse(#"{"properties": {"a": {"uniqueItems": true}}}"#)) == ["$.properties.a: uniqueItems"])
    }

    @Test("a missing document file is a 404 problem, not a crash")
    func missingDocument() async throws {
        let contract = try OpenAPIContract()
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestIdMiddleware())
        OpenAPIDocument.load(path: "/nonexistent/openapi/openapi.json").register(on: router)
        try await Application(router: router).test(.router) { client in
            let response = try await client.execute(uri: "/openapi.json", method: .get)
            #expect(response.status == .notFound)
            contract.check("document missing", .get, "/openapi.json", body: nil, response)
        }
    }
}

/// An engine that is never called: enough to register the routes and list them.
private struct NoEngine: InventoryService {
    var defaultTTLSeconds: Int { 1800 }
    func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome { throw InventoryError.notSupported("") }
    func confirm(orderId: String, bizId: String) async throws -> TransitionOutcome { throw InventoryError.notSupported("") }
    func cancel(orderId: String, bizId: String) async throws -> TransitionOutcome { throw InventoryError.notSupported("") }
    func refund(orderId: String, bizId: String) async throws -> TransitionOutcome { throw InventoryError.notSupported("") }
    func reservation(orderId: String, bizId: String) async throws -> Reservation { throw InventoryError.notSupported("") }
    func stock(_ id: StockItemID) async throws -> StockLevel { throw InventoryError.notSupported("") }
    func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel { throw InventoryError.notSupported("") }
    func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        throw InventoryError.notSupported("")
    }
    func readinessChecks() async -> [(name: String, ok: Bool)] { [] }
}

extension HTTPField.Name {
    fileprivate static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
}

/// The OpenAPI document, and the checks of one real exchange against it.
final class OpenAPIContract: @unchecked Sendable {
    let bytes: Data
    let document: JSONValue
    let validator: JSONSchemaValidator
    /// "METHOD /template" of every operation seen.
    private(set) var exercised: Set<String> = []
    /// Every (operation, status) seen, and whether the document had it.
    private(set) var coverage: [(operation: String, status: Int, documented: Bool)] = []

    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
    /// Headers whose presence the document must announce.
    static let watchedHeaders = ["Idempotent-Replayed", "Retry-After", "Allow", "X-Request-Id"]

    init() throws {
        let path = OpenAPIDocument.defaultPath
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ContractError(description: "no OpenAPI document at \(path)")
        }
        bytes = data
        document = try JSONValue.parse(data)
        validator = JSONSchemaValidator(root: document)
    }

    struct ContractError: Error, CustomStringConvertible {
        let description: String
    }

    var paths: [String: JSONValue] { document["paths"]?.objectValue ?? [:] }

    /// "METHOD /template" of every documented operation.
    var operations: Set<String> {
        Set(
            paths.flatMap { path, item in
                Self.methods.filter { item[$0] != nil }.map { "\($0.uppercased()) \(path)" }
            }
        )
    }

    /// Follows `$ref`s (responses, headers, parameters, request bodies).
    func resolved(_ value: JSONValue) -> JSONValue {
        var value = value
        var hops = 0
        while let reference = value["$ref"]?.stringValue, let target = validator.resolve(reference: reference), hops < 16 {
            value = target
            hops += 1
        }
        return value
    }

    /// Every `$ref` in the document that points nowhere.
    func brokenReferences() -> [String] {
        var broken: [String] = []
        func walk(_ value: JSONValue) {
            switch value {
            case .object(let members):
                if let reference = members["$ref"]?.stringValue, validator.resolve(reference: reference) == nil {
                    broken.append(reference)
                }
                members.values.forEach(walk)
            case .array(let values): values.forEach(walk)
            default: break
            }
        }
        walk(document)
        return broken
    }

    /// Schema keywords anywhere in the document (components and every `schema` member) that the validator would
    /// not check.
    func unsupportedSchemaKeywords() -> [String] {
        var found: [String] = []
        for (name, schema) in document["components"]?["schemas"]?.objectValue ?? [:] {
            found += validator.unsupportedKeywords(in: schema, at: "#/components/schemas/\(name)")
        }
        func walk(_ value: JSONValue, _ location: String) {
            switch value {
            case .object(let members):
                for (key, member) in members {
                    if key == "schema" { found += validator.unsupportedKeywords(in: member, at: "\(location)/schema") }
                    walk(member, "\(location)/\(key)")
                }
            case .array(let values):
                for (index, element) in values.enumerated() { walk(element, "\(location)/\(index)") }
            default:
                break
            }
        }
        walk(document, "#")
        return found
    }

    /// The documented path template a concrete path falls under (literal segments preferred over parameters).
    func template(for path: String) -> String? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        var best: (template: String, literals: Int)?
        for template in paths.keys {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            guard parts.count == segments.count else { continue }
            var literals = 0
            var matches = true
            for (part, segment) in zip(parts, segments) {
                if part.hasPrefix("{") && part.hasSuffix("}") {
                    if segment.isEmpty { matches = false }
                } else if part == segment {
                    literals += 1
                } else {
                    matches = false
                }
            }
            if matches, literals > (best?.literals ?? -1) { best = (template, literals) }
        }
        return best?.template
    }

    /// Records an issue for everything in this exchange the document does not say.
    func check(
        _ label: String, _ method: HTTPRequest.Method, _ uri: String, body: String?, _ response: TestResponse,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        for problem in problems(method, path, body: body, response) {
            Issue.record("\(label) (\(method.rawValue) \(path) → \(response.status.code)): \(problem)", sourceLocation: sourceLocation)
        }
    }

    private func problems(_ method: HTTPRequest.Method, _ path: String, body: String?, _ response: TestResponse) -> [String] {
        var problems: [String] = []
        let status = Int(response.status.code)
        let template = template(for: path)
        let operation = template.flatMap { paths[$0]?[method.rawValue.lowercased()] }

        // The documented answer.
        let answer: JSONValue
        if let operation, let template {
            let name = "\(method.rawValue) \(template)"
            exercised.insert(name)
            let documented = operation["responses"]?[String(status)].map(resolved)
            coverage.append((name, status, documented != nil))
            guard let documented else { return ["status \(status) is not documented for \(name)"] }
            answer = documented
        } else {
            let expected = template == nil ? 404 : 405
            if status != expected {
                problems.append("no documented operation matches, so the answer must be \(expected)")
            }
            guard let documented = document["x-unrouted-responses"]?[String(status)].map(resolved) else {
                return problems + ["status \(status) is not documented in x-unrouted-responses"]
            }
            answer = documented
            if status == 405, let template {
                // HEAD goes with every GET (RFC 9110 §9.3.2); the document lists the GET.
                var methods = Self.methods.filter { paths[template]?[$0] != nil }.map { $0.uppercased() }
                if methods.contains("GET") { methods.append("HEAD") }
                let allowed = methods.sorted().joined(separator: ", ")
                if response.headers[.allow] != allowed {
                    problems.append("Allow is \(response.headers[.allow] ?? "absent"), the document has \(allowed) on \(template)")
                }
            }
        }

        // Headers.
        let headers = (answer["headers"]?.objectValue ?? [:]).mapValues(resolved)
        for (name, header) in headers {
            guard let field = HTTPField.Name(name) else {
                problems.append("bad header name \(name) in the document")
                continue
            }
            let value = response.headers[field]
            if header["required"]?.boolValue == true, value == nil {
                problems.append("the documented header \(name) is missing")
            }
            if let value, let schema = header["schema"] {
                problems += validator.errors(.string(value), against: schema, at: "header \(name)")
            }
        }
        for name in Self.watchedHeaders where response.headers[HTTPField.Name(name)!] != nil {
            if !headers.keys.contains(where: { $0.lowercased() == name.lowercased() }) {
                problems.append("the header \(name) is sent but not documented for this answer")
            }
        }

        // Content type and body.
        let content = answer["content"]?.objectValue ?? [:]
        var problemType: String?
        if content.isEmpty {
            if response.body.readableBytes > 0 { problems.append("a body is sent but the document has no content") }
        } else if let contentType = response.headers[.contentType] {
            let sent = DocumentedMediaType(contentType)
            if let (_, media) = content.first(where: { DocumentedMediaType($0.key).accepts(sent) }) {
                let text = String(buffer: response.body)
                let instance: JSONValue?
                if sent.type.hasSuffix("json") {
                    instance = try? JSONValue.parse(text)
                    if instance == nil { problems.append("the body is not JSON: \(text.prefix(200))") }
                } else {
                    instance = .string(text)
                }
                if let instance, let schema = media["schema"] {
                    problems += validator.errors(instance, against: schema, at: "body")
                    problemType = sent.type == "application/problem+json" ? instance["type"]?.stringValue : nil
                }
            } else {
                problems.append("Content-Type \(contentType) is not one of the documented \(content.keys.sorted())")
            }
        } else {
            problems.append("no Content-Type; the document has \(content.keys.sorted())")
        }

        guard let operation, let template else { return problems }
        // The request body: accepted ones must satisfy the documented schema, refused-as-invalid ones must not.
        if let body, let requestSchema = operation["requestBody"].map(resolved)?["content"]?["application/json"]?["schema"],
            let instance = try? JSONValue.parse(body)
        {
            let errors = validator.errors(instance, against: requestSchema, at: "request")
            if (200..<300).contains(status), !errors.isEmpty {
                problems.append("the service accepted a body the document calls invalid: \(errors)")
            }
            if problemType?.hasSuffix("/validation-failed") == true, errors.isEmpty {
                problems.append("the service refused a body as invalid that the documented schema accepts: \(body.prefix(300))")
            }
        }
        // Path parameters: accepted ones must satisfy their schemas, ones a 400 points at must not.
        let parameters = ((paths[template]?["parameters"]?.arrayValue ?? []) + (operation["parameters"]?.arrayValue ?? []))
            .map(resolved).filter { $0["in"]?.stringValue == "path" }
        let templateParts = template.split(separator: "/", omittingEmptySubsequences: false)
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let pointers = Set(
            (problemType?.hasSuffix("/malformed-request") == true
                ? (try? JSONValue.parse(String(buffer: response.body)))?["errors"]?.arrayValue ?? [] : [])
                .compactMap { $0["pointer"]?.stringValue }
        )
        for parameter in parameters {
            guard let name = parameter["name"]?.stringValue, let schema = parameter["schema"],
                let index = templateParts.firstIndex(of: Substring("{\(name)}")), segments.indices.contains(index)
            else {
                problems.append("path parameter \(parameter) is not in \(template)")
                continue
            }
            let text = String(segments[index])
            let typed = resolved(schema)["type"]?.stringValue == "integer"
            let value: JSONValue =
                typed && !text.isEmpty && text.allSatisfy(\.isNumber) ? (try? JSONValue.parse(text)) ?? .string(text) : .string(text)
            let valid = validator.isValid(value, against: schema)
            if (200..<300).contains(status), !valid {
                problems.append("the service accepted the path parameter \(name)=\(text) that the document calls invalid")
            }
            if pointers.contains("path/\(name)"), valid {
                problems.append("the service refused the path parameter \(name)=\(text) that the document accepts")
            }
        }
        return problems
    }
}

/// A media type with its parameters, for matching a `Content-Type` against the document's content keys.
struct DocumentedMediaType {
    let type: String
    let parameters: [String: String]

    init(_ text: String) {
        let parts = text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        type = (parts.first ?? "").lowercased()
        var parameters: [String: String] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2 { parameters[pair[0].lowercased()] = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        self.parameters = parameters
    }

    /// The same type, and every parameter this (documented) type names is sent with the same value.
    func accepts(_ sent: DocumentedMediaType) -> Bool {
        type == sent.type && parameters.allSatisfy { sent.parameters[$0.key] == $0.value }
    }
}
