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

/// The HTTP API over the real engine and stores.
@Suite("HTTP API v1")
struct APITests {
    static let json: HTTPFields = [.contentType: "application/json"]

    /// Runs `body` with a client for an application on this test's stores.
    func withClient(_ body: @escaping @Sendable (any TestClientProtocol, TestStores) async throws -> Void) async throws {
        try await TestStores.with { stores in
            var logger = Logger(label: "api-test")
            logger.logLevel = .warning
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: logger)
            try await app.test(.router) { client in try await body(client, stores) }
        }
    }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        let data = Data(response.body.readableBytesView)
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @discardableResult
    static func send(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
        headers: HTTPFields = json
    ) async throws -> TestResponse {
        try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    static func stock(_ client: any TestClientProtocol, _ stores: TestStores, _ sku: Int) async throws -> (Int, Int) {
        let response = try await send(client, .get, "/v1/stock/\(stores.bizId)/\(sku)")
        #expect(response.status == .ok)
        let body = try object(response)
        return (body["available"] as? Int ?? -1, body["reserved"] as? Int ?? -1)
    }

    @Test("the README's curl sequence: set 10, reserve 3, read 7/3, cancel, read 10/0")
    func happyPath() async throws {
        try await withClient { client, stores in
            let put = try await Self.send(client, .put, "/v1/stock/\(stores.bizId)/1", #"{"stock": 10}"#)
            #expect(put.status == .ok)
            let reserve = #"{"orderId": "o-1", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 3}]}"#
            let created = try await Self.send(client, .post, "/v1/reservations", reserve)
            #expect(created.status == .created)
            let body = try Self.object(created)
            #expect(body["status"] as? String == "reserved")
            #expect((body["items"] as? [[String: Any]])?.first?["reserved"] as? Int == 3)
            #expect(body["expiresAt"] is String)
            #expect(try await Self.stock(client, stores, 1) == (7, 3))

            let replay = try await Self.send(client, .post, "/v1/reservations", reserve)
            #expect(replay.status == .ok)
            #expect(replay.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await Self.stock(client, stores, 1) == (7, 3))

            let read = try await Self.send(client, .get, "/v1/businesses/\(stores.bizId)/reservations/o-1")
            #expect(read.status == .ok)
            #expect(try Self.object(read)["persisted"] as? Bool == false)

            let cancel = try await Self.send(client, .post, "/v1/businesses/\(stores.bizId)/reservations/o-1/cancel")
            #expect(cancel.status == .ok)
            #expect(try Self.object(cancel)["status"] as? String == "cancelled")
            let cancelAgain = try await Self.send(client, .post, "/v1/businesses/\(stores.bizId)/reservations/o-1/cancel")
            #expect(cancelAgain.status == .ok)
            #expect(cancelAgain.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await Self.stock(client, stores, 1) == (10, 0))

            let again = try await Self.send(client, .post, "/v1/reservations", reserve)
            #expect(again.status == .conflict)
            #expect(try Self.object(again)["type"] as? String == "https://inventory.example/problems/order-closed")
        }
    }

    @Test("domain refusals: 409 with per-item numbers, 422 for a changed body, 404 unknown, 409 confirm after cancel")
    func refusals() async throws {
        try await withClient { client, stores in
            try await Self.send(client, .put, "/v1/stock/\(stores.bizId)/1", #"{"stock": 2}"#)
            let short = try await Self.send(
                client, .post, "/v1/reservations",
                #"{"orderId": "s-1", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 3}]}"#
            )
            #expect(short.status == .conflict)
            #expect(short.headers[.contentType] == "application/problem+json")
            let items = try Self.object(short)["items"] as? [[String: Any]]
            #expect(items?.first?["requested"] as? Int == 3)
            #expect(items?.first?["available"] as? Int == 2)

            try await Self.send(
                client, .post, "/v1/reservations",
                #"{"orderId": "s-2", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#
            )
            let changed = try await Self.send(
                client, .post, "/v1/reservations",
                #"{"orderId": "s-2", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 2}]}"#
            )
            #expect(changed.status == .unprocessableContent)
            #expect((try await Self.send(client, .get, "/v1/businesses/\(stores.bizId)/reservations/none")).status == .notFound)
            #expect((try await Self.send(client, .post, "/v1/businesses/\(stores.bizId)/reservations/none/confirm")).status == .notFound)
            #expect((try await Self.send(client, .post, "/v1/businesses/\(stores.bizId)/reservations/s-2/confirm")).status == .ok)
            #expect((try await Self.send(client, .post, "/v1/businesses/\(stores.bizId)/reservations/s-2/cancel")).status == .conflict)
            #expect((try await Self.send(client, .get, "/v1/stock/\(stores.bizId)/9")).status == .notFound)
            #expect(try await Self.stock(client, stores, 1) == (1, 0))
        }
    }

    /// Every malformed request of the issue's list: a 4xx problem, and the stock exactly as it was.
    @Test("malformed input gets a 4xx problem+json and changes nothing")
    func malformedInput() async throws {
        try await withClient { client, stores in
            try await Self.send(client, .put, "/v1/stock/\(stores.bizId)/1", #"{"stock": 10}"#)
            let biz = stores.bizId
            func order(_ items: String, extra: String = "") -> String {
                #"{"orderId": "bad-1", "bizId": "\#(biz)", "items": \#(items)\#(extra)}"#
            }
            let cases: [(String, HTTPRequest.Method, String, String?, HTTPFields, Int)] = [
                ("malformed JSON", .post, "/v1/reservations", #"{"orderId": "#, Self.json, 400),
                ("truncated", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}"#), Self.json, 400),
                ("not an object", .post, "/v1/reservations", "[1, 2]", Self.json, 400),
                ("empty body", .post, "/v1/reservations", "", Self.json, 400),
                ("missing orderId", .post, "/v1/reservations", #"{"items": [{"skuId": 1, "quantity": 1}]}"#, Self.json, 422),
                ("missing items", .post, "/v1/reservations", #"{"orderId": "bad-1"}"#, Self.json, 422),
                ("orderId wrong type", .post, "/v1/reservations", #"{"orderId": 5, "items": [{"skuId": 1, "quantity": 1}]}"#, Self.json, 422),
                ("quantity as string", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": "1"}]"#), Self.json, 422),
                ("quantity zero", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 0}]"#), Self.json, 422),
                ("quantity negative", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": -1}]"#), Self.json, 422),
                ("quantity above max", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1000001}]"#), Self.json, 422),
                ("quantity beyond 64 bits", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 99999999999999999999999}]"#), Self.json, 422),
                ("quantity fractional", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1.5}]"#), Self.json, 422),
                ("skuId zero", .post, "/v1/reservations", order(#"[{"skuId": 0, "quantity": 1}]"#), Self.json, 422),
                ("skuId negative", .post, "/v1/reservations", order(#"[{"skuId": -1, "quantity": 1}]"#), Self.json, 422),
                ("skuId above Int64.max", .post, "/v1/reservations", order(#"[{"skuId": 9223372036854775808, "quantity": 1}]"#), Self.json, 422),
                ("skuId above Int64.max in path", .put, "/v1/stock/\(biz)/9223372036854775808", #"{"stock": 1}"#, Self.json, 400),
                ("skuId beyond 64 bits", .post, "/v1/reservations", order(#"[{"skuId": 18446744073709551616, "quantity": 1}]"#), Self.json, 422),
                ("item not an object", .post, "/v1/reservations", order(#"[1]"#), Self.json, 422),
                ("no items", .post, "/v1/reservations", order("[]"), Self.json, 422),
                ("too many items", .post, "/v1/reservations", order("[" + (1...51).map { #"{"skuId": \#($0), "quantity": 1}"# }.joined(separator: ",") + "]"), Self.json, 422),
                ("skuId twice", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}, {"skuId": 1, "quantity": 2}]"#), Self.json, 422),
                ("bad orderId chars", .post, "/v1/reservations", #"{"orderId": "a b/c", "items": [{"skuId": 1, "quantity": 1}]}"#, Self.json, 422),
                ("orderId too long", .post, "/v1/reservations", #"{"orderId": "\#(String(repeating: "a", count: 65))", "items": [{"skuId": 1, "quantity": 1}]}"#, Self.json, 422),
                ("bad bizId chars", .post, "/v1/reservations", #"{"orderId": "bad-1", "bizId": "Shop!", "items": [{"skuId": 1, "quantity": 1}]}"#, Self.json, 422),
                ("ttl zero", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#, extra: #", "ttlSeconds": 0"#), Self.json, 422),
                ("ttl too long", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#, extra: #", "ttlSeconds": 86401"#), Self.json, 422),
                ("unknown shortage", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#, extra: #", "shortage": "maybe""#), Self.json, 422),
                ("oversized body", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#, extra: #", "pad": "\#(String(repeating: "x", count: 70_000))""#), Self.json, 413),
                ("no content type", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#), [:], 415),
                ("wrong content type", .post, "/v1/reservations", order(#"[{"skuId": 1, "quantity": 1}]"#), [.contentType: "text/plain"], 415),
                ("stock negative", .put, "/v1/stock/\(biz)/1", #"{"stock": -1}"#, Self.json, 422),
                ("stock wrong type", .put, "/v1/stock/\(biz)/1", #"{"stock": "ten"}"#, Self.json, 422),
                ("stock missing", .put, "/v1/stock/\(biz)/1", #"{}"#, Self.json, 422),
                ("infinite wrong type", .put, "/v1/stock/\(biz)/1", #"{"stock": 1, "infinite": "yes"}"#, Self.json, 422),
                ("adjust zero delta", .post, "/v1/stock/\(biz)/1/adjustments", #"{"adjustmentId": "a1", "delta": 0}"#, Self.json, 422),
                ("adjust no id", .post, "/v1/stock/\(biz)/1/adjustments", #"{"delta": 3}"#, Self.json, 422),
                ("adjust reason with a tab", .post, "/v1/stock/\(biz)/1/adjustments", #"{"adjustmentId": "a1", "delta": 3, "reason": "a\tb"}"#, Self.json, 422),
                ("bad skuId in path", .get, "/v1/stock/\(biz)/abc", nil, [:], 400),
                ("skuId 0 in path", .put, "/v1/stock/\(biz)/0", #"{"stock": 1}"#, Self.json, 400),
                ("skuId beyond 64 bits in path", .get, "/v1/stock/\(biz)/18446744073709551616", nil, [:], 400),
                ("bad bizId in path", .get, "/v1/stock/BAD!/1", nil, [:], 400),
                ("unknown path", .get, "/v1/nothing", nil, [:], 404),
                ("wrong method", .delete, "/v1/reservations", nil, [:], 405),
                ("wrong method on stock", .post, "/v1/stock/\(biz)/1", #"{"stock": 1}"#, Self.json, 405),
            ]
            for (name, method, uri, body, headers, status) in cases {
                let response = try await Self.send(client, method, uri, body, headers: headers)
                #expect(response.status.code == status, "\(name): got \(response.status.code)")
                #expect(response.headers[.contentType] == "application/problem+json", "\(name)")
                let problem = try Self.object(response)
                #expect(problem["status"] as? Int == status, "\(name)")
                #expect((problem["detail"] as? String)?.isEmpty == false, "\(name)")
            }
            #expect(try await Self.stock(client, stores, 1) == (10, 0))
            #expect((try await Self.send(client, .get, "/v1/businesses/\(stores.bizId)/reservations/bad-1")).status == .notFound)
        }
    }

    @Test("a sane X-Request-Id is echoed, on errors too; a missing or insane one is replaced by a fresh id")
    func requestId() async throws {
        try await withClient { client, _ in
            let name = HTTPField.Name("X-Request-Id")!
            let given = try await Self.send(client, .get, "/healthz", headers: [name: "abc-123"])
            #expect(given.headers[name] == "abc-123")
            let missing = try await Self.send(client, .get, "/healthz", headers: [:])
            #expect(missing.headers[name]?.isEmpty == false)
            let insane = try await Self.send(client, .get, "/nowhere", headers: [name: String(repeating: "x", count: 500)])
            #expect(insane.status == .notFound)
            #expect(insane.headers[name]?.count ?? 0 <= 128)
            #expect(insane.headers[name]?.isEmpty == false)
            let problem = try await Self.send(client, .post, "/v1/reservations", "{", headers: [name: "req-9", .contentType: "application/json"])
            #expect(problem.status == .badRequest)
            #expect(problem.headers[name] == "req-9")
        }
    }

    @Test("health and readiness")
    func health() async throws {
        try await withClient { client, _ in
            #expect((try await Self.send(client, .get, "/healthz")).status == .ok)
            let ready = try await Self.send(client, .get, "/readyz")
            #expect(ready.status == .ok)
            #expect(try Self.object(ready)["ready"] as? Bool == true)
        }
    }
}
