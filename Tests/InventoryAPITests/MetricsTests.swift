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
import Prometheus
import Testing

/// `/metrics` after real traffic lists the metrics operators alert on.
@Suite("Prometheus metrics")
struct MetricsTests {
    /// swift-metrics is bootstrapped once per process.
    static let registry = bootstrapPrometheus()

    @Test("request, reservation, script, low-stock and worker metrics appear after traffic")
    func exported() async throws {
        let registry = Self.registry
        try await TestStores.with { stores in
            var logger = Logger(label: "metrics-test")
            logger.logLevel = .error
            let app = try buildApplication(
                engine: stores.engine, configuration: ServiceConfiguration(), metrics: registry, logger: logger
            )
            try await app.test(.router) { client in
                let json: HTTPFields = [.contentType: "application/json"]
                _ = try await client.execute(
                    uri: "/v1/stock/\(stores.bizId)/1", method: .put, headers: json,
                    body: ByteBuffer(string: #"{"stock": 3, "dangerNum": 2}"#)
                )
                for index in 0..<4 {
                    _ = try await client.execute(
                        uri: "/v1/reservations", method: .post, headers: json,
                        body: ByteBuffer(string: #"{"orderId": "m\#(index)", "bizId": "\#(stores.bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#)
                    )
                }
                _ = try await client.execute(uri: "/v1/stock/\(stores.bizId)/1", method: .get)
                let worker = stores.worker()
                let task = Task { try await worker.run() }
                #expect(try await stores.drained())
                worker.stop()
                try await task.value
                try await stores.engine.recordRedisMemory()
                let response = try await client.execute(uri: "/metrics", method: .get)
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                for needle in [
                    #"inventory_reservations_total{outcome="created"} "#,
                    #"inventory_reservations_total{outcome="insufficient_stock"} "#,
                    #"inventory_redis_script_seconds_bucket{script="reserve""#,
                    #"hb_requests{http_route="/v1/reservations",http_request_method="POST",http_response_status_code="201"}"#,
                    #"http_server_request_duration_bucket{"#,
                    #"inventory_low_stock_available{biz="\#(stores.bizId)",sku="1"} 0"#,
                    "inventory_journal_lag_seconds_bucket",
                    "inventory_writeback_batch_events_bucket",
                    "inventory_writeback_events_total",
                ] {
                    #expect(text.contains(needle), "missing \(needle)")
                }
                // The process's own gauges, with plausible values (this test process: some memory, some CPU, fds).
                func value(_ name: String) -> Double? {
                    text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
                }
                #expect(value("inventory_redis_memory_used_ratio") == 0, "the test Redis has no maxmemory")
                #expect((value("process_resident_memory_bytes") ?? 0) > 1_000_000)
                #expect((value("process_cpu_seconds_total") ?? 0) > 0)
                #expect((value("process_open_fds") ?? 0) >= 3)
                #expect((value("process_max_fds") ?? 0) >= (value("process_open_fds") ?? .infinity))
                #expect((value("process_start_time_seconds") ?? 0) > 1_700_000_000)
            }
        }
    }

    @Test("an item restocked loses its low-stock gauges and its place in the table (no stale sold-out alert)")
    func lowStockRecovers() async throws {
        let registry = Self.registry
        try await TestStores.with { stores in
            var logger = Logger(label: "metrics-test")
            logger.logLevel = .error
            let app = try buildApplication(
                engine: stores.engine, configuration: ServiceConfiguration(), metrics: registry, logger: logger
            )
            try await app.test(.router) { client in
                let json: HTTPFields = [.contentType: "application/json"]
                let gauge = #"inventory_low_stock_available{biz="\#(stores.bizId)",sku="7"}"#
                _ = try await client.execute(
                    uri: "/v1/stock/\(stores.bizId)/7", method: .put, headers: json, body: ByteBuffer(string: #"{"stock": 0}"#)
                )
                let low = try await client.execute(uri: "/metrics", method: .get)
                #expect(String(buffer: low.body).contains(gauge + " 0"))
                _ = try await client.execute(
                    uri: "/v1/stock/\(stores.bizId)/7", method: .put, headers: json, body: ByteBuffer(string: #"{"stock": 50}"#)
                )
                let restocked = try await client.execute(uri: "/metrics", method: .get)
                #expect(!String(buffer: restocked.body).contains(gauge))
                let status = try await client.execute(uri: "/v1/status", method: .get)
                #expect(!String(buffer: status.body).contains(#""skuId":7"#))
            }
        }
    }
}
