import Foundation
@testable import Inventory
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

/// A batch read before its worker lost the stream, applied after the stream's next holder applied it and what came
/// after it: the journal's phases only move a row forward and the ledger takes a source once, so the late copy
/// changes nothing (nothing fences MySQL against it).
extension WriteBackTests {
    @Test("a batch whose worker stalled past its lease commits after the next holder's newer events and changes nothing")
    func lateBatchChangesNothing() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            _ = try await reserve(stores, "late-1", [(1, 2)])
            #expect(try await stores.drainWithWorker())
            // Two events wait in the outbox for worker A, whose journal goes through a proxy and whose leases run
            // out 2 s after its last refresh. Its first batch, both of them, stalls at its first statement, before
            // it reached MySQL.
            _ = try await engine.confirm(orderId: "late-1", bizId: stores.bizId)
            _ = try await reserve(stores, "late-2", [(1, 3)])
            var settings = stores.mysql.configuration
            let proxy = try await FaultProxy.start(upstreamHost: settings.host, upstreamPort: settings.port)
            settings.port = proxy.port
            settings.readTimeoutSeconds = 120
            let mysqlA = MySQLClient(configuration: settings, logger: stores.logger)
            proxy.holdRequest(containing: "SET TRANSACTION ISOLATION")
            let late = stores.worker(consumer: "a", leaseMilliseconds: 2_000, mysql: mysqlA)
            let lateBatches: Int
            do {
                lateBatches = try await withWorker(late) {
                    do {
                        try await waitFor("A's batch held", within: .seconds(20)) { proxy.isHolding }
                        #expect(try await pending(stores, consumer: "a") == 2, "A read both events")
                        // Its leases run out; worker B takes the streams, claims what A read, applies it and the
                        // orders' later events: the refund of late-1, the cancel of late-2.
                        try await waitFor("A's leases run out", within: .seconds(20)) {
                            var held = 0
                            for stream in stores.keys.outboxes {
                                let lease = KeyLayout.streamLease(stream)
                                let owner = try await stores.redis.send(["GET", lease], routingKey: lease).text
                                if owner == late.leaseOwner { held += 1 }
                            }
                            return held == 0
                        }
                        return try await withWorker(stores.worker(consumer: "b", leaseMilliseconds: 2_000)) {
                            try await waitFor("B applies what A read", within: .seconds(20)) {
                                try await stores.journalRows().map(\.description) == ["late-1/1x2=CONFIRMED", "late-2/1x3=RESERVED"]
                            }
                            _ = try await engine.refund(orderId: "late-1", bizId: stores.bizId)
                            _ = try await engine.cancel(orderId: "late-2", bizId: stores.bizId)
                            #expect(try await stores.drained())
                            #expect(
                                try await stores.journalRows().map(\.description) == ["late-1/1x2=REFUNDED", "late-2/1x3=CANCELLED"]
                            )
                            // A goes on: its stalled batch commits now, after B's.
                            let before = late.stats.batches
                            proxy.release()
                            try await waitFor("A commits its late batch", within: .seconds(20)) { late.stats.batches > before }
                            return late.stats.batches - before
                        }
                    } catch {
                        proxy.release()
                        throw error
                    }
                }
            } catch {
                await mysqlA.shutdown()
                await proxy.close()
                throw error
            }
            await mysqlA.shutdown()
            await proxy.close()
            #expect(lateBatches == 1)
            #expect(try await stores.journalRows().map(\.description) == ["late-1/1x2=REFUNDED", "late-2/1x3=CANCELLED"])
            let ledger = try await stores.mysql.query(
                "SELECT delta FROM stock_ledger WHERE biz_id = ? AND sku_id = 1 AND reason IN ('confirm', 'refund') ORDER BY id",
                [.string(stores.bizId)]
            ).rows.compactMap { $0.int64("delta") }
            #expect(ledger == [-2, 2], "one ledger line per confirm and refund")
            try await expectSettled(stores, 1, mysql: 100, available: 100, reserved: 0)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Entries pending on `consumer` in this test's streams.
    private func pending(_ stores: TestStores, consumer: String) async throws -> Int {
        var count = 0
        for stream in stores.keys.outboxes {
            let reply = try await stores.redis.send(
                ["XPENDING", stream, WriteBackConfiguration().group, "-", "+", "100", consumer], routingKey: stream
            )
            count += reply.array?.count ?? 0
        }
        return count
    }
}
