import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Inventory
import InventoryTestSupport
import Logging
import NIOCore
import Testing

@testable import InventoryAPI
@testable import InventorySettings

/// Issue 22 item 10: any `Host` was accepted and `Origin` ignored, so a web page a developer opens could drive an
/// instance on their loopback, and DNS rebinding could read it.
@Suite("Web pages cannot drive an instance")
struct BrowserGuardTests {
    let loopback: Set<String> = ["localhost", "127.0.0.1", "::1"]

    @Test("a Host the service does not answer to is refused; an Origin of another site is refused; clients without Origin pass")
    func verdicts() {
        #expect(BrowserGuard.verdict(authority: "127.0.0.1:8080", origin: nil, allowed: loopback) == .pass)
        #expect(BrowserGuard.verdict(authority: "LOCALHOST", origin: nil, allowed: loopback) == .pass)
        #expect(BrowserGuard.verdict(authority: "[::1]:8080", origin: nil, allowed: loopback) == .pass)
        #expect(BrowserGuard.verdict(authority: nil, origin: nil, allowed: loopback) == .pass, "HTTP/1.0 without Host")
        #expect(
            BrowserGuard.verdict(authority: "rebound.example:8080", origin: nil, allowed: loopback)
                == .foreignHost("rebound.example:8080"),
            "DNS rebinding: the page's own name reaches the loopback"
        )
        #expect(
            BrowserGuard.verdict(authority: "127.0.0.1:8080", origin: "https://evil.example", allowed: loopback)
                == .foreignOrigin("https://evil.example")
        )
        #expect(BrowserGuard.verdict(authority: "127.0.0.1:8080", origin: "null", allowed: loopback) == .foreignOrigin("null"))
        #expect(BrowserGuard.verdict(authority: "localhost:8080", origin: "http://localhost:8080", allowed: loopback) == .pass)
        #expect(
            BrowserGuard.verdict(authority: "localhost:8080", origin: "http://localhost:3000", allowed: loopback)
                == .foreignOrigin("http://localhost:3000"),
            "a page another local server serves is another site"
        )
        #expect(BrowserGuard.verdict(authority: "127.0.0.1", origin: "http://127.0.0.1", allowed: loopback) == .pass)
        #expect(BrowserGuard.verdict(authority: "localhost", origin: "https://localhost", allowed: loopback) == .pass, "a proxy on 443")
        #expect(BrowserGuard.verdict(authority: "[::1]:8080", origin: "http://[::1]:8080", allowed: loopback) == .pass)
    }

    @Test("defaults: loopback names on a loopback listener, any host elsewhere (tokens guard it), '*' any, a list as given")
    func defaults() throws {
        #expect(try ServiceConfiguration.fromEnvironment([:]).effectiveAllowedHosts == ["localhost", "127.0.0.1", "::1"])
        var exposed = ServiceConfiguration()
        exposed.httpHost = "0.0.0.0"
        #expect(exposed.effectiveAllowedHosts == nil)
        #expect(try ServiceConfiguration.fromEnvironment(["INVENTORY_ALLOWED_HOSTS": "*"]).effectiveAllowedHosts == nil)
        #expect(
            try ServiceConfiguration.fromEnvironment(["INVENTORY_ALLOWED_HOSTS": "Inventory.internal, api.example:443"])
                .effectiveAllowedHosts == ["inventory.internal", "api.example"]
        )
    }

    @Test("over HTTP: a cancel sent by another site's page is 403 problem+json and changes nothing; the same without Origin is made")
    func crossOriginCancel() async throws {
        try await TestStores.with { stores in
            var logger = Logger(label: "guard-test")
            logger.logLevel = .error
            let app = try buildApplication(engine: stores.engine, configuration: ServiceConfiguration(), logger: logger)
            try await app.test(.router) { client in
                _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 5))
                let json: HTTPFields = [.contentType: "application/json"]
                let reserve = #"{"orderId": "o-guard", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 2}]}"#
                #expect(try await client.execute(uri: "/v1/reservations", method: .post, headers: json, body: ByteBuffer(string: reserve)).status == .created)

                let page: HTTPFields = [.origin: "https://evil.example"]
                let refused = try await client.execute(uri: "/v1/businesses/\(stores.bizId)/reservations/o-guard/cancel", method: .post, headers: page)
                #expect(refused.status == .forbidden)
                #expect(refused.headers[.contentType] == "application/problem+json")
                #expect(String(buffer: refused.body).contains("cross-origin"))
                #expect(try await stores.engine.stock(stores.item(1)).reserved == 2, "nothing changed")
                #expect(try await client.execute(uri: "/healthz", method: .get, headers: page).status == .ok, "probes pass")

                let cancel = try await client.execute(uri: "/v1/businesses/\(stores.bizId)/reservations/o-guard/cancel", method: .post)
                #expect(cancel.status == .ok)
                #expect(try await stores.engine.stock(stores.item(1)).reserved == 0)
            }
        }
    }
}
