import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// Initialisation with a lock: items missing from Redis are rebuilt from MySQL and the journal, once.
@Suite("Rebuilding items from MySQL")
struct InitTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    @Test("100 concurrent first reserves on a cold item, through two engines: exactly one rebuild, no oversell")
    func oneRebuild() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 60))
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            // A second instance of the service: same stores, its own engine (and its own in-process state).
            let other = InventoryEngine(
                redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(),
                configuration: stores.engine.configuration, logger: stores.logger
            )
            let held = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
                for index in 0..<100 {
                    let engine = index % 2 == 0 ? stores.engine : other
                    group.addTask {
                        do {
                            _ = try await engine.reserve(command(stores, "cold-\(index)", 1))
                            return true
                        } catch InventoryError.insufficientStock {
                            return false
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(held == 60)
            #expect(stores.engine.stats.itemRebuilds + other.stats.itemRebuilds == 1)
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.available == 0)
            #expect(level.reserved == 60)
        }
    }

    @Test("an evicted item comes back as db stock minus the live reservations in the journal")
    func rebuildCountsLiveReservations() async throws {
        try await TestStores.with { stores in
            // The negative entry kept for as long as the test may take on a busy machine (2 s by default).
            let engine = try await stores.engine { $0.absentMilliseconds = 600_000 }
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10, dangerNum: 2))
            _ = try await engine.reserve(command(stores, "a", 3))
            _ = try await engine.reserve(command(stores, "b", 2))
            _ = try await engine.cancel(orderId: "b", bizId: stores.bizId)
            let worker = stores.worker()
            let task = Task { try await worker.run() }
            #expect(try await stores.drained())
            worker.stop()
            try await task.value
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            #expect(level.dangerNum == 2)
            #expect(engine.stats.itemRebuilds == 1)
            await #expect(throws: InventoryError.notFound) { try await engine.stock(stores.item(2)) }
            #expect(try await stores.itemKeys(2, "*") == [stores.keys.absent(stores.item(2))], "no lock left behind, only the negative entry")
        }
    }

    @Test("a lock whose holder died is taken over after its lifetime")
    func expiredLockTakenOver() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 5))
            let key = stores.keys.item(stores.item(1))
            _ = try await stores.redis.command("DEL", key)
            let old = InventoryEngine.nowMilliseconds() - 60_000
            _ = try await stores.redis.command("HSET", key, "lock_user_id", "crashed-caller", "lock_time", String(old))
            _ = try await stores.engine.reserve(command(stores, "t", 2))
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.available == 3)
            #expect(level.reserved == 2)
            #expect(stores.engine.stats.itemRebuilds == 1)
        }
    }

    @Test("a live lock makes others wait, bounded, and then answer unavailable")
    func liveLockBounded() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 5))
            let key = stores.keys.item(stores.item(1))
            _ = try await stores.redis.command("DEL", key)
            let now = InventoryEngine.nowMilliseconds()
            _ = try await stores.redis.command("HSET", key, "lock_user_id", "busy-caller", "lock_time", String(now))
            var configuration = stores.engine.configuration
            configuration.initWaitMilliseconds = 200
            let engine = InventoryEngine(
                redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: configuration,
                logger: stores.logger
            )
            let thrown = await #expect(throws: InventoryError.self) { try await engine.reserve(command(stores, "w", 1)) }
            #expect(thrown?.case == .unavailable)
            #expect(engine.stats.itemRebuilds == 0)
        }
    }
}
