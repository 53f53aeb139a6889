import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryTestSupport
import Logging
import NIOCore
import Prometheus
import Testing

@testable import InventoryAPI
@testable import InventorySettings

/// Bearer tokens and roles (issue 19): who may call what, and no API exposed beyond loopback without tokens.
@Suite("Access: tokens and roles")
struct AccessTests {
    static let checkoutToken = "checkout-token-0123456789"
    static let adminToken = "admin-token-0123456789abc"

    static func settings(openMetrics: Bool = false) throws -> ServiceConfiguration {
        var settings = ServiceConfiguration()
        // One token in plain form, one as the digest `inventoryd token` prints.
        let adminEntry = "admin:sha256:" + AccessTokens.hex(AccessTokens.digest(adminToken))
        settings.tokens = try AccessTokens.parse(
            "checkout:\(checkoutToken), \(adminEntry)", separator: ",", source: "INVENTORY_TOKENS"
        )
        settings.openMetrics = openMetrics
        return settings
    }

    func withClient(
        openMetrics: Bool = false, _ body: @escaping @Sendable (any TestClientProtocol, TestStores) async throws -> Void
    ) async throws {
        let settings = try Self.settings(openMetrics: openMetrics)
        try await TestStores.with { stores in
            var logger = Logger(label: "access-test")
            logger.logLevel = .warning
            // A registry of its own (not bootstrapped): /metrics answers 200 from it.
            let app = try buildApplication(
                engine: stores.engine, configuration: settings, metrics: PrometheusCollectorRegistry(), logger: logger
            )
            try await app.test(.router) { client in try await body(client, stores) }
        }
    }

    static func send(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
        token: String? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }

