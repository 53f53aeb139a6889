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

/// Code uploads check before they parse, and stop at the first limit (issue 22, item 2): an upload for an item
/// without a pool is refused unread, one past a limit is refused as soon as the limit is reached.
@Suite("Code uploads are bounded")
struct CodeUploadTests {
    static let text: HTTPFields = [.contentType: "text/plain"]

    func withClient(_ body: @escaping @Sendable (any TestClientProtocol, TestStores) async throws -> Void) async throws {
        try await TestStores.with { stores in
            var logger = Logger(label: "upload-test")
            logger.logLevel = .error
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: logger)
            try await app.test(.router) { client in try await body(client, stores) }
        }
    }

    static func object(_ response: TestResponse) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]) ?? [:]
    }

    @Test("no pool: 404 before the body is looked at, even a body that is not codes at all")
    func poolFirst() async throws {
        try await withClient { client, stores in
            let garbage = String(repeating: "not a code | at all\n", count: 1000)
            let response = try await client.execute(
                uri: "/v1/stock/\(stores.bizId)/1/codes", method: .post, headers: Self.text, body: ByteBuffer(string: garbage)
            )
            #expect(response.status == .notFound)
            #expect((Self.object(response)["type"] as? String)?.hasSuffix("no-code-pool") == true)
        }
    }

    @Test("past 100,000 codes or at 100 bad lines the upload is refused, nothing loaded; CRLF, blanks and repeats are fine")
    func limits() async throws {
        try await withClient { client, stores in
            let json: HTTPFields = [.contentType: "application/json"]
            let pool = try await client.execute(
                uri: "/v1/stock/\(stores.bizId)/1/pool", method: .put, headers: json, body: ByteBuffer(string: #"{"kind": "one-time"}"#)
            )
            #expect(pool.status == .ok)
            let uri = "/v1/stock/\(stores.bizId)/1/codes"

            let tooMany = (0...CodeUploadLimits.maxCodes).map { "C\($0)" }.joined(separator: "\n")
            let refused = try await client.execute(uri: uri, method: .post, headers: Self.text, body: ByteBuffer(string: tooMany))
            #expect(refused.status == .unprocessableContent)
            #expect((Self.object(refused)["detail"] as? String)?.contains("at most 100000 codes") == true)

            let bad = (0..<150).map { "bad code \($0)" }.joined(separator: "\n")
            let badLines = try await client.execute(uri: uri, method: .post, headers: Self.text, body: ByteBuffer(string: bad))
            #expect(badLines.status == .unprocessableContent)
            #expect((Self.object(badLines)["errors"] as? [Any])?.count == 100)
            #expect(try await stores.engine.stock(stores.item(1)).available == 0)

            let fine = try await client.execute(
                uri: uri, method: .post, headers: Self.text, body: ByteBuffer(string: "A-1\r\nA-2\n\n  \nA-1\nA-3")
            )
            #expect(fine.status == .ok)
            #expect(Self.object(fine)["added"] as? Int == 3)
            #expect(Self.object(fine)["duplicates"] as? Int == 1)
            #expect(try await stores.engine.stock(stores.item(1)).available == 3)
        }
    }
}

/// The upload limit as the API states it (README, OpenAPI).
enum CodeUploadLimits {
    static let maxCodes = 100_000
}

extension CodeUploadTests {
    /// Issue 22 item 3: an export loaded the whole code set and sorted it in memory (300k codes: 19.5 MB each, 16
    /// at once took the service to 1 GB), and a pool's codes had no bound.
    @Test("the export is written a page at a time: 2,500 codes over several SSCAN pages, each named once")
    func exportInPages() async throws {
        try await withClient { client, stores in
            let json: HTTPFields = [.contentType: "application/json"]
            let uri = "/v1/stock/\(stores.bizId)/1"
            #expect(try await client.execute(uri: uri + "/pool", method: .put, headers: json, body: ByteBuffer(string: #"{"kind": "one-time"}"#)).status == .ok)
            let codes = (0..<2_500).map { "P\($0)" }
            let upload = try await client.execute(
                uri: uri + "/codes", method: .post, headers: Self.text, body: ByteBuffer(string: codes.joined(separator: "\n"))
            )
            #expect(upload.status == .ok)
            let export = try await client.execute(uri: uri + "/codes", method: .get)
            #expect(export.status == .ok)
            #expect(export.headers[.contentType] == "text/plain; charset=utf-8")
            let lines = String(buffer: export.body).split(separator: "\n").map(String.init)
            #expect(lines.count == codes.count)
            #expect(Set(lines) == Set(codes))

            let none = try await client.execute(uri: "/v1/stock/\(stores.bizId)/2/codes", method: .get)
            #expect(none.status == .notFound, "no pool: an answer, not an empty 200")
        }
    }

    @Test("a pool has at most INVENTORY_MAX_POOL_CODES codes: an upload past it is refused whole (409), nothing loaded")
    func poolCap() async throws {
        try await TestStores.with { stores in
            let engine = try await stores.engine { $0.maxPoolCodes = 5 }
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            #expect(try await engine.loadCodes(stores.item(1), ["A", "B", "C", "D"]) == CodeLoadOutcome(added: 4, duplicates: 0))
            await #expect(
                throws: InventoryError.poolConflict(
                    "a pool has at most 5 codes (INVENTORY_MAX_POOL_CODES); this one has 4: nothing was loaded"
                )
            ) {
                try await engine.loadCodes(stores.item(1), ["A", "E", "F"])
            }
            #expect(try await engine.unusedCodes(stores.item(1)) == ["A", "B", "C", "D"])
            #expect(try await engine.stock(stores.item(1)).available == 4)
            #expect(try await stores.mysqlStock(1) == 4)
            // Known codes do not count twice: the fifth fits.
            #expect(try await engine.loadCodes(stores.item(1), ["A", "E"]) == CodeLoadOutcome(added: 1, duplicates: 1))
        }
    }
}
