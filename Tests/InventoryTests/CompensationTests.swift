import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The second level of compensation: a reversal that could not run becomes a durable task, run exactly once.
@Suite("Durable retry of reversals")
struct CompensationTests {
    func pending(_ stores: TestStores) async throws -> Int64 {
        let result = try await stores.mysql.query(
            "SELECT COUNT(*) AS n FROM compensation_tasks WHERE status = 'PENDING' AND payload LIKE ?",
            [.string("%\(stores.keys.prefix):%")]
        )
        return result.rows.first?.int64("n") ?? -1
    }

    @Test("Redis unreachable, then a reply lost after the reversal ran: each stored once, applied exactly once")
    func storedAndRetried() async throws {
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(redisTimeoutMilliseconds: 500, redisPort: proxy.port) { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let itemKey = stores.keys.item(item)
            func undo(_ delta: Int64, _ name: String) -> CompensationTask {
                .undoStock(
                    itemKey: itemKey, adjustmentKey: itemKey, delta: delta, fingerprint: "",
                    marker: String(itemKey.dropLast(4)) + "undo:" + name
                )
            }

            proxy.down = true
            await engine.compensate(undo(4, "a"))
            proxy.down = false
            try await stores.reconnected()
            #expect(try await pending(stores) == 1, "stored for the retrier")
            #expect(try await engine.stock(item).available == 10, "not applied while Redis was away")

            // The reversal reaches Redis but its answer does not come back: stored too, and must not apply twice.
            proxy.dropReplies = true
            await engine.compensate(undo(1, "b"))
            proxy.dropReplies = false
            try await stores.reconnected()
            #expect(try await pending(stores) == 2)

            _ = try await engine.retryCompensations(limit: 1000)
            _ = try await engine.retryCompensations(limit: 1000)
            #expect(try await pending(stores) == 0)
            #expect(try await engine.stock(item).available == 5, "10 − 4 − 1, each once")
        }
        await proxy.close()
    }
}
