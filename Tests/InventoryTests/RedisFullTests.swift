import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Redis out of memory: with `noeviction` (the only policy the service starts on) Redis refuses every write that may
/// grow it. Before, that froze everything at once: confirms of paid orders, cancels and the expiry answered 503, and
/// the write-back worker could not raise its drain mark, so holds Redis had acknowledged never reached MySQL until
/// memory came back. The scripts that settle holds made while Redis had room now run when it is full
/// (`#!lua flags=allow-oom`); what would make something new (a hold, a record of an order never seen) is refused.
@Suite("Redis full (noeviction)")
struct RedisFullTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        RebuildDrainTests().command(stores, orderId, quantity)
    }

    /// `body` throws `unavailable` naming Redis full.
    func expectFull(_ what: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("\(what) went through while Redis is full")
        } catch InventoryError.unavailable(let detail) {
            #expect(detail.contains("Redis is full"), "\(what): \(detail)")
        } catch {
            Issue.record("\(what): \(error)")
        }
    }

    @Test("holds made while Redis had room are confirmed, refunded, cancelled and written back; new holds and records wait")
    func settlesWhenFull() async throws {
        // A Redis of this test's own: the shared one's maxmemory is every test's.
        let redis = try await TestRedisServer.start(["--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        try await TestStores.with(redisPort: redis.port, cluster: false) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            for (order, quantity) in [("a", 3), ("b", 2), ("c", 1)] {
                _ = try await engine.reserve(command(stores, order, Int64(quantity)))
            }
            #expect(try await stores.drainWithWorker())
            _ = try await engine.reserve(command(stores, "d", 1))

            #expect(try await engine.redisMemoryUsedRatio() == 0, "no limit")
            // Full: any write that may grow Redis is refused from here on.
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "1")
            #expect(try await engine.redisMemoryUsedRatio() > 1)
            await expectFull("a new hold") { _ = try await engine.reserve(command(stores, "e", 1)) }
            await expectFull("a cancel of an order never seen") { _ = try await engine.cancel(orderId: "x", bizId: stores.bizId) }
            _ = try await engine.confirm(orderId: "a", bizId: stores.bizId)
            _ = try await engine.refund(orderId: "a", bizId: stores.bizId)
            _ = try await engine.cancel(orderId: "b", bizId: stores.bizId)
            // A worker (re)started while Redis is full: its streams' groups are there, its registry entry cannot be
            // written, its leases are taken all the same.
            let worker = stores.worker()
            let running = Task { try await worker.run() }
            #expect(try await stores.drained(), "the worker writes back while Redis is full")
            #expect(worker.stats.failedAttempts == 0)
            let journal = try await stores.journalRows().map { "\($0.orderId):\($0.status)" }
            #expect(journal == ["a:REFUNDED", "b:CANCELLED", "c:RESERVED", "d:RESERVED"])
            worker.stop()
            try await running.value

            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "0")
            try await RebuildDrainTests().expectAgree(stores, available: 8, reserved: 2, mysql: 10)
        }
    }

    /// On a cluster, a cancel (or the sweeper's abandon) of an order whose reserve of several parts is under way records
    /// its parts that hold nothing yet as cancelled, to fence a part reserve still on its way (ClusterPlacement
    /// .releaseParts). Those parts are named by the order's directory, so bounded: recorded while Redis is full too;
    /// a cancel of an order nobody knows is not. (rollback.lua alike on one Redis.)
    @Test("a part named by its order's directory is fenced while Redis is full; an order nobody knows is not recorded")
    func fenceKnownPartWhenFull() async throws {
        let redis = try await TestRedisServer.start(["--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        try await TestStores.with(redisPort: redis.port, cluster: false) { stores in
            func fence(_ orderId: String, knownOrder: Bool) async throws -> RollbackCall.Reply {
                try await stores.engine.stores.run(
                    RollbackCall(
                        orderId: stores.orderName(orderId), shard: 0, bizId: stores.bizId, lines: [], linesText: "",
                        reason: .cancelled, knownOrder: knownOrder, retentionSeconds: 600, layout: stores.keys
                    )
                )
            }
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "1")
            guard case .recordedEmpty = try await fence("known", knownOrder: true) else {
                Issue.record("the known order's part was not recorded cancelled")
                return
            }
            await expectFull("a record of an order nobody knows") { _ = try await fence("unknown", knownOrder: false) }
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "0")
        }
    }
}
