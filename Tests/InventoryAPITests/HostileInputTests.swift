import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryAPI
import InventorySettings
import InventoryTestSupport
import Logging
import MySQLClient
import NIOCore
import RedisClient
import Testing

/// Hostile input (issue 6): a generated corpus of malformed requests on every route of API v1, and misbehaving
/// clients on a live server. Every request gets a 4xx problem, none a 5xx, and the stores are exactly as before.
///
/// The corpus extends APITests' hand-written malformed-input cases: it is generated from a fixed seed (the same on
/// every run) and judged by oracles rather than by hand: the OpenAPI document's request schemas (a body the schema
/// accepts is a real request, so it is left out; one it refuses must get 422), Foundation's JSON parser (what does
/// not parse must get 400) and the path parameters' schemas.
@Suite("Hostile input")
struct HostileInputTests {
    static let json: HTTPFields = [.contentType: "application/json"]

    static var quietLogger: Logger {
        var logger = Logger(label: "hostile-input-test")
        logger.logLevel = .critical
        return logger
    }

    @Test("a generated corpus of malformed requests on every route: 4xx problem+json, never 5xx, stores unchanged")
    func corpus() async throws {
        let contract = try OpenAPIContract()
        try await TestStores.with { stores in
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: Self.quietLogger)
            try await app.test(.router) { client in
                try await Self.seed(client, stores)
                let before = try await Self.snapshot(stores)
                var corpus = HostileCorpus(bizId: stores.bizId, contract: contract, seed: 0x1_5EED_600D)
                let cases = corpus.generate()
                var failures: [String] = []
                var statuses: [Int: Int] = [:]
                for hostile in cases {
                    let response = try await client.execute(
                        uri: hostile.uri, method: hostile.method, headers: hostile.headers,
                        body: hostile.body.map { ByteBuffer(bytes: $0) }
                    )
                    let status = Int(response.status.code)
                    statuses[status, default: 0] += 1
                    if let failure = Self.judge(hostile, response) { failures.append(failure) }
                    contract.check(
                        "\(hostile.category): \(hostile.label)", hostile.method, hostile.uri,
                        body: hostile.body.flatMap { String(validating: $0, as: UTF8.self) }, response
                    )
                }
                let after = try await Self.snapshot(stores)
                // Percent-encoded ids are the same ids (schemathesis sends ":" as %3A).
                let encoded = try await client.execute(uri: "/v1/businesses/\(stores.bizId)/reservations/h%2Dlive", method: .get)
                #expect(encoded.status == .ok)
                #expect(try await client.execute(uri: "/v1/stock/\(stores.bizId)/%31", method: .get).status == .ok)
                let byCategory = Dictionary(grouping: cases, by: \.category).mapValues(\.count)
                print("hostile input: \(cases.count) requests \(byCategory.sorted { $0.key < $1.key }); answers \(statuses.sorted { $0.key < $1.key })")
                #expect(cases.count >= 1000, "the corpus shrank to \(cases.count) cases")
                #expect(failures.isEmpty, "\(failures.count) of \(cases.count) answers were wrong, e.g.:\n\(failures.prefix(25).joined(separator: "\n"))")
                #expect(statuses.keys.allSatisfy { (400..<500).contains($0) })
                let changed = Self.difference(before, after)
                #expect(changed.isEmpty, "the stores changed:\n\(changed.prefix(20).joined(separator: "\n"))")
            }
        }
    }

    @Test("invented request methods are answered but do not make new metric series")
    func inventedMethodsAndMetrics() async throws {
        let registry = MetricsTests.registry
        try await TestStores.with { stores in
            let app = try buildApplication(
                engine: stores.engine, configuration: ServiceConfiguration(), metrics: registry, logger: Self.quietLogger
            )
            try await app.test(.router) { client in
                var generator = SeededGenerator(seed: 7)
                let invented = (0..<50).map { _ in "ZZ" + HostileCorpus.token(&generator, length: 8) }
                for method in invented {
                    let response = try await client.execute(uri: "/v1/reservations", method: HTTPRequest.Method(method)!)
                    #expect(response.status == .methodNotAllowed, "\(method)")
                    #expect(response.headers[.contentType] == "application/problem+json")
                }
                _ = try await client.execute(uri: "/healthz", method: .get)
                let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
                #expect(metrics.contains("hb_requests"), "the standard methods are still counted")
                let leaked = invented.filter { metrics.contains($0) }
                #expect(leaked.isEmpty, "methods that made metric series: \(leaked.prefix(5))")
            }
        }
    }

    @Test("slow and silent clients: others are still served, and the slow ones are cut off after the timeout")
    func slowClients() async throws {
        try await TestStores.with { stores in
            var configuration = ServiceConfiguration()
            // Long enough for the normal clients below to be served well before the slow ones are cut off, even
            // with the rest of the suite running beside this test on two cores (at 5 s, a cluster pass once served
            // the first normal client after 9 slow ones were cut off). The test lasts about as long.
            let timeout = 15
            configuration.httpIdleTimeoutSeconds = timeout
            let app = try buildApplication(engine: stores.engine, configuration: configuration, logger: Self.quietLogger)
            try await app.test(.live) { client in
                let port = try #require(client.port)
                let biz = stores.bizId
                let set = try await WireExchange.send(port: port, .put, "/v1/stock/\(biz)/1", #"{"stock": 100}"#)
                #expect(set.status == 200)

                // Connections that send nothing; that drip a head that never ends; that drip a body, a byte per
                // 100 ms (a reservation, which must not be made).
                var silent: [RawConnection] = []
                for _ in 0..<40 { silent.append(try await RawConnection.connect(port: port)) }
                var headDrips: [RawConnection] = []
                for _ in 0..<10 {
                    let connection = try await RawConnection.connect(port: port)
                    try await connection.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                    headDrips.append(connection)
                }
                let slowBody = #"{"orderId": "slow-1", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#
                var bodyDrips: [RawConnection] = []
                for _ in 0..<10 {
                    let connection = try await RawConnection.connect(port: port)
                    try await connection.send(
                        "POST /v1/reservations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                            + "Content-Length: \(slowBody.utf8.count + 1000)\r\n\r\n"
                    )
                    bodyDrips.append(connection)
                }
                let drips = headDrips + bodyDrips
                // Until the checks below are done: the bodies never end.
                let dripping = Task {
                    let bytes = Array(slowBody.utf8) + Array(repeating: UInt8(ascii: " "), count: 1000)
                    for index in 0..<(timeout * 20) where !Task.isCancelled {
                        for connection in drips where !connection.isClosed { try? await connection.send([bytes[index]]) }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                }

                // Meanwhile other clients are served: before the slow ones are cut off, so not behind them.
                for index in 0..<15 {
                    let health = try await WireExchange.send(port: port, .get, "/healthz")
                    let reserve = try await WireExchange.send(
                        port: port, .post, "/v1/reservations",
                        #"{"orderId": "fast-\#(index)", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#
                    )
                    let read = try await WireExchange.send(port: port, .get, "/v1/businesses/\(biz)/reservations/fast-\(index)")
                    #expect([health.status, reserve.status, read.status] as [Int] == [200, 201, 200])
                    if index == 0 {
                        let stillOpen = (silent + drips).filter { !$0.isClosed }.count
                        #expect(stillOpen == 60, "a normal client was served only after \(60 - stillOpen) slow ones were cut off")
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }

                // The slow ones are cut off: within the timeout plus scheduling slack.
                for (kind, connections) in [("silent", silent), ("head drip", headDrips), ("body drip", bodyDrips)] {
                    var open = 0
                    for connection in connections {
                        if !(await connection.closedByPeer(within: Double(timeout + 5))) { open += 1 }
                    }
                    #expect(open == 0, "\(open) \(kind) connections were still open after the timeout")
                }
                dripping.cancel()
                for connection in silent + drips { await connection.close() }
                let after = try await WireExchange.send(port: port, .get, "/v1/businesses/\(biz)/reservations/slow-1")
                #expect(after.status == 404, "a dripped body that never ended reserved nothing")
                #expect(try await WireExchange.send(port: port, .get, "/healthz").status == 200)
            }
        }
    }

    @Test("junk on the wire (bad request lines, headers, framing, bytes): a 4xx or a closed connection, never 5xx")
    func wireJunk() async throws {
        try await TestStores.with { stores in
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: Self.quietLogger)
            try await app.test(.live) { client in
                let port = try #require(client.port)
                let biz = stores.bizId
                #expect(try await WireExchange.send(port: port, .put, "/v1/stock/\(biz)/1", #"{"stock": 50}"#).status == 200)
                let body = #"{"orderId": "wire-1", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#
                let head = "POST /v1/reservations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                let junk: [(String, [UInt8])] = [
                    ("invalid UTF-8 in the path", Array("GET /v1/reservations/".utf8) + [0xFF, 0xFE, 0xC0, 0xAF] + Array(" HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                    ("control character in the path", Array("GET /v1/reservations/a\u{01}b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                    ("space in the path", Array("GET /v1/reservations/a b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                    ("no HTTP version", Array("GET /healthz\r\n\r\n".utf8)),
                    ("unknown HTTP version", Array("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".utf8)),
                    ("lower-case method", Array("get /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                    ("garbage request line", Array("\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{FC}\u{03}\u{03}\r\n\r\n".utf8)),
                    ("HTTP/2 preface on HTTP/1.1", Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)),
                    ("absolute-form path", Array("GET http://evil.example/v1/reservations/x HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                    ("header without a colon", Array("GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".utf8)),
                    ("header with a NUL", Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\n\r\n".utf8)),
                    ("a 100 KB header", Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n".utf8)),
                    ("2000 headers", Array(("GET /healthz HTTP/1.1\r\nHost: x\r\n" + (0..<2000).map { "X-H\($0): v\r\n" }.joined() + "\r\n").utf8)),
                    ("negative Content-Length", Array((head + "Content-Length: -1\r\n\r\n" + body).utf8)),
                    ("non-numeric Content-Length", Array((head + "Content-Length: ten\r\n\r\n" + body).utf8)),
                    ("two different Content-Lengths", Array((head + "Content-Length: 5\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body).utf8)),
                    ("Content-Length beyond 64 bits", Array((head + "Content-Length: 99999999999999999999999\r\n\r\n" + body).utf8)),
                    ("Content-Length and chunked", Array((head + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + body).utf8)),
                    ("bad chunk size", Array((head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + "\r\n0\r\n\r\n").utf8)),
                    ("unknown transfer coding", Array((head + "Transfer-Encoding: gzip\r\n\r\n" + body).utf8)),
                    ("Content-Length above the limit", Array((head + "Content-Length: 10000000\r\n\r\n").utf8) + Array(repeating: UInt8(ascii: "x"), count: 200_000)),
                    ("chunked body above the limit", Array((head + "Transfer-Encoding: chunked\r\n\r\n").utf8) + (0..<20).flatMap { _ in Array("1000\r\n\(String(repeating: "x", count: 4096))\r\n".utf8) } + Array("0\r\n\r\n".utf8)),
                    ("body shorter than Content-Length, then close", Array((head + "Content-Length: 500\r\n\r\n" + body).utf8)),
                ]
                var outcomes: [String] = []
                for (label, bytes) in junk {
                    let connection = try await RawConnection.connect(port: port)
                    try? await connection.send(bytes)
                    if label.hasSuffix("then close") { await connection.close() }
                    let received = await connection.receive(within: 3) { WireExchange.parse($0) != nil }
                    await connection.close()
                    guard let answer = WireExchange.parse(received) else {
                        outcomes.append("\(label): closed")
                        continue
                    }
                    outcomes.append("\(label): \(answer.status)\(answer.body.isEmpty ? " (no body)" : "")")
                    #expect((400..<500).contains(answer.status), "\(label): got \(answer.status)")
                    if !answer.body.isEmpty {
                        #expect(answer.headers["content-type"] == "application/problem+json", "\(label): \(answer.headers)")
                    }
                }
                print("wire junk: \(outcomes.joined(separator: "; "))")
                #expect(try await WireExchange.send(port: port, .get, "/v1/businesses/\(biz)/reservations/wire-1").status == 404)
                #expect(try await WireExchange.send(port: port, .get, "/v1/stock/\(biz)/1").status == 200)
            }
        }
    }

    @Test("the slow-client timeout is on by default and read from INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS")
    func timeoutSetting() throws {
        #expect(ServiceConfiguration().httpIdleTimeoutSeconds == 10)
        #expect(try ServiceConfiguration.fromEnvironment(["INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS": "30"]).httpIdleTimeoutSeconds == 30)
        #expect(try ServiceConfiguration.fromEnvironment(["INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS": "0"]).httpIdleTimeoutSeconds == 0)
        #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration.fromEnvironment(["INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS": "-1"])
        }
    }

    @Test("INVENTORY_CLOCK_SKEW_MS shifts the engine's clock, 0 by default, refused out of range")
    func clockSkewSetting() throws {
        let plain = try ServiceConfiguration.fromEnvironment([:])
        #expect(plain.clockSkewMilliseconds == 0)
        let skewed = try ServiceConfiguration.fromEnvironment(["INVENTORY_CLOCK_SKEW_MS": "2000"])
        let before = plain.engine.clock()
        let shifted = skewed.engine.clock()
        let after = plain.engine.clock()
        #expect(shifted >= before + 2000 && shifted <= after + 2000)
        #expect(try ServiceConfiguration.fromEnvironment(["INVENTORY_CLOCK_SKEW_MS": "-3600000"]).clockSkewMilliseconds == -3_600_000)
        #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration.fromEnvironment(["INVENTORY_CLOCK_SKEW_MS": "3600001"])
        }
    }

    // MARK: - Helpers

    /// Items, orders in every state and an adjustment, so that the hostile requests have something to damage.
    static func seed(_ client: any TestClientProtocol, _ stores: TestStores) async throws {
        let biz = stores.bizId
        func send(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, _ status: HTTPResponse.Status) async throws {
            let response = try await client.execute(uri: uri, method: method, headers: json, body: body.map { ByteBuffer(string: $0) })
            #expect(response.status == status, "seeding \(method) \(uri): \(String(buffer: response.body))")
        }
        try await send(.put, "/v1/stock/\(biz)/1", #"{"stock": 100, "dangerNum": 5}"#, .ok)
        try await send(.put, "/v1/stock/\(biz)/2", #"{"stock": 5, "backorderLimit": 2}"#, .ok)
        for order in ["h-live", "h-done", "h-gone"] {
            try await send(
                .post, "/v1/reservations", #"{"orderId": "\#(order)", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 2}], "ttlSeconds": 3600}"#,
                .created
            )
        }
        try await send(.post, "/v1/businesses/\(biz)/reservations/h-done/confirm", nil, .ok)
        try await send(.post, "/v1/businesses/\(biz)/reservations/h-gone/cancel", nil, .ok)
        try await send(.post, "/v1/stock/\(biz)/2/adjustments", #"{"adjustmentId": "adj-h", "delta": 3, "reason": "seed"}"#, .ok)
    }

    /// Everything the test's requests could have changed: its Redis keys with their contents, and its business's rows.
    static func snapshot(_ stores: TestStores) async throws -> [String] {
        var lines: [String] = []
        // An unknown item's negative entry and an item's "made" marker (`KeyLayout.absent`, `.made`) are short-lived
        // notes about MySQL, not state.
        for key in try await stores.keys(matching: "*") where !key.hasSuffix(":absent") && !key.hasSuffix(":made") {
            let type = try await stores.redis.command("TYPE", key).text ?? "?"
            let content: RedisValue
            switch type {
            case "hash": content = try await stores.redis.command("HGETALL", key)
            case "string": content = try await stores.redis.command("GET", key)
            case "stream": content = try await stores.redis.command("XRANGE", key, "-", "+")
            case "zset": content = try await stores.redis.command("ZRANGE", key, "0", "-1", "WITHSCORES")
            case "set": content = try await stores.redis.command("SMEMBERS", key)
            case "list": content = try await stores.redis.command("LRANGE", key, "0", "-1")
            default: content = .null
            }
            // Hashes and sets come in no fixed order.
            let shown = type == "hash" || type == "set" ? (content.array ?? []).map(\.description).sorted().description : content.description
            lines.append("redis \(key) \(type) \(shown)")
        }
        let biz: [MySQLValue] = [.string(stores.bizId)]
        let stock = try await stores.mysql.query(
            "SELECT sku_id, stock, is_infinite, danger_num, backorder_limit, version FROM stock WHERE biz_id = ? ORDER BY sku_id", biz
        )
        lines += stock.rows.map { row in
            "stock " + ["sku_id", "stock", "is_infinite", "danger_num", "backorder_limit", "version"]
                .map { "\($0)=\(row.int64($0).map(String.init) ?? "null")" }.joined(separator: " ")
        }
        let ledger = try await stores.mysql.query(
            "SELECT sku_id, delta, stock_after, reason, source FROM stock_ledger WHERE biz_id = ? ORDER BY id", biz
        )
        lines += ledger.rows.map { row in
            "ledger \(row.int64("sku_id") ?? 0) \(row.int64("delta") ?? 0) \(row.int64("stock_after") ?? 0) \(row.string("reason") ?? "") \(row.string("source") ?? "")"
        }
        lines += try await stores.journalRows().map { "journal \($0)" }
        return lines
    }

    static func difference(_ before: [String], _ after: [String]) -> [String] {
        let gone = Set(before).subtracting(after).sorted().map { "- \($0.prefix(300))" }
        let new = Set(after).subtracting(before).sorted().map { "+ \($0.prefix(300))" }
        return gone + new
    }

    /// What is wrong with one answer, or nil.
    static func judge(_ hostile: HostileCase, _ response: TestResponse) -> String? {
        let status = Int(response.status.code)
        let name = "\(hostile.category): \(String(reflecting: hostile.label)) (\(hostile.method.rawValue) \(String(reflecting: String(hostile.uri.prefix(120)))))"
        if !hostile.expected.contains(status) {
            let sent = hostile.body.map { String(reflecting: String(decoding: $0.prefix(300), as: UTF8.self)) } ?? "no body"
            return "\(name): \(status), expected \(hostile.expected.sorted()): \(String(buffer: response.body).prefix(200)); sent \(sent)"
        }
        if response.headers[.contentType] != "application/problem+json" {
            return "\(name): Content-Type \(response.headers[.contentType] ?? "none")"
        }
        guard let problem = try? JSONValue.parse(Data(response.body.readableBytesView)),
            problem["status"]?.intValue == Int64(status), problem["detail"]?.stringValue?.isEmpty == false
        else {
            return "\(name): not a problem body: \(String(buffer: response.body).prefix(200))"
        }
        return nil
    }
}

/// A request of the corpus and the answers it may get.
struct HostileCase: Sendable {
    let category: String
    let label: String
    let method: HTTPRequest.Method
    let uri: String
    let headers: HTTPFields
    let body: [UInt8]?
    let expected: Set<Int>
}

/// SplitMix64: a tiny generator with a seed, so the corpus is the same on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generates the hostile requests, category by category, and what each may be answered.
struct HostileCorpus {
    let bizId: String
    let contract: OpenAPIContract
    var generator: SeededGenerator
    private(set) var cases: [HostileCase] = []
    let maxBodyBytes = InputLimits().maxBodyBytes

    init(bizId: String, contract: OpenAPIContract, seed: UInt64) {
        self.bizId = bizId
        self.contract = contract
        self.generator = SeededGenerator(seed: seed)
    }

    /// One operation that takes a JSON body: its path, its members (key, JSON text) and where its schema is.
    struct BodyOperation {
        let name: String
        let method: HTTPRequest.Method
        let uri: String
        let template: String
        let members: [(String, String)]
    }

    var bodyOperations: [BodyOperation] {
        let item = #"{"skuId": 1, "quantity": 1}"#
        return [
            BodyOperation(
                name: "reserve", method: .post, uri: "/v1/reservations", template: "/v1/reservations",
                members: [
                    ("orderId", #""hx-1""#), ("bizId", "\"\(bizId)\""), ("userId", #""u-1""#), ("items", "[\(item)]"),
                    ("ttlSeconds", "60"), ("shortage", #""reject""#),
                ]
            ),
            BodyOperation(
                name: "set stock", method: .put, uri: "/v1/stock/\(bizId)/2", template: "/v1/stock/{bizId}/{skuId}",
                members: [("stock", "7"), ("infinite", "false"), ("dangerNum", "1"), ("backorderLimit", "3")]
            ),
            BodyOperation(
                name: "adjust", method: .post, uri: "/v1/stock/\(bizId)/2/adjustments",
                template: "/v1/stock/{bizId}/{skuId}/adjustments",
                members: [("adjustmentId", #""adj-x""#), ("delta", "-2"), ("reason", #""recount""#)]
            ),
        ]
    }

    static func object(_ members: [(String, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = Array("{".utf8)
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { bytes += Array(", ".utf8) }
            bytes += Array("\"\(key)\": ".utf8) + value
        }
        return bytes + Array("}".utf8)
    }

    mutating func generate() -> [HostileCase] {
        cases = []
        wrongMethods()
        unknownPaths()
        pathJunk()
        for operation in bodyOperations {
            fieldJunk(operation)
            structureJunk(operation)
            truncations(operation)
            mutations(operation)
            contentTypes(operation)
            sizes(operation)
        }
        absent()
        return cases
    }

    // MARK: Oracles

    /// The request schema of an operation.
    func requestSchema(_ operation: BodyOperation) -> JSONValue? {
        contract.paths[operation.template]?[operation.method.rawValue.lowercased()]?["requestBody"]
            .map(contract.resolved)?["content"]?["application/json"]?["schema"]
    }

    /// What a body with a JSON content type may be answered; nil when it is a valid request (left out).
    func expectation(_ operation: BodyOperation, _ body: [UInt8]) -> Set<Int>? {
        if body.count > maxBodyBytes { return [413] }
        guard let value = try? JSONValue.parse(Data(body)) else {
            // Foundation refuses it: as a whole (400), or one member's value when the service reads that member (422).
            return [400, 422]
        }
        guard case .object = value else { return [400] }
        guard let schema = requestSchema(operation) else { return [400, 422] }
        return contract.validator.isValid(value, against: schema) ? nil : [422]
    }

    /// Whether a path parameter's text, percent-decoded as the service reads it, is valid (then the request is not
    /// hostile).
    func isValidParameter(_ name: String, _ raw: String) -> Bool {
        guard let text = raw.removingPercentEncoding else { return false }
        switch name {
        case "skuId":
            guard !text.isEmpty, text.utf8.allSatisfy({ (48...57).contains($0) }), let value = UInt64(text) else { return false }
            return value >= 1 && value <= UInt64(Int64.max)
        case "orderId":
            guard let schema = contract.document["components"]?["schemas"]?["OrderId"] else { return false }
            return contract.validator.isValid(.string(text), against: schema)
        default:
            guard let schema = contract.document["components"]?["schemas"]?["BizId"] else { return false }
            return contract.validator.isValid(.string(text), against: schema)
        }
    }

    private mutating func add(
        _ category: String, _ label: String, _ method: HTTPRequest.Method, _ uri: String, body: [UInt8]? = nil,
        contentType: String? = "application/json", expected: Set<Int>
    ) {
        var headers = HTTPFields()
        if let contentType { headers[.contentType] = contentType }
        // Now and then a junk request id too: it must be replaced, never break the answer.
        if Int.random(in: 0..<10, using: &generator) == 0 {
            headers[HTTPField.Name("X-Request-Id")!] = Self.junkText(&generator, length: Int.random(in: 1...300, using: &generator))
        }
        cases.append(HostileCase(category: category, label: label, method: method, uri: uri, headers: headers, body: body, expected: expected))
    }

    // MARK: Categories

    /// A valid path for each documented template.
    func concrete(_ template: String) -> String {
        template.replacingOccurrences(of: "{orderId}", with: "h-live").replacingOccurrences(of: "{bizId}", with: bizId)
            .replacingOccurrences(of: "{skuId}", with: "1")
    }

    /// Every method a path does not have, on every documented path: 405.
    private mutating func wrongMethods() {
        var methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "PROPFIND", "MKCOL", "LOCK"]
        for _ in 0..<3 { methods.append(Self.token(&generator, length: Int.random(in: 3...12, using: &generator))) }
        for (template, item) in contract.paths.sorted(by: { $0.key < $1.key }) {
            let documented = Set(OpenAPIContract.methods.filter { item[$0] != nil }.map { $0.uppercased() })
            for method in methods where !documented.contains(method) {
                // HEAD is answered wherever GET is, as HTTP asks.
                if method == "HEAD", documented.contains("GET") { continue }
                add("wrong method", method, HTTPRequest.Method(method)!, concrete(template), body: Array("{}".utf8), expected: [405])
            }
        }
    }

    /// Paths no route has: 404, or 405 where they fall under a route's template with other methods.
    private mutating func unknownPaths() {
        let biz = bizId
        let paths = [
            "/v2/reservations", "/v1", "/v1/", "/V1/reservations", "/v1/reservation", "/v1/reservations/h-live/confirm/now",
            "/v1/stock/\(biz)", "/v1/stock/\(biz)/1/adjustments/adj-h", "/v1/stock/\(biz)/1/2/3", "/%2e%2e/%2e%2e/etc/passwd",
            "/v1/reservations/h-live/%2e%2e/%2e%2e/%2e%2e/metrics", "/metrics/x", "/openapi.yaml", "/healthz/x/y",
            "/v1/reservations/h-live/ship", "/\u{1F600}", "/v1/%00", "/v1/reservations/h-live/confirm%00",
            "/" + String(repeating: "a/", count: 2000), "/" + String(repeating: "x", count: 10_000),
        ]
        for path in paths {
            for method in [HTTPRequest.Method.get, .post] {
                add("unknown path", "\(path.prefix(40))", method, path, expected: [404, 405])
            }
        }
    }

    /// Junk in each path parameter of each operation, the rest valid (and a valid body where one is taken): 400.
    private mutating func pathJunk() {
        var values = [
            "", "%00", "%FF%FE%FD", "%C0%AF", "%E2%80%AE", "%0D%0AX-Injected:%201", "%2F", "a%2Fb", "%20", "%", "%zz", "%31",
            ".", "..", "%2e%2e", "\u{1F600}", "\u{00E9}", "a\u{01}b", "a b", "a\tb", "\u{202E}abc", "\u{FEFF}1", "\u{0000}",
            "-1", "0", "-0", "+1", "1.0", "1e3", "0x1", "NaN", "Infinity", " 1", "1 ", "1%20", "9223372036854775808",
            "18446744073709551616", String(repeating: "9", count: 400), "a/b", "~", "o~1", "UPPER", "a|b", "a;b", "a,b",
            "'or'1'='1", "${jndi:x}", "<script>", String(repeating: "a", count: 33), String(repeating: "a", count: 65),
            String(repeating: "a", count: 10_000),
        ]
        for _ in 0..<8 { values.append(Self.junkText(&generator, length: Int.random(in: 1...40, using: &generator))) }
        // Spaces and control characters cannot travel raw in a request line (the HTTP parser refuses them: see
        // wireJunk); clients percent-encode them, and so does this corpus.
        values = values.map(Self.percentEncodingControls)
        for (template, item) in contract.paths.sorted(by: { $0.key < $1.key }) where template.contains("{") {
            for method in OpenAPIContract.methods where item[method] != nil {
                let operation = bodyOperations.first { $0.template == template && $0.method.rawValue.lowercased() == method }
                for name in ["orderId", "bizId", "skuId"] where template.contains("{\(name)}") {
                    for value in values where !isValidParameter(name, value) && !value.contains("?") && !value.contains("#") {
                        // A cancel of a valid unknown id is a real request (it is recorded): never sent here.
                        let uri = concrete(template.replacingOccurrences(of: "{\(name)}", with: value))
                        // Routers split paths into Characters: a value that starts with a combining mark joins the
                        // "/" before it, and the path no longer has that segment (404 or 405).
                        let reroutes = value.isEmpty || value.contains("/") || value == "." || value == ".."
                            || Array("/" + value).first != "/"
                        add(
                            "path junk", "\(name)=\(value.prefix(30))", HTTPRequest.Method(method.uppercased())!, uri,
                            body: operation.map { Self.object($0.members.map { ($0.0, Array($0.1.utf8)) }) },
                            expected: reroutes ? [400, 404, 405] : [400]
                        )
                    }
                }
            }
        }
    }

    /// Hostile values as JSON text (some not valid JSON at all), for any member.
    private mutating func hostileValues() -> [(String, [UInt8])] {
        var texts = [
            "null", "true", "false", "0", "-0", "-1", "1.5", "-1.5", "1e3", "1E400", "-1e400", "1e-400", "0.0000001",
            "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
            "18446744073709551615", "18446744073709551616", String(repeating: "9", count: 400), "NaN", "-NaN", "Infinity",
            "-Infinity", "0x10", "+1", "01", ".5", "1.", "--1", "1_000", "undefined", "None", #""""#, #""1""#, #"" 1""#,
            #""NaN""#, #""-0""#, #""true""#, #""null""#, #""\u0000""#, #""\ud800""#, #""\udfff\ud800""#, #""a\u202eb""#,
            #""\u0007\u001b[2J""#, #""a|b""#, #""<script>alert(1)</script>""#, #""' OR 1=1 --""#, #""%s%n%x""#,
            #""../../etc/passwd""#, "\"\u{1F600}\"", "\"a\u{07}b\"", "\"\u{FEFF}x\"", "[]", "{}", "[1]", "[null]", #"{"a": 1}"#,
            "[[[[[[[[]]]]]]]]", "\"" + String(repeating: "a", count: 33) + "\"", "\"" + String(repeating: "a", count: 65) + "\"",
            "\"" + String(repeating: "a", count: 10_000) + "\"", String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
        ]
        for _ in 0..<6 { texts.append(Self.jsonString(Self.junkText(&generator, length: Int.random(in: 1...80, using: &generator)))) }
        for _ in 0..<4 { texts.append(String(Int64.random(in: Int64.min...Int64.max, using: &generator))) }
        var values = texts.map { ($0, Array($0.utf8)) }
        let invalidUTF8: [[UInt8]] = [[0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80]]
        for bytes in invalidUTF8 {
            values.append(("invalid UTF-8 \(bytes)", [UInt8(ascii: "\"")] + Array("a".utf8) + bytes + [UInt8(ascii: "\"")]))
        }
        return values
    }

    /// Each member of each body (and each member of a reservation's item) replaced by a hostile value.
    private mutating func fieldJunk(_ operation: BodyOperation) {
        let values = hostileValues()
        let members = operation.members.map { ($0.0, Array($0.1.utf8)) }
        for (index, (key, _)) in members.enumerated() {
            for (label, value) in values {
                var changed = members
                changed[index].1 = value
                addBody(operation, "field junk", "\(key)=\(label.prefix(40))", Self.object(changed))
            }
            // The member left out, and given twice (once valid, once not; either order).
            addBody(operation, "field junk", "\(key) missing", Self.object(members.enumerated().filter { $0.offset != index }.map(\.element)))
            var twice = members
            twice.insert((key, Array("-5".utf8)), at: index + 1)
            addBody(operation, "duplicate key", "\(key) then -5", Self.object(twice))
            twice = members
            twice.insert((key, Array("-5".utf8)), at: index)
            addBody(operation, "duplicate key", "-5 then \(key)", Self.object(twice))
        }
        guard operation.name == "reserve", let itemsIndex = members.firstIndex(where: { $0.0 == "items" }) else { return }
        let item: [(String, [UInt8])] = [("skuId", Array("1".utf8)), ("quantity", Array("1".utf8))]
        for (index, (key, _)) in item.enumerated() {
            for (label, value) in values {
                var changedItem = item
                changedItem[index].1 = value
                var changed = members
                changed[itemsIndex].1 = Array("[".utf8) + Self.object(changedItem) + Array("]".utf8)
                addBody(operation, "field junk", "items/0/\(key)=\(label.prefix(40))", Self.object(changed))
            }
        }
        for (label, value) in values {
            var changed = members
            changed[itemsIndex].1 = Array("[".utf8) + value + Array("]".utf8)
            addBody(operation, "field junk", "items/0=\(label.prefix(40))", Self.object(changed))
        }
    }

    private mutating func addBody(_ operation: BodyOperation, _ category: String, _ label: String, _ body: [UInt8]) {
        guard let expected = expectation(operation, body) else { return }
        add(category, "\(operation.name) \(label)", operation.method, operation.uri, body: body, expected: expected)
    }

    /// Bodies that are not objects, nested deep, or full of keys.
    private mutating func structureJunk(_ operation: BodyOperation) {
        let texts = [
            "[]", "null", "true", "0", "\"x\"", "[{}]", "[" + String(decoding: Self.object(operation.members.map { ($0.0, Array($0.1.utf8)) }), as: UTF8.self) + "]",
            String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
            String(repeating: "{\"a\":", count: 5_000) + "1" + String(repeating: "}", count: 5_000),
            String(repeating: "[", count: 30_000), String(repeating: "{", count: 30_000), "{\"a\":" + String(repeating: "[", count: 20_000),
            "{" + (0..<4_000).map { "\"k\($0)\": \($0)" }.joined(separator: ",") + "}",
            "{\"items\": [" + (0..<2_400).map { _ in #"{"skuId":1,"quantity":1}"# }.joined(separator: ",") + "]}",
            "{}", "{,}", "{\"a\" 1}", "{'orderId': 'x'}", "{\"a\": 1,}", "{\"a\": 1} {\"b\": 2}", "{\"a\": 1} junk", "\u{FEFF}{}",
            "/* comment */ {}", "{\"a\": \"\\x41\"}", "{\"a\": \"\\u12\"}", "{\"a\": \"unterminated}", "\u{0}{}", "{}\u{0}",
        ]
        for text in texts {
            addBody(operation, "structure junk", String(text.prefix(30)), Array(text.utf8))
        }
        // UTF-16 and UTF-32 encodings of a valid body: the service reads UTF-8 (a body it would take anyway is left out).
        let valid = String(decoding: Self.object(operation.members.map { ($0.0, Array($0.1.utf8)) }), as: UTF8.self)
        for encoding in [String.Encoding.utf16BigEndian, .utf16LittleEndian, .utf32] {
            if let data = valid.data(using: encoding) { addBody(operation, "structure junk", "encoded \(encoding)", Array(data)) }
        }
    }

    /// A valid body cut at random points: never valid JSON, so 400.
    private mutating func truncations(_ operation: BodyOperation) {
        let body = Self.object(operation.members.map { ($0.0, Array($0.1.utf8)) })
        var cuts = Set([0, 1, body.count - 1])
        while cuts.count < 40 { cuts.insert(Int.random(in: 0..<body.count, using: &generator)) }
        for cut in cuts.sorted() {
            addBody(operation, "truncated", "at \(cut) of \(body.count)", Array(body.prefix(cut)))
        }
    }

    /// A valid body with a few random bytes deleted, inserted or replaced; judged by the oracles. Mutations that
    /// change a member's name are left out: the service does not read members it does not know, and Foundation
    /// checks a string only when it is read, so `{"nizId": "<raw newline>", ...}` is a valid reservation to it.
    private mutating func mutations(_ operation: BodyOperation) {
        let alphabet: [UInt8] = Array("{}[]\":,\\0-e.E+ ntfu/".utf8) + [0x00, 0x01, 0x7F, 0x80, 0xC3, 0xFF, 0x0A]
        let body = Self.object(operation.members.map { ($0.0, Array($0.1.utf8)) })
        let names = (operation.members.map(\.0) + (operation.name == "reserve" ? ["skuId", "quantity"] : []))
            .map { Array("\"\($0)\": ".utf8) }
        var made = 0
        var attempts = 0
        while made < 100, attempts < 1000 {
            attempts += 1
            var bytes = body
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0..<bytes.count, using: &generator)
                let byte = alphabet.randomElement(using: &generator)!
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes.remove(at: position)
                case 1: bytes.insert(byte, at: position)
                default: bytes[position] = byte
                }
            }
            guard names.allSatisfy({ bytes.contains($0) }), expectation(operation, bytes) != nil else { continue }
            made += 1
            addBody(operation, "mutated", "\(made)", bytes)
        }
    }

    /// A valid body under content types that are not JSON: 415.
    private mutating func contentTypes(_ operation: BodyOperation) {
        let body = Self.object(operation.members.map { ($0.0, Array($0.1.utf8)) })
        let types: [String?] = [
            nil, "", "text/plain", "text/json", "application/xml", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x", "application/jsonx", "application/json-patch+json", "application/problem+json",
            "json", "*/*", "application/*", "application/octet-stream", "application json", "application/json/x",
            ";application/json", "x" + String(repeating: "y", count: 5_000),
        ]
        for type in types {
            add("content type", "\(operation.name) \(type.map { String($0.prefix(40)) } ?? "none")", operation.method, operation.uri, body: body, contentType: type, expected: [415])
        }
    }

    /// Bodies at, just above and far above the limit.
    private mutating func sizes(_ operation: BodyOperation) {
        func padded(to size: Int) -> [UInt8] {
            let start = Array(#"{"pad": ""#.utf8)
            return start + Array(repeating: UInt8(ascii: "x"), count: max(0, size - start.count - 2)) + Array("\"}".utf8)
        }
        for size in [maxBodyBytes - 1, maxBodyBytes, maxBodyBytes + 1, 1 << 20] {
            addBody(operation, "size", "padded to \(size)", padded(to: size))
        }
        addBody(operation, "size", "8 MiB of junk", Array(repeating: UInt8(ascii: "["), count: 8 << 20))
        var valid = operation.members.map { ($0.0, Array($0.1.utf8)) }
        valid.append(("pad", Array(("\"" + String(repeating: "x", count: maxBodyBytes) + "\"").utf8)))
        addBody(operation, "size", "a valid body padded past the limit", Self.object(valid))
    }

    /// Well-formed requests for things that do not exist: 404, and nothing may be left behind.
    private mutating func absent() {
        for index in 0..<10 {
            let order = "nx-\(Self.token(&generator, length: 10))"
            add("absent", "read \(index)", .get, "/v1/reservations/\(order)", expected: [404])
            add("absent", "confirm \(index)", .post, "/v1/reservations/\(order)/confirm", expected: [404])
            add("absent", "refund \(index)", .post, "/v1/reservations/\(order)/refund", expected: [404])
            let sku = UInt64.random(in: 1_000...UInt64(Int64.max), using: &generator)
            add("absent", "stock \(sku)", .get, "/v1/stock/\(bizId)/\(sku)", expected: [404])
            add(
                "absent", "adjust \(sku)", .post, "/v1/stock/\(bizId)/\(sku)/adjustments",
                body: Array(#"{"adjustmentId": "adj-\#(index)", "delta": 1}"#.utf8), expected: [404]
            )
            add(
                "absent", "reserve \(sku)", .post, "/v1/reservations",
                body: Array(#"{"orderId": "\#(order)", "bizId": "\#(bizId)", "items": [{"skuId": 1, "quantity": 1}, {"skuId": \#(sku), "quantity": 1}]}"#.utf8),
                expected: [404]
            )
            add("absent", "other business \(index)", .get, "/v1/stock/\(bizId)x\(index)/1", expected: [404])
        }
    }

    // MARK: Text

    /// Letters, for method names and ids.
    static func token(_ generator: inout SeededGenerator, length: Int) -> String {
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return String((0..<length).map { _ in letters.randomElement(using: &generator)! })
    }

    /// Random text from every awkward corner of Unicode: controls, combining marks, right-to-left, CJK, emoji,
    /// noncharacters, private use, BOM.
    static func junkText(_ generator: inout SeededGenerator, length: Int) -> String {
        let ranges: [ClosedRange<UInt32>] = [
            0x01...0x1F, 0x20...0x7E, 0x7F...0x9F, 0xA0...0x24F, 0x300...0x36F, 0x590...0x6FF, 0x200B...0x200F,
            0x202A...0x202E, 0x4E00...0x4E80, 0xFEFF...0xFEFF, 0xFFF0...0xFFFF, 0xE000...0xE0FF, 0x1F600...0x1F64F,
            0x10FFF0...0x10FFFF,
        ]
        var scalars = String.UnicodeScalarView()
        for _ in 0..<length {
            let range = ranges.randomElement(using: &generator)!
            if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &generator)) { scalars.append(scalar) }
        }
        return String(scalars)
    }

    /// Spaces, control characters and DEL as %XX, the rest as it is.
    static func percentEncodingControls(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value <= 0x20 || scalar.value == 0x7F {
                result += String(format: "%%%02X", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// A JSON string literal of any text.
    static func jsonString(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

/// One HTTP/1.1 exchange on its own connection (`Connection: close`), for live tests that must not share one.
enum WireExchange {
    struct Answer {
        let status: Int
        let headers: [String: String]
        let body: [UInt8]
    }

    static func send(port: Int, _ method: HTTPRequest.Method, _ path: String, _ body: String? = nil) async throws -> Answer {
        let connection = try await RawConnection.connect(port: port)
        var request = "\(method.rawValue) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + (body ?? "")
        try await connection.send(request)
        let received = await connection.receive(within: 5) { parse($0) != nil }
        await connection.close()
        guard let answer = parse(received) else {
            throw WireError(description: "no complete answer to \(method) \(path): \(String(decoding: received, as: UTF8.self))")
        }
        return answer
    }

    struct WireError: Error, CustomStringConvertible {
        let description: String
    }

    /// A complete answer (head, and as much body as Content-Length says), or nil.
    static func parse(_ bytes: [UInt8]) -> Answer? {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else { return nil }
        let head = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1."), statusLine.count >= 12,
            let status = Int(statusLine.dropFirst(9).prefix(3))
        else { return nil }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Array(bytes[(end + 4)...])
        let length = Int(headers["content-length"] ?? "0") ?? 0
        guard body.count >= length else { return nil }
        return Answer(status: status, headers: headers, body: Array(body.prefix(length)))
    }
}
