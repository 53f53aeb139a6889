import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Redis goes back in time: restored from a snapshot older than what the write-back worker has recorded in MySQL, or a
/// failover to a replica that was behind. Its generation marker is there, so no data loss was seen before the drain
/// marks (migrations/0017, lua/drain_mark.lua): its items lacked holds the journal had (a retried reserve was held a
/// second time) and its orders were behind MySQL's (a confirmed order could expire and give its units back twice).
@Suite("A Redis that went back in time")
struct RedisWentBackTests {
    /// One line of item 1 (`RebuildDrainTests.command`).
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        RebuildDrainTests().command(stores, orderId, quantity)
    }

    /// Both stores agree, with these numbers (`RebuildDrainTests.expectAgree`).
    func expectAgree(_ stores: TestStores, available: Int64, reserved: Int64, mysql: Int64) async throws {
        try await RebuildDrainTests().expectAgree(stores, available: available, reserved: reserved, mysql: mysql)
    }

    /// Item 1 with 10 units, order `a` holding 1 of them, recorded in MySQL: what the copies are taken of.
    func oneHoldRecorded(_ stores: TestStores) async throws {
        _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
        _ = try await stores.engine.reserve(command(stores, "\(stores.bizId)-a", 1))
        #expect(try await stores.drainWithWorker())
    }

    /// Runs a write-back worker until Redis no longer has item 1 (what its check between batches deletes).
    func workerForgets(_ stores: TestStores) async throws {
        let worker = stores.worker()
        let running = Task { try await worker.run() }
        await #expect(throws: Never.self) {
            try await waitFor("the worker forgets what Redis has") {
                try await stores.redis.command("EXISTS", stores.keys.item(stores.item(1))).int == 0
            }
        }
        worker.stop()
        try await running.value
    }

    /// Another instance on the test's stores, which has seen no drain mark yet (`DrainFloors`): it takes what Redis has
    /// until a check finds it out.
    func otherInstance(_ stores: TestStores) async throws -> InventoryEngine {
        try await stores.engine { _ in }
    }

    @Test("the worker finds it out: the stale keys go, a retried reserve of a recorded order is a replay")
    func foundByWorker() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let other = try await otherInstance(stores)
            try await oneHoldRecorded(stores)
            let snapshot = try await stores.snapshotRedis()
            let b = command(stores, "\(stores.bizId)-b", 2)
            _ = try await engine.reserve(b)
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)
            // A new order's event, held by an instance that knows no floor: its batch meets Redis's mark below MySQL's.
            _ = try await other.reserve(command(stores, "\(stores.bizId)-c", 3))
            #expect(try await stores.drainWithWorker())

            guard case .replayed(let replay) = try await engine.reserve(b) else {
                Issue.record("the retry of b was held again")
                return
            }
            #expect(replay.lines.map(\.reserved) == [2])
            try await expectAgree(stores, available: 4, reserved: 6, mysql: 10)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED", "RESERVED", "RESERVED"])
        }
    }

    @Test("the worker finds it out between batches: an order confirmed since is confirmed, not expired")
    func foundBetweenBatches() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            // (An id ending as a lease's key does: the forget keeps leases by their names, not by how keys end.)
            let order = "\(stores.bizId)-paid:lease"
            try await confirmedSinceCopy(stores, order)
            // Nothing new in the outbox: the worker's check between batches.
            try await workerForgets(stores)

            #expect(try await engine.reservation(orderId: order, bizId: stores.bizId).status == .confirmed)
            await #expect(throws: InventoryError.invalidState(.confirmed)) {
                try await engine.cancel(orderId: order, bizId: stores.bizId)
            }
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
        }
    }

    @Test("stock changes count too: a PUT and an adjustment MySQL has since the snapshot are in the rebuilt item")
    func stockChangesSince() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await sentBack(stores) {
                _ = try await engine.setStock(stores.item(1), StockSettings(stock: 20))
                _ = try await engine.adjustStock(stores.item(1), StockAdjustment(adjustmentId: "in", delta: 5, reason: nil))
            }
            try await workerForgets(stores)

            // The adjustment's retry is a replay (the ledger has it), and both stores have both changes.
            #expect(try await engine.adjustStock(stores.item(1), StockAdjustment(adjustmentId: "in", delta: 5, reason: nil)).replayed)
            try await expectAgree(stores, available: 24, reserved: 1, mysql: 25)
        }
    }

    @Test("a batch that raised the mark and then rolled back does not hide a Redis that went back past the next one")
    func afterRolledBackBatch() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await oneHoldRecorded(stores)
            let x = command(stores, "\(stores.bizId)-x", 2)
            // The mark of x's shard as a batch leaves it that raised it before its COMMIT and then rolled back.
            let keys = stores.keys
            let mark = keys.drainMark(shard: keys.partShard(orderId: stores.orderName(x.orderId), item: stores.item(1)))
            let count = try await JournalRepository(client: stores.mysql).drainMarkCounts([mark])[mark] ?? 0
            try await stores.redis.command("SET", mark, String(count + 1))
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.reserve(x)
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)
            try await workerForgets(stores)

            guard case .replayed = try await engine.reserve(x) else {
                Issue.record("the retry of x was held again")
                return
            }
            try await expectAgree(stores, available: 7, reserved: 3, mysql: 10)
        }
    }

    @Test("a PUT that meets the Redis that went back is refused, not applied with a delta from the old stock")
    func putMeetsOldRedis() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let other = try await otherInstance(stores)
            try await sentBack(stores) { _ = try await engine.setStock(stores.item(1), StockSettings(stock: 25)) }

            // Through an instance that knows no floor, its Redis half runs on the old Redis. Its delta (+20) came from
            // the old on-hand 10: applied to MySQL's 25 it made 45.
            await #expect(throws: InventoryError.self) { try await other.setStock(stores.item(1), StockSettings(stock: 30)) }
            #expect(try await stores.mysqlStock(1) == 25)
            _ = try await other.setStock(stores.item(1), StockSettings(stock: 30))
            try await expectAgree(stores, available: 29, reserved: 1, mysql: 30)
        }
    }

    @Test("a batch of the journal finds it out itself: it rolls back, Redis is forgotten, the batch is recorded")
    func foundByBatch() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let other = try await otherInstance(stores)
            try await oneHoldRecorded(stores)
            // b in a's shard, whose mark (and generation marker) the copy has.
            func shard(_ orderId: String) -> Int { stores.keys.partShard(orderId: stores.orderName(orderId), item: stores.item(1)) }
            let id = try #require((0..<200).map { "\(stores.bizId)-b\($0)" }.first { shard($0) == shard("\(stores.bizId)-a") })
            let b = command(stores, id, 2)
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.reserve(b)
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)
            // The retry of b, held again by the Redis that went back through an instance that knows no floor: its
            // event's batch (no worker) meets the mark of b's shard below MySQL's.
            _ = try await other.reserve(b)
            let events = try await RebuildDrainTests.outboxEvents(stores)
            #expect(events.count == 1)
            let result = try await JournalRepository(client: stores.mysql).apply(events, fences: engine.batchFences)
            #expect(result.duplicates.count == 1, "b's journal row is the first reserve's")
            #expect(try await stores.redis.command("EXISTS", stores.keys.item(stores.item(1))).int == 0)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED", "RESERVED"])
        }
    }
}
