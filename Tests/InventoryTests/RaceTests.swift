import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

@testable import Inventory

/// Operations that race, instances whose clocks differ, keys that outlive or underlive each other (issue 17,
/// items 5, 7, 9 and 12).
@Suite("Races, clocks and companion keys")
struct RaceTests {
    func command(
        _ stores: TestStores, _ orderId: String, user: String? = nil, _ quantity: Int64, sku: UInt64 = 1, ttl: Int = 600
    ) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: user, items: [.init(skuId: sku, quantity: quantity)],
            ttlSeconds: ttl, shortage: .reject
        )
    }

    /// A second instance on the same stores whose clock is `skew` ms off.
    func skewedEngine(_ stores: TestStores, by skew: Int64) throws -> InventoryEngine {
        var configuration = stores.engine.configuration
        configuration.clock = { InventoryEngine.nowMilliseconds() + skew }
        return InventoryEngine(
            redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: configuration,
            logger: stores.logger
        )
    }

    func ttl(_ stores: TestStores, _ key: String) async throws -> Int64 {
        try await stores.redis.command("TTL", key).int ?? -2
    }

    @Test("a take-back with no earlier event, after a cancel gave the hold back, hands nothing back a second time")
    func undoAfterCancelHandsBackOnce() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 4))
            let eventId = try await stores.redis.command("HGET", stores.orderKey("o-1", sku: 1), "event").text ?? ""
            #expect(!eventId.isEmpty)
            _ = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)

            // A sync reserve whose commit failed (or a cluster part taken back) after the cancel already ran.
            await engine.undoReserve(
                orderId: "o-1", bizId: stores.bizId, lines: [ReservationLine(skuId: 1, requested: 4, reserved: 4)],
                eventId: eventId
            )
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
        }
    }

    @Test("two instances with skewed clocks count one per-user window: Redis's clock decides")
    func skewedClocksShareTheWindow() async throws {
        try await TestStores.with { stores in
            // An instance an hour ahead would be in another 60 s window, and another day.
            let ahead = try skewedEngine(stores, by: 3_600_000)
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10, userLimit: 1, userWindowSeconds: 60))
            // A window boundary may fall between the two reserves by chance: the second is refused only when both
            // are counted in the same window of Redis's clock, which is what is checked (Redis's clock read before the
            // first reserve and after the second: one window across both means both reserves were in it).
            let window = { (ms: Int64) in ms / 60_000 }
            let before = try await stores.engine.redisNow()
            _ = try await stores.engine.reserve(command(stores, "o-a", user: "u1", 1))
            do {
                _ = try await ahead.reserve(command(stores, "o-b", user: "u1", 1))
                let after = try await stores.engine.redisNow()
                #expect(window(before) != window(after), "a second unit in one window of Redis's clock")
            } catch InventoryError.userLimitExceeded {
                // refused: one window, one unit
            }
        }
    }

    @Test("an instance whose clock is ahead neither expires a hold early nor sweeps it")
    func skewedClockDoesNotExpireEarly() async throws {
        try await TestStores.with { stores in
            let ahead = try skewedEngine(stores, by: 3_600_000)
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await stores.engine.reserve(command(stores, "o-1", 4, ttl: 600))

            #expect(try await ahead.expire(named: stores.orderName("o-1")) == false)
            #expect(await ExpirySweeper(engine: ahead, logger: stores.logger).sweepOnce() == 0)
            #expect(try await stores.engine.reservation(orderId: "o-1", bizId: stores.bizId).status == .reserved)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 4)
        }
    }

    /// Item 1 with both companion keys: a per-user limit (its usage hash, after one user's hold) and a reusable pool
    /// (its code set).
    func itemWithCompanions(_ stores: TestStores) async throws -> StockItemID {
        let item = stores.item(1)
        _ = try await stores.engine.setStock(item, StockSettings(stock: 10, userLimit: 5))
        _ = try await stores.engine.setPool(item, CodePool(kind: .reusable))
        _ = try await stores.engine.loadCodes(item, ["CODE-A", "CODE-B"])
        _ = try await stores.engine.reserve(command(stores, "o-1", user: "u1", 1))
        return item
    }

    @Test("PUT stock renews the usage hash and the code set with the item; a reserve keeps the code set warm")
    func companionKeysLiveAsLongAsTheItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = try await itemWithCompanions(stores)
            let usage = stores.keys.userUsage(item)
            let codes = stores.keys.codes(item)
            let day: Int64 = 86_400
            // Both about to run out while the item lives on.
            _ = try await stores.redis.command("EXPIRE", usage, "5")
            _ = try await stores.redis.command("EXPIRE", codes, "5")

            _ = try await engine.setStock(item, StockSettings(stock: 12))
            #expect(try await ttl(stores, usage) > day, "a lifetime per-user limit must not reset while its item lives")
            #expect(try await ttl(stores, codes) > day, "a pool must not lose its codes while its item lives")

            _ = try await stores.redis.command("EXPIRE", codes, "5")
            _ = try await engine.reserve(command(stores, "o-2", user: "u2", 1))
            #expect(try await ttl(stores, codes) > day, "kept warm by a reserve, like the item")
        }
    }

    @Test("an item, its usage hash and its code set expire at one instant: after a PUT, and after a keep-warm whichever key ran low")
    func companionKeysExpireTogether() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = try await itemWithCompanions(stores)
            let keys = [stores.keys.item(item), stores.keys.userUsage(item), stores.keys.codes(item)]
            let expiries = { () async throws -> [Int64] in
                var instants: [Int64] = []
                for key in keys { instants.append(try await stores.redis.command("PEXPIRETIME", key).int ?? -2) }
                return instants
            }
            _ = try await engine.setStock(item, StockSettings(stock: 12))
            let afterPut = try await expiries()
            #expect(afterPut[0] > 0 && Set(afterPut).count == 1, "one instant after a PUT: \(afterPut)")

            // Half the item TTL is the keep-warm's line: one key a minute below it, the others a minute above (the
            // item's own, then a companion's), as keys renewed a moment apart end up at the line.
            let half = Int64(engine.configuration.itemTTLSeconds) * 500
            for (order, low) in [("o-2", 0), ("o-3", 1), ("o-4", 2)] {
                for (index, key) in keys.enumerated() {
                    _ = try await stores.redis.command("PEXPIRE", key, String(index == low ? half - 60_000 : half + 60_000))
                }
                _ = try await engine.reserve(command(stores, order, user: "u-\(order)", 1))
                let renewed = try await expiries()
                let now = try await engine.redisNow()
                #expect(Set(renewed).count == 1, "key \(low) ran low: the three renewed at one instant, not \(renewed)")
                #expect(renewed.allSatisfy { $0 - now > half }, "renewed to the item TTL: \(renewed) at \(now)")
            }
        }
    }

    @Test("a confirm after the hold's deadline, before the sweeper got there, is refused and the hold expires")
    func confirmAfterDeadline() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-late"
            _ = try await engine.reserve(command(stores, orderId, 4))
            // The deadline passed a while ago (no waiting: the hold's own record says so).
            let past = String(try await engine.redisNow() - 1000)
            _ = try await stores.redis.command("HSET", stores.orderKey(orderId, sku: 1), "expires_at", past)

            await #expect(throws: InventoryError.orderClosed(.expired)) { try await engine.confirm(orderId: orderId, bizId: stores.bizId) }
            #expect(try await engine.reservation(orderId: orderId, bizId: stores.bizId).status == .expired)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["EXPIRED"])
            #expect(try await stores.mysqlStock(1) == 10)
        }
    }

    @Test("the journal sweep finds holds by their UTC deadline whatever the MySQL session's time zone")
    func staleHoldsIndependentOfTimeZone() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-held"
            _ = try await stores.engine.reserve(command(stores, orderId, 1, ttl: 600))
            #expect(try await stores.drainWithWorker())
            // One connection whose session is five hours east of UTC.
            var settings = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
            settings.poolSize = 1
            let mysql = MySQLClient(configuration: settings, logger: stores.logger)
            defer { Task { await mysql.shutdown() } }
            _ = try await mysql.query("SET time_zone = '+05:00'")
            let engine = InventoryEngine(
                redis: stores.redis, mysql: mysql, scripts: try InventoryScripts.load(),
                configuration: stores.engine.configuration, logger: stores.logger
            )
            let now = try await engine.staleJournalHolds(graceMilliseconds: 0, limit: 10, bizId: stores.bizId).orders
            #expect(now.isEmpty, "a hold with ten minutes left is not stale")
            let inAnHour = try await engine.staleJournalHolds(graceMilliseconds: -3_600_000, limit: 10, bizId: stores.bizId).orders
            #expect(inAnHour == [stores.orderName(orderId)], "an hour from now it is (by its Redis name)")
        }
    }

    @Test("two PUTs creating one item at once: Redis and MySQL agree, on one of the two values")
    func concurrentCreatingPuts() async throws {
        try await TestStores.with { stores in
            let skus = Array(UInt64(100)..<140)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sku in skus {
                    for stock: Int64 in [10, 20] {
                        group.addTask { _ = try await stores.engine.setStock(stores.item(sku), StockSettings(stock: stock)) }
                    }
                }
                try await group.waitForAll()
            }
            for sku in skus {
                let onHand = try await stores.engine.stock(stores.item(sku)).onHand
                #expect([10, 20].contains(onHand))
                #expect(try await stores.mysqlStock(sku) == onHand, "sku \(sku)")
            }
        }
    }

    @Test("a PUT whose MySQL half fails leaves the item as it was, settings too")
    func failedPutRestoresSettings() async throws {
        let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(mysqlPort: proxy.port) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10, dangerNum: 2))
            proxy.down = true
            let thrown = await #expect(throws: InventoryError.self) {
                try await engine.setStock(
                    stores.item(1),
                    StockSettings(stock: 30, infinite: true, dangerNum: 7, backorderLimit: 5, userLimit: 3, userWindowSeconds: 60)
                )
            }
            #expect(thrown?.case == .unavailable)
            proxy.down = false
            let level = try await engine.stock(stores.item(1))
            #expect(level.onHand == 10)
            #expect(level.infinite == false)
            #expect(level.dangerNum == 2)
            #expect(level.backorderLimit == 0)
            #expect(level.userLimit == 0)
            #expect(level.userWindowSeconds == 0)
        }
        await proxy.close()
    }

    @Test("reconcile --fix between the Redis and MySQL halves of a PUT leaves the change alone; both stores end equal")
    func reconcileFixBetweenHalves() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let scripts = try InventoryScripts.load()
            let runner = RedisScriptRunner(client: stores.redis)
            let itemKey = stores.keys.item(item)
            // The PUT's Redis half (as InventoryEngine.setStock runs it): on-hand 10 -> 30.
            let half = try await runner.run(
                SetStockCall(item, StockSettings(stock: 30), itemTTLSeconds: 604_800, layout: stores.keys), of: scripts
            )
            guard case .changed(let delta, let mark, _) = half else {
                Issue.record("set_stock answered \(half)")
                return
            }
            #expect(delta == 20)

            // The reconciler, with --fix, lands between the halves.
            let reconciler = Reconciler(
                redis: stores.redis, mysql: stores.mysql, scripts: scripts, keys: stores.keys, logger: stores.logger
            )
            let between = try await reconciler.run(.business(stores.bizId), fix: true)
            #expect(between.differences.isEmpty, "a change in flight is not a difference")
            #expect(between.itemsInFlight == 1)
            #expect(try await engine.stock(item).onHand == 30, "the Redis half is left alone")

            // The MySQL half, then the fence closes (as setStock does).
            _ = try await StockRepository(client: stores.mysql).apply(
                StockChange(
                    bizId: item.bizId, skuId: item.skuId, delta: 20, reason: "set", source: "set:\(UUID().uuidString)",
                    infinite: nil, dangerNum: nil, backorderLimit: nil
                )
            )
            #expect(try await runner.run(AdminDoneCall(itemKey: itemKey, token: mark), of: scripts) == .closed)
            #expect(try await stores.mysqlStock(1) == 30)
            let after = try await reconciler.run(.business(stores.bizId), fix: false)
            #expect(after.differences.isEmpty)
            #expect(after.itemsInFlight == 0)
            #expect(try await engine.stock(item).onHand == 30)
        }
    }

    @Test("two instances' sweepers: each shard is swept by one of them, the holder of its lease")
    func oneSweeperPerShard() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            // Leases long enough that the test's own pace (a busy machine) cannot let them lapse.
            let first = ExpirySweeper(engine: engine, leaseMilliseconds: 600_000, logger: stores.logger)
            let second = ExpirySweeper(
                engine: try skewedEngine(stores, by: 0), leaseMilliseconds: 600_000, logger: stores.logger
            )
            #expect(await first.sweepOnce() == 0, "takes every shard's lease")
            // Holds whose deadline has passed (their records say so: no waiting), in several shards.
            let past = try await engine.redisNow() - 1000
            let orders = (0..<8).map { "\(stores.bizId)-x\($0)" }
            for orderId in orders {
                _ = try await engine.reserve(command(stores, orderId, 1))
                _ = try await stores.redis.command("HSET", stores.orderKey(orderId, sku: 1), "expires_at", String(past))
                _ = try await stores.redis.command("ZADD", stores.expiryKey(orderId, sku: 1), String(past), stores.orderName(orderId))
            }
            #expect(await second.sweepOnce() == 0, "the other instance holds every shard")
            #expect(await first.sweepOnce() == orders.count)
            #expect(try await engine.stock(stores.item(1)).reserved == 0)
        }
    }

    @Test("the sweeper gives up on every abandoned reserve of a shard, also after one it cannot give up")
    func sweepAbandonedSkipsAFailure() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let sweeper = ExpirySweeper(engine: engine, logger: stores.logger)
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            let crashed = "\(stores.bizId)-crash"
            let order = ReserveCommand(
                orderId: crashed, bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 1), .init(skuId: skus[1], quantity: 1)], ttlSeconds: 600,
                shortage: .reject
            )
            await #expect(throws: InventoryError.unavailable("failpoint after_first_part")) {
                try await engine.reserve(order, failpoint: "after_first_part")
            }
            // An entry of the same shard, first in line, whose directory is gone: giving it up fails.
            _ = try await stores.redis.command("ZADD", stores.keys.pendingIndex(forOrder: stores.orderName(crashed)), "0", "no-such-order")
            let after = InventoryEngine.nowMilliseconds() + engine.configuration.reserveDeadlineMilliseconds + 60_000
            #expect(await sweeper.sweepAbandoned(nowMilliseconds: after) == 1)
            for sku in skus { #expect(try await engine.stock(stores.item(sku)).reserved == 0) }
        }
    }
}
