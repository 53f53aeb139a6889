import Foundation
@testable import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// The streams' leases: one worker reads a stream at a time, and what a stopped consumer read is applied first.
extension WriteBackTests {
    /// Every outbox stream's entries read by the consumer `ghost` (pending on it, never to be read as new again) and
    /// its lease set to `holder` for `milliseconds`; returns how many entries the ghost read.
    func ghostRead(_ stores: TestStores, leaseHolder holder: String, milliseconds: Int) async throws -> Int {
        let group = WriteBackConfiguration().group
        var ghosted = 0
        for stream in stores.keys.outboxes {
            let created = try await stores.redis.send(["XGROUP", "CREATE", stream, group, "0", "MKSTREAM"], routingKey: stream)
            #expect(created.errorMessage == nil || created.errorMessage?.hasPrefix("BUSYGROUP") == true)
            let read = try await stores.redis.send(
                ["XREADGROUP", "GROUP", group, "ghost", "COUNT", "100", "STREAMS", stream, ">"], routingKey: stream
            )
            ghosted += read.array?.first?.array?[safe: 1]?.array?.count ?? 0
            let lease = KeyLayout.streamLease(stream)
            _ = try await stores.redis.send(["SET", lease, holder, "PX", String(milliseconds)], routingKey: lease)
        }
        return ghosted
    }

    @Test("entries a crashed consumer read in streams this worker holds are taken over once idle, and applied")
    func abandonedEntriesClaimed() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            let orders = (1...6).map { "claim-\($0)" }
            for order in orders { _ = try await reserve(stores, order, [(1, 1)]) }
            let worker = stores.worker(claimIdleMilliseconds: 300)
            // This worker holds every stream already, and knows it: no take-over claims the ghost's entries for it.
            let ghosted = try await ghostRead(stores, leaseHolder: worker.leaseOwner, milliseconds: 60_000)
            try #require(ghosted == orders.count)
            worker.held.withLockedValue { held in
                held.lease(stores.keys.outboxes)
                held.readableUntil = .now + .seconds(60)
            }
            try await withWorker(worker) {
                try await waitFor("the ghost's entries applied", within: .seconds(30)) {
                    try await stores.journalRows().count == orders.count
                }
            }
            #expect(try await stores.journalRows().map(\.orderId) == orders.sorted())
            #expect(try await engine.outboxLength() == 0)
        }
    }

    @Test("a stream taken over whose claim failed is claimed at the next refresh, before any of it is read")
    func failedTakeOverClaimRetried() async throws {
        try await TestStores.with { stores in
            // (The claims go through a proxy to one Redis.)
            guard !stores.keys.clustered else { return }
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            let orders = (1...4).map { "taken-\($0)" }
            for order in orders { _ = try await reserve(stores, order, [(1, 1)]) }
            // A worker that read every entry and stopped; its leases run out in a moment. Two of the orders are
            // confirmed since: their confirms are new entries, to be applied after the reserves the worker read.
            try #require(try await ghostRead(stores, leaseHolder: "stopped", milliseconds: 1000) == orders.count)
            for order in orders.prefix(2) { _ = try await engine.confirm(orderId: order, bizId: stores.bizId) }
            // The take-over's claim is lost on the way (its connection cut, nothing claimed).
            let worker = try await withProxiedWorker(stores, prepare: { $0.cutBeforeRequest(containing: "XAUTOCLAIM") }) { _, _ in
                // Before: the streams were read from the next refresh on, the stopped worker's entries left to the
                // 30-s idle claim.
                try await waitFor("the stopped worker's entries applied, then the confirms", within: .seconds(20)) {
                    let rows = try await stores.journalRows().count
                    let left = try await engine.outboxLength()
                    return rows == orders.count && left == 0
                }
            }
            #expect(worker.stats.failedClaims > 0, "the take-over's claim was cut")
            // A confirm read before its reserve was claimed would have found no row, and left it RESERVED.
            #expect(try await stores.journalRows().map { "\($0.orderId) \($0.status)" } == [
                "taken-1 CONFIRMED", "taken-2 CONFIRMED", "taken-3 RESERVED", "taken-4 RESERVED",
            ])
        }
    }

    @Test("a worker whose lease renewals keep failing stops reading its streams before the leases can run out")
    func failingRenewalsStopReading() async throws {
        try await TestStores.with { stores in
            let worker = stores.worker(leaseMilliseconds: 3000)
            try await withWorker(worker) {
                try await waitFor("the worker reads every stream", within: .seconds(20)) {
                    worker.streams.count == stores.keys.outboxes.count
                }
                // One stream's lease key becomes a hash: from now on every refresh fails at its GET and renews nothing.
                let lease = KeyLayout.streamLease(stores.keys.outboxes[0])
                _ = try await stores.redis.send(
                    ["EVAL", "redis.call('DEL', KEYS[1]); return redis.call('HSET', KEYS[1], 'not', 'a lease')", "1", lease],
                    routingKey: lease
                )
                // Before: it read them all for good, past their leases (another worker could have taken them).
                try await waitFor("the worker reads no stream", within: .seconds(20)) { worker.streams.isEmpty }
            }
        }
    }

    @Test("a stream whose lease names this worker but which it did not hold is claimed before it is read")
    func leasedButNotHeldClaimed() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            let orders = (1...4).map { "unheld-\($0)" }
            for order in orders { _ = try await reserve(stores, order, [(1, 1)]) }
            let worker = stores.worker()
            // A stopped worker read the reserves; the streams' leases already name this worker (its take went
            // through, its answer was lost), which has not recorded them as taken. Two orders are confirmed since.
            try #require(try await ghostRead(stores, leaseHolder: worker.leaseOwner, milliseconds: 60_000) == orders.count)
            for order in orders.prefix(2) { _ = try await engine.confirm(orderId: order, bizId: stores.bizId) }
            try await withWorker(worker) {
                // Before: read at once as its own, the confirms before the reserves (left to the 30-s idle claim).
                try await waitFor("the reserves applied, then the confirms", within: .seconds(20)) {
                    let rows = try await stores.journalRows().count
                    let left = try await engine.outboxLength()
                    return rows == orders.count && left == 0
                }
            }
            #expect(try await stores.journalRows().map { "\($0.orderId) \($0.status)" } == [
                "unheld-1 CONFIRMED", "unheld-2 CONFIRMED", "unheld-3 RESERVED", "unheld-4 RESERVED",
            ])
        }
    }
}
