import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryAPI
import InventoryTestSupport
import Logging
import NIOCore
import Testing

/// Orders scoped by business over HTTP (issue 22 item 5): `/v1/businesses/{bizId}/reservations/{orderId}…` names one
/// business's order; the old paths are business `default`'s. Before, `GET /v1/reservations/{id}` showed any
/// business's order and any caller could confirm or cancel it.
@Suite("HTTP: orders scoped by business")
struct BusinessOrdersAPITests {
    @Test("one business can neither read, confirm, cancel nor block another's order; the old paths are business default's")
    func isolation() async throws {
        let contract = try OpenAPIContract()
        try await APITests().withClient { client, stores in
            let (a, b) = (stores.bizId, stores.bizId + "b")
            // A business default item of this test alone (default is shared by every test).
            let sku = UInt64.random(in: 1_000_000_000...9_000_000_000)
            let order = "o-\(stores.bizId)"
            func send(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil) async throws -> TestResponse {
                let response = try await APITests.send(client, method, uri, body)
                contract.check("\(method) \(uri)", method, uri, body: body, response)
                return response
            }
            for (biz, item) in [(a, UInt64(1)), (b, UInt64(1)), ("default", sku)] {
                #expect(try await send(.put, "/v1/stock/\(biz)/\(item)", #"{"stock": 10}"#).status == .ok)
            }
            let reserveA = #"{"orderId": "\#(order)", "items": [{"skuId": 1, "quantity": 2}]}"#
            #expect(try await send(.post, "/v1/businesses/\(a)/reservations", reserveA).status == .created)
            // The same orderId in b and in default: their own orders (before: 422, the id was taken).
            let reserveB = #"{"orderId": "\#(order)", "bizId": "\#(b)", "items": [{"skuId": 1, "quantity": 3}]}"#
            let heldB = try await send(.post, "/v1/reservations", reserveB)
            #expect(heldB.status == .created)
            // Where b's order is followed up: its business's paths (the short ones are business default's).
            #expect(heldB.headers[.location] == "/v1/businesses/\(b)/reservations/\(order)")
            let reserveDefault = #"{"orderId": "\#(order)", "items": [{"skuId": \#(sku), "quantity": 4}]}"#
            #expect(try await send(.post, "/v1/reservations", reserveDefault).status == .created)

            func quantity(_ uri: String) async throws -> Int? {
                let response = try await send(.get, uri)
                guard response.status == .ok else { return nil }
                let body = try APITests.object(response)
                let lines = body["items"] as? [[String: Any]] ?? []
                #expect(body["orderId"] as? String == order)
                return lines.first?["reserved"] as? Int
            }
            #expect(try await quantity("/v1/businesses/\(a)/reservations/\(order)") == 2)
            #expect(try await quantity("/v1/businesses/\(b)/reservations/\(order)") == 3)
            #expect(try await quantity("/v1/reservations/\(order)") == 4)
            #expect(try await quantity("/v1/businesses/default/reservations/\(order)") == 4)
            #expect(try await send(.get, "/v1/businesses/\(a)x/reservations/\(order)").status == .notFound)

            // a confirms and cancels only its own.
            #expect(try await send(.post, "/v1/businesses/\(a)/reservations/\(order)/confirm").status == .ok)
            #expect(try await send(.post, "/v1/businesses/\(b)/reservations/\(order)/cancel").status == .ok)
            let statuses = try await [a, b].asyncMap { biz in
                try APITests.object(try await send(.get, "/v1/businesses/\(biz)/reservations/\(order)"))["status"] as? String
            }
            #expect(statuses == ["confirmed", "cancelled"])
            #expect(try APITests.object(try await send(.get, "/v1/reservations/\(order)"))["status"] as? String == "reserved")

            // A cancel of an unknown id blocks it in its business only.
            #expect(try await send(.post, "/v1/businesses/\(a)/reservations/x-\(order)/cancel").status == .ok)
            let lateA = #"{"orderId": "x-\#(order)", "items": [{"skuId": 1, "quantity": 1}]}"#
            #expect(try await send(.post, "/v1/businesses/\(a)/reservations", lateA).status == .conflict)
            #expect(try await send(.post, "/v1/businesses/\(b)/reservations", lateA).status == .created)

            // A body naming another business than the path: 422, nothing held.
            let mismatch = #"{"orderId": "y-\#(order)", "bizId": "\#(b)", "items": [{"skuId": 1, "quantity": 1}]}"#
            let refused = try await send(.post, "/v1/businesses/\(a)/reservations", mismatch)
            #expect(refused.status == .unprocessableContent)
            #expect(try await send(.get, "/v1/businesses/\(b)/reservations/y-\(order)").status == .notFound)
            #expect(try await send(.get, "/v1/businesses/\(a)/reservations/y-\(order)").status == .notFound)
            #expect(try await send(.get, "/v1/businesses/Bad!/reservations/\(order)").status == .badRequest)

            // Exact stock: a 10 − 2 sold; b 10 − 1 (x-) held, its o- cancelled; default 10 − 4 held.
            let levels = try await [(a, UInt64(1)), (b, UInt64(1)), ("default", sku)].asyncMap { biz, item in
                let level = try await stores.engine.stock(StockItemID(bizId: biz, skuId: item))
                return [level.available, level.reserved]
            }
            #expect(levels == [[8, 0], [9, 1], [6, 4]])
            _ = try await stores.engine.cancel(orderId: order, bizId: "default")
        }
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