    static func problemType(_ response: TestResponse) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        return (object?["type"] as? String)?.split(separator: "/").last.map(String.init)
    }

    @Test("every route needs the role it should: reservations and stock reads checkout, the rest admin, health open")
    func routeRoles() {
        let checkout: Set<String> = [
            "POST /v1/reservations", "GET /v1/reservations/:orderId", "POST /v1/reservations/:orderId/confirm",
            "POST /v1/reservations/:orderId/cancel", "POST /v1/reservations/:orderId/refund", "GET /v1/stock/:bizId/:skuId",
            "POST /v1/businesses/:bizId/reservations", "GET /v1/businesses/:bizId/reservations/:orderId",
            "POST /v1/businesses/:bizId/reservations/:orderId/confirm", "POST /v1/businesses/:bizId/reservations/:orderId/cancel",
            "POST /v1/businesses/:bizId/reservations/:orderId/refund",
        ]
        let open: Set<String> = ["GET /healthz", "GET /readyz", "GET /openapi.json"]
        for route in InventoryRoutes.templates {
            let path = "/" + route.path.joined(separator: "/")
            let name = "\(route.method) \(path)"
            let needed = AccessMiddleware<BasicRequestContext>.access(route.method, path, openMetrics: false)
            let expected: AccessMiddleware<BasicRequestContext>.Access =
                checkout.contains(name) ? .checkout : open.contains(name) ? .open : .admin
            #expect(needed == expected, "\(name)")
        }
        #expect(AccessMiddleware<BasicRequestContext>.access(.get, "/metrics", openMetrics: true) == .open)
        #expect(AccessMiddleware<BasicRequestContext>.access(.get, "/v1/unknown", openMetrics: true) == .admin)
    }

    @Test("without a token, or with a wrong one: 401 problem+json with a Bearer challenge; health stays open")
    func unauthorized() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, stores in
            let biz = stores.bizId
            let reserve = #"{"orderId": "\#(biz)-o", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 1}]}"#
            for token in [nil, "not-a-token-of-this-service", "Basic \(Self.adminToken)"] as [String?] {
                for (method, uri, body) in [
                    (HTTPRequest.Method.post, "/v1/reservations", reserve), (.get, "/v1/stock/\(biz)/1", nil),
                    (.put, "/v1/stock/\(biz)/1", #"{"stock": 10}"#), (.get, "/v1/stock/\(biz)/1/codes", nil),
                    (.get, "/v1/status", nil), (.get, "/metrics", nil), (.get, "/v1/nothing-here", nil),
                ] as [(HTTPRequest.Method, String, String?)] {
                    let response = try await Self.send(client, method, uri, body, token: token)
                    #expect(response.status == .unauthorized, "\(method) \(uri)")
                    #expect(response.headers[.contentType] == "application/problem+json")
                    #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                    #expect(Self.problemType(response) == "unauthorized")
                    if !uri.hasSuffix("nothing-here") { contract.check("401 \(method) \(uri)", method, uri, body: body, response) }
                }
            }
            // A method a known path does not have tells a caller without a token nothing either (it was 405 with the
            // path's methods in Allow); with a token it is 405.
            for (method, uri) in [(HTTPRequest.Method.delete, "/v1/stock/\(biz)/1"), (.patch, "/v1/reservations")] {
                let refused = try await Self.send(client, method, uri)
                #expect(refused.status == .unauthorized, "\(method) \(uri)")
                #expect(refused.headers[.allow] == nil)
                #expect(try await Self.send(client, method, uri, token: Self.adminToken).status == .methodNotAllowed)
            }
            #expect(try await Self.send(client, .get, "/healthz").status == .ok)
            // Nothing was changed by the refused calls.
            await #expect(throws: InventoryError.notFound) { try await stores.engine.stock(stores.item(1)) }
        }
    }

    @Test("a checkout token reserves and reads, and gets 403 on admin routes; an admin token may do everything")
    func roles() async throws {
        let contract = try OpenAPIContract()
        try await withClient { client, stores in
            let biz = stores.bizId
            let checkout = Self.checkoutToken
            let admin = Self.adminToken
            #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/1", #"{"stock": 10}"#, token: checkout).status == .forbidden)
            #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/1", #"{"stock": 10}"#, token: admin).status == .ok)
            for (method, uri, body) in [
                (HTTPRequest.Method.post, "/v1/stock/\(biz)/1/adjustments", #"{"adjustmentId": "a1", "delta": 5}"#),
                (.put, "/v1/stock/\(biz)/1/pool", #"{"kind": "reusable"}"#), (.get, "/v1/stock/\(biz)/1/pool", nil),
                (.post, "/v1/stock/\(biz)/1/codes", "c1"), (.get, "/v1/stock/\(biz)/1/codes", nil),
                (.get, "/v1/status", nil), (.get, "/", nil), (.get, "/metrics", nil),
            ] as [(HTTPRequest.Method, String, String?)] {
                let response = try await Self.send(client, method, uri, body, token: checkout)
                #expect(response.status == .forbidden, "\(method) \(uri)")
                #expect(Self.problemType(response) == "forbidden")
                contract.check("403 \(method) \(uri)", method, uri, body: body, response)
            }
            let reserve = #"{"orderId": "\#(biz)-o", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 3}]}"#
            #expect(try await Self.send(client, .post, "/v1/reservations", reserve, token: checkout).status == .created)
            #expect(try await Self.send(client, .get, "/v1/businesses/\(biz)/reservations/\(biz)-o", token: checkout).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/stock/\(biz)/1", token: checkout).status == .ok)
            #expect(try await Self.send(client, .post, "/v1/businesses/\(biz)/reservations/\(biz)-o/confirm", token: checkout).status == .ok)
            #expect(try await Self.send(client, .get, "/v1/status", token: admin).status == .ok)
            // The stock is as the allowed calls left it: the adjustment a checkout token tried was not made.
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.available == 7)
        }
    }

    @Test("a token limited to businesses touches only theirs: other businesses, the default paths and status pages 403, nothing changed")
    func businessTokens() async throws {
        let contract = try OpenAPIContract()
        try await TestStores.with { stores in
            let mine = stores.bizId
            let other = stores.bizId + "x"
            let checkoutMine = "checkout-mine-0123456789"
            let adminMine = "admin-mine-0123456789abc"
            var settings = try Self.settings()
            settings.tokens.merge(
                try AccessTokens.parse(
                    "checkout@\(mine):\(checkoutMine), admin@\(mine)+zz-unused:\(adminMine)", separator: ",", source: "INVENTORY_TOKENS"
                )
            )
            var logger = Logger(label: "access-test")
            logger.logLevel = .warning
            let app = try buildApplication(
                engine: stores.engine, configuration: settings, metrics: PrometheusCollectorRegistry(), logger: logger
            )
            try await app.test(.router) { client in
                for biz in [mine, other] {
                    #expect(try await Self.send(client, .put, "/v1/stock/\(biz)/1", #"{"stock": 10}"#, token: Self.adminToken).status == .ok)
                }
                func reserve(_ biz: String) -> String {
                    #"{"orderId": "o-1", "bizId": "\#(biz)", "items": [{"skuId": 1, "quantity": 2}]}"#
                }
                // The other business's order exists (an unlimited token made it): a limited token cannot see it.
                #expect(try await Self.send(client, .post, "/v1/reservations", reserve(other), token: Self.checkoutToken).status == .created)
                let refused: [(HTTPRequest.Method, String, String?, String)] = [
                    (.post, "/v1/reservations", reserve(other), checkoutMine),
                    (.post, "/v1/businesses/\(other)/reservations", #"{"orderId": "o-2", "items": [{"skuId": 1, "quantity": 1}]}"#, checkoutMine),
                    (.get, "/v1/businesses/\(other)/reservations/o-1", nil, checkoutMine),
                    (.post, "/v1/businesses/\(other)/reservations/o-1/cancel", nil, checkoutMine),
                    (.post, "/v1/reservations/o-1/cancel", nil, checkoutMine),
                    (.get, "/v1/stock/\(other)/1", nil, checkoutMine),
                    (.put, "/v1/stock/\(other)/1", #"{"stock": 0}"#, adminMine),
                    (.get, "/v1/status", nil, adminMine), (.get, "/", nil, adminMine), (.get, "/metrics", nil, adminMine),
                ]
                for (method, uri, body, token) in refused {
                    let response = try await Self.send(client, method, uri, body, token: token)
                    #expect(response.status == .forbidden, "\(method) \(uri)")
                    #expect(Self.problemType(response) == "forbidden", "\(method) \(uri)")
                    contract.check("403 \(method) \(uri)", method, uri, body: body, response)
                }
                // Its own business: reserve (body or path), read, confirm; the same orderId is its own order.
                #expect(try await Self.send(client, .post, "/v1/reservations", reserve(mine), token: checkoutMine).status == .created)
                let scoped = try await Self.send(
                    client, .post, "/v1/businesses/\(mine)/reservations", #"{"orderId": "o-2", "items": [{"skuId": 1, "quantity": 1}]}"#,
                    token: checkoutMine
                )
                #expect(scoped.status == .created)
                #expect(try await Self.send(client, .get, "/v1/businesses/\(mine)/reservations/o-1", token: checkoutMine).status == .ok)
                #expect(try await Self.send(client, .post, "/v1/businesses/\(mine)/reservations/o-1/confirm", token: checkoutMine).status == .ok)
                #expect(try await Self.send(client, .get, "/v1/stock/\(mine)/1", token: checkoutMine).status == .ok)
                #expect(try await Self.send(client, .put, "/v1/stock/\(mine)/2", #"{"stock": 1}"#, token: adminMine).status == .ok)
            }
            // Exact stock: mine holds 2 (confirmed) + 1; the other business only its own order's 2, none of the refused calls.
            let mineLevel = try await stores.engine.stock(StockItemID(bizId: mine, skuId: 1))
            let otherLevel = try await stores.engine.stock(StockItemID(bizId: other, skuId: 1))
            #expect([mineLevel.available, mineLevel.reserved] == [7, 1])
            #expect([otherLevel.available, otherLevel.reserved] == [8, 2])
            #expect(try await stores.engine.reservation(orderId: "o-1", bizId: other).status == .reserved)
        }
    }

    @Test("token entries limited to businesses: ROLE@BIZ+BIZ, the grant of a token, clear errors, inventoryd token's entry")
    func businessTokenEntries() throws {
        let tokens = try AccessTokens.parse(
            "checkout@shop+books:checkout-scoped-0123456789\nadmin:admin-all-0123456789abcd\ncheckout@shop:checkout-scoped-0123456789",
            separator: "\n", source: "file"
        )
        #expect(tokens.grant(of: "checkout-scoped-0123456789") == .init(role: .checkout, businesses: ["shop", "books"]))
        #expect(tokens.grant(of: "admin-all-0123456789abcd") == .init(role: .admin, businesses: nil))
        #expect(tokens.grant(of: "nobody-0123456789abcdef") == nil)
        for bad in ["checkout@:x-0123456789abcdef", "checkout@Shop:x-0123456789abcdef", "checkout@a++b:x-0123456789abcdef"] {
            #expect(throws: ConfigurationError.self) { try AccessTokens.parse(bad, separator: ",", source: "env") }
        }
        let made = AccessTokens.generate(role: .checkout, businesses: ["shop", "books"])
        #expect(made.entry.hasPrefix("checkout@shop+books:sha256:"))
        let parsed = try AccessTokens.parse(made.entry, separator: ",", source: "env")
        #expect(parsed.grant(of: Substring(made.token)) == .init(role: .checkout, businesses: ["shop", "books"]))
    }

    @Test("/metrics and the status page answer without a token when INVENTORY_OPEN_METRICS is on")
    func openMetrics() async throws {
        try await withClient(openMetrics: true) { client, _ in
            let page = try await Self.send(client, .get, "/")
            let metrics = try await Self.send(client, .get, "/metrics")
            let status = try await Self.send(client, .get, "/v1/status")
            #expect(page.status == .ok)
            #expect(metrics.status == .ok)
            #expect(status.status == .unauthorized)
        }
    }

    @Test("a TLS detail set while its switch is off stops the start; a tokens file with Windows line ends is read")
    func tlsDetailsAndLineEnds() throws {
        for (detail, value) in [
            ("INVENTORY_REDIS_TLS_CA_FILE", "/etc/ssl/redis-ca.pem"), ("INVENTORY_REDIS_TLS_SERVER_NAME", "redis.internal"),
            ("INVENTORY_MYSQL_TLS_CA_FILE", "/etc/ssl/mysql-ca.pem"),
        ] {
            #expect {
                try ServiceConfiguration.fromEnvironment([detail: value])
            } throws: { "\($0)".contains(detail) && "\($0)".contains("is off") }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "# tokens\r\ncheckout:\(Self.checkoutToken)\r\nadmin:\(Self.adminToken)\r\n".write(to: file, atomically: true, encoding: .utf8)
        let settings = try ServiceConfiguration.fromEnvironment(["INVENTORY_TOKENS_FILE": file.path])
        #expect(settings.tokens.counts == [.checkout: 1, .admin: 1])
        try "# nothing here yet\n".write(to: file, atomically: true, encoding: .utf8)
        #expect {
            try ServiceConfiguration.fromEnvironment(["INVENTORY_TOKENS_FILE": file.path])
        } throws: { "\($0)".contains("holds no token entry") }
    }

    @Test("token entries: digests and plain tokens, comments in a file, clear errors that never echo a secret")
    func tokenEntries() throws {
        let made = AccessTokens.generate(role: .admin)
        let file = """
            # rotated on 2026-12-04
            \(made.entry)
            checkout:\(Self.checkoutToken)   # the web checkout
            """
        let tokens = try AccessTokens.parse(file, separator: "\n", source: "INVENTORY_TOKENS_FILE")
        #expect(tokens.counts == [.admin: 1, .checkout: 1])
        #expect(tokens.role(of: Substring(made.token)) == .admin)
        #expect(tokens.role(of: Substring(Self.checkoutToken)) == .checkout)
        #expect(tokens.role(of: "checkout-token-012345678") == nil)
        #expect(!made.entry.contains(made.token))
        for (text, message) in [
            ("root:\(Self.adminToken)", "entry 1 is not ROLE:TOKEN"), ("admin:short", "at least 16 characters"),
            ("admin:sha256:abcd", "64 hex digits"),
        ] {
            #expect {
                try AccessTokens.parse(text, separator: ",", source: "INVENTORY_TOKENS")
            } throws: { error in
                let description = "\(error)"
                return description.contains(message) && !description.contains(Self.adminToken)
            }
        }
    }

    @Test("no tokens: loopback only; another address without tokens is refused, naming the settings")
    func exposure() throws {
        var settings = ServiceConfiguration()
        try settings.checkExposure()
        settings.httpHost = "0.0.0.0"
        #expect {
            try settings.checkExposure()
        } throws: { error in
            "\(error)".contains("INVENTORY_HTTP_HOST=0.0.0.0") && "\(error)".contains("INVENTORY_TOKENS")
        }
        for host in ["127.0.0.1.example.com", "::ffff:127.0.0.1", "10.0.0.1"] {
            settings.httpHost = host
            #expect(throws: ConfigurationError.self, "\(host)") { try settings.checkExposure() }
        }
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost"] {
            settings.httpHost = host
            #expect(throws: Never.self, "\(host)") { try settings.checkExposure() }
        }
        settings.httpHost = "0.0.0.0"
        settings.tokens = try Self.settings().tokens
        // Tokens off loopback need HTTPS, or a proxy that terminates it.
        #expect {
            try settings.checkExposure()
        } throws: { "\($0)".contains("INVENTORY_TLS_CERT_FILE") && "\($0)".contains("INVENTORY_ALLOW_PLAIN_HTTP") }
        settings.allowPlainHTTP = true
        try settings.checkExposure()
        settings.allowPlainHTTP = false
        settings.tlsCertificateFile = "/etc/inventoryd/tls/cert.pem"
        try settings.checkExposure()
    }

    @Test("inventoryd config's settings show every value but the secrets: passwords masked, tokens counted")
    func describedSettingsMaskSecrets() throws {
        let settings = try ServiceConfiguration.fromEnvironment([
            "INVENTORY_MYSQL_PASSWORD": "mysql-secret-42", "INVENTORY_REDIS_PASSWORD": "redis-secret-42",
            "INVENTORY_TOKENS": "admin:\(Self.adminToken)", "INVENTORY_HTTP_PORT": "9191",
        ])
        let rows = settings.described()
        let text = rows.map { "\($0.name)=\($0.value)" }.joined(separator: "\n")
        for secret in ["mysql-secret-42", "redis-secret-42", Self.adminToken] { #expect(!text.contains(secret)) }
        #expect(text.contains("INVENTORY_MYSQL_PASSWORD=(set, masked)"))
        #expect(text.contains("INVENTORY_TOKENS / INVENTORY_TOKENS_FILE=checkout 0, admin 1"))
        #expect(text.contains("INVENTORY_HTTP_PORT=9191"))
        #expect(Set(rows.map(\.name)).count == rows.count)
    }

    @Test("a Redis user name is taken with its password, refused without one, and shown by inventoryd config")
    func redisUserName() throws {
        let settings = try ServiceConfiguration.fromEnvironment([
            "INVENTORY_REDIS_USERNAME": "inventory", "INVENTORY_REDIS_PASSWORD": "redis-secret-42",
        ])
        #expect(settings.redis.username == "inventory" && settings.redis.password == "redis-secret-42")
        #expect(settings.described().contains { $0.name == "INVENTORY_REDIS_USERNAME" && $0.value == "inventory" })
        #expect(try ServiceConfiguration.fromEnvironment([:]).redis.username == nil)
        #expect {
            _ = try ServiceConfiguration.fromEnvironment(["INVENTORY_REDIS_USERNAME": "inventory"])
        } throws: { "\($0)".contains("INVENTORY_REDIS_PASSWORD") }
    }

    @Test("inventoryd serve refuses to start on a public address without tokens, and says why")
    func serveRefusesPublicWithoutTokens() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestStores.inventorydBinary)
        process.arguments = ["serve"]
        var environment = ProcessInfo.processInfo.environment
        environment["INVENTORY_HTTP_HOST"] = "0.0.0.0"
        environment["INVENTORY_TOKENS"] = nil
        environment["INVENTORY_TOKENS_FILE"] = nil
        process.environment = environment
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("refusal-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let output = try FileHandle(forWritingTo: log)
        process.standardError = output
        process.standardOutput = output
        try process.run()
        // Bounded: a binary that did not refuse would serve for ever.
        try? await waitFor("inventoryd exits", within: .seconds(15), every: .milliseconds(20)) { !process.isRunning }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(process.terminationReason == .exit && process.terminationStatus != 0, "\(text)")
        #expect(text.contains("INVENTORY_HTTP_HOST=0.0.0.0"))
    }
}
