import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

@testable import Inventory

/// Stock changes whose halves meet a store at a chosen moment: a MySQL half held in a fault proxy while the item is
/// rebuilt or repaired, a reversal cut on its way to Redis and stored as a retry task.
extension AdjustmentHalvesTests {
    /// Two attempts of one adjustment: the first one's Redis half is made and its key vanishes (evicted); the second
    /// one makes its Redis half while the first one's MySQL half commits, so it finds its MySQL half a duplicate and
    /// must reverse its Redis half; Redis is unreachable just then, and the reversal becomes a stored task. More than a
    /// minute later a retry finds the adjustment in MySQL and settles the key. The task then reverses the half all the
    /// same: it is a surplus whatever the key says (it answered "done", and Redis kept the removal twice: 4 on hand
    /// against MySQL's 7).
    @Test("a surplus half's reversal stored as a task still reverses after a retry settled the adjustment's key")
    func surplusReversalAfterSettle() async throws {
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(redisPort: proxy.port) { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            // The second attempt on a MySQL connection of its own, whose statement the server shows.
            var settings = stores.mysql.configuration
            settings.poolSize = 1
            let client = MySQLClient(configuration: settings, logger: stores.logger)
            let attempt = InventoryEngine(
                redis: stores.redis, mysql: client, scripts: try InventoryScripts.load(), configuration: stores.engine.configuration,
                logger: stores.logger
            )
            do {
                try await attempt.loadScripts()
                let session = try #require(try await client.query("SELECT CONNECTION_ID() AS id").rows.first?.int64("id"))
                // The first attempt's Redis half; its key vanishes.
                let change = StockAdministration.mysqlHalf(item, adjustment, half: try await redisHalf(stores))
                _ = try await stores.redis.command("DEL", adjustmentKey(stores))
                // Its MySQL half, committed once the second attempt waits for its ledger row.
                let running = try await stores.mysql.withTransaction(isolation: nil) { other in
                    _ = try await other.perform { try StockRepository.apply(change, skuId: .int(1), on: $0) }
                    let running = Task { try await attempt.adjustStock(item, adjustment) }
                    try await waitFor("the second attempt's ledger insert waiting for the first's") {
                        try await stores.mysql.query(
                            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE '%INSERT INTO stock_ledger%'",
                            [.int(session)]
                        ).rows.first?.int64("n") == 1
                    }
                    #expect(try await onHand(stores) == 4, "both attempts' Redis halves")
                    proxy.cutBeforeRequest(containing: ":undo:", thenDown: true)
                    return running
                }
                _ = try? await running.value
                proxy.down = false
                try await stores.reconnected()
                #expect(try await stores.pendingRetryTasks() == 1, "the reversal stored for the retrier")
                #expect(try await onHand(stores) == 4)

                // More than a minute later: a retry finds the adjustment in MySQL and settles its key. (The half's
                // time moves back a minute everywhere it is named: its key, its fence and the stored task's token.)
                let pending = try #require(try await stores.redis.command("GET", adjustmentKey(stores)).text)
                #expect(pending.hasPrefix("pending:"))
                let before = pending.split(separator: ":")[2]
                let after = try await age(stores)
                _ = try await stores.mysql.query(
                    "UPDATE compensation_tasks SET payload = REPLACE(payload, ?, ?) WHERE status = 'PENDING' AND payload LIKE ?",
                    [.string("@\(before)\t"), .string("@\(after)\t"), .string("%\(stores.keys.prefix):%")]
                )
                #expect(try await stores.engine.adjustStock(item, adjustment).replayed)
                #expect(try await isDone(stores))

                _ = try await stores.engine.retryCompensations(limit: 1000)
                #expect(try await stores.pendingRetryTasks() == 0)
                #expect(try await onHand(stores) == 7)
                #expect(try await stores.mysqlStock(1) == 7)
                #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
        await proxy.close()
    }

    /// Runs `change` (on the held attempt's engine) until its MySQL half's transaction begins, where `proxy` holds it
    /// (at its START TRANSACTION, before any statement of it): the Redis half is made, the MySQL half waits for `proxy.release()`.
    func heldAtMySQLHalf<T: Sendable>(
        _ proxy: FaultProxy, _ change: @escaping @Sendable () async throws -> T
    ) async throws -> Task<T, any Error> {
        proxy.holdRequest(containing: FaultProxy.begin)
        let running = Task { try await change() }
        try await waitFor("the change's MySQL half held") { proxy.isHolding }
        return running
    }

    /// The item vanishes between an adjustment's halves and is rebuilt from MySQL before the MySQL half commits (its
    /// transaction waited): the rebuilt item has neither the Redis half nor the MySQL half. The close of the change
    /// finds the item built from a read before its commit and adds the change (it was lost: Redis 10 against MySQL's
    /// 7, a removal sold).
    @Test("an item rebuilt between an adjustment's halves, from MySQL before its commit, gets the change when it closes")
    func rebuiltBetweenHalves() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                // The MySQL half's transaction begins with START TRANSACTION: held there, after the Redis half.
                let running = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                #expect(try await onHand(stores) == 7)
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                #expect(try await onHand(stores) == 10, "rebuilt from MySQL, which has no part of it yet")
                proxy.release()
                let outcome = try await running.value
                #expect(!outcome.replayed)
            }
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Likewise when a repair writes the item from MySQL between the halves (the attempt stalled more than a minute,
    /// its fence lapsed): the repair read the stock row before the MySQL half committed.
    @Test("an item repaired between an adjustment's halves, from MySQL before its commit, gets the change when it closes")
    func repairedBetweenHalves() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let running = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                try await stores.ageFences(1)
                _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
                #expect(try await onHand(stores) == 10, "repaired to MySQL's count")
                proxy.release()
                _ = try await running.value
            }
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A repair that writes the item from MySQL after the MySQL half committed, before its close (Redis differed for
    /// another reason): the repaired item has the change, and the close must not add it again (it did when the repair
    /// did not record the row's version it read: Redis 4 against MySQL's 7).
    @Test("an item repaired after an adjustment's MySQL half, before its close, is not given the change twice")
    func repairedBeforeClose() async throws {
        try await TestStores.with(redisPort: TestStores.redisAddress().port) { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores, heldRedis: true) { attempt, mysqlProxy, redisProxy in
                let redisProxy = try #require(redisProxy)
                let running = try await heldAtMySQLHalf(mysqlProxy) { try await attempt.adjustStock(item, adjustment) }
                // The close names the adjustment's key: held once the MySQL half committed.
                redisProxy.holdRequest(containing: adjustmentKey(stores))
                mysqlProxy.release()
                try await waitFor("the attempt's close held") { redisProxy.isHolding }
                #expect(try await stores.mysqlStock(1) == 7)
                // Redis differs for another reason; the repair (the half's fence lapsed) writes MySQL's count.
                _ = try await stores.redis.command("HINCRBY", stores.keys.item(item), "stock_num", "5")
                try await stores.ageFences(1)
                _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
                #expect(try await onHand(stores) == 7)
                redisProxy.release()
                _ = try await running.value
            }
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// An infinite item's repair keeps Redis's stock_num (the reconciler does not judge it), which has the half: the
    /// close must not add the change to it again (adding the delta after a repair of the item read before the commit
    /// counted it twice: 4 against MySQL's 7).
    @Test("an infinite item repaired between an adjustment's halves is not given the change twice")
    func infiniteRepairedBetweenHalves() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10, infinite: true))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let running = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                #expect(try await stores.itemFields(1)["stock_num"] == "7")
                // Another counter is off; the repair (the half's fence lapsed) writes it and keeps stock_num.
                _ = try await stores.redis.command("HINCRBY", stores.keys.item(item), "used_stock_num", "1")
                try await stores.ageFences(1)
                _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
                #expect(try await stores.itemFields(1)["used_stock_num"] == "0")
                proxy.release()
                _ = try await running.value
            }
            _ = try await stores.engine.stock(item)
            #expect(try await stores.itemFields(1)["stock_num"] == "7")
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A PUT that makes an infinite item finite changes what stock_num counts (on-hand, then what is left to sell);
    /// its reversal, when its MySQL half fails, cannot take the delta back by arithmetic (it left 6 for an on-hand of
    /// 10): the item is dropped and rebuilt from MySQL, which never had the change.
    @Test("a PUT that made an infinite item finite and whose MySQL half failed leaves the item as MySQL has it")
    func infiniteFlipReversed() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10, infinite: true))
            _ = try await stores.engine.reserve(
                ReserveCommand(
                    orderId: "f-1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 4)], ttlSeconds: 600,
                    shortage: .reject
                )
            )
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                proxy.cutBeforeRequest(containing: FaultProxy.begin, thenDown: true)
                await #expect(throws: InventoryError.self) { try await attempt.setStock(item, StockSettings(stock: 20, infinite: false)) }
            }
            let level = try await stores.engine.stock(item)
            #expect(level.infinite)
            #expect(level.reserved == 4)
            #expect(try await stores.itemFields(1)["stock_num"] == "10", "the on-hand stock, as an infinite item counts it")
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A PUT that leaves the stock as it is (delta 0, a setting changed) and whose MySQL half fails is reversed like
    /// any other: its reversal took back `-0`, which Redis refuses as an integer, so the script failed, the setting
    /// stayed, and the retry task failed the same way for ever (found by the model check, cluster seed 392102).
    @Test("a PUT that changes no stock and whose MySQL half failed is reversed: its settings go back")
    func unchangedStockReversed() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                proxy.cutBeforeRequest(containing: FaultProxy.begin, thenDown: true)
                await #expect(throws: InventoryError.self) { try await attempt.setStock(item, StockSettings(stock: 10, dangerNum: 3)) }
            }
            let level = try await stores.engine.stock(item)
            #expect(level.dangerNum == 0)
            #expect(level.available == 10)
            #expect(try await stores.pendingRetryTasks() == 0)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Redis goes away after an adjustment's MySQL half (at its COMMIT): the change is made, and the answer must not say that nothing
    /// was (it did: "503 …; nothing was changed", and a client that believed it and sent the change again under a new
    /// id would make it twice).
    @Test("a change made in both stores whose level cannot be read is not answered 'nothing was changed'")
    func madeButUnread() async throws {
        try await TestStores.with(redisPort: TestStores.redisAddress().port) { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores, heldRedis: true) { attempt, mysqlProxy, redisProxy in
                let redisProxy = try #require(redisProxy)
                // Held at its COMMIT: the transaction raised Redis's drain mark before it (DrainMarkSQL).
                mysqlProxy.holdRequest(containing: FaultProxy.commit)
                let running = Task { try await attempt.adjustStock(item, adjustment) }
                try await waitFor("the change's MySQL half held at its COMMIT") { mysqlProxy.isHolding }
                redisProxy.down = true
                mysqlProxy.release()
                let thrown = await #expect(throws: InventoryError.self) { try await running.value }
                #expect(thrown?.case == .madeUnread)
            }
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await onHand(stores) == 7)
        }
    }

    /// A removal whose COMMIT got no answer, and whose outcome cannot be learnt, is kept in Redis; but its item was
    /// rebuilt between its halves (from a read before the commit): the kept half is not in it while MySQL has the
    /// removal (it stayed so: Redis 10 against MySQL's 7, 3 units to sell twice). The keep drops such an item, and its
    /// rebuild reads MySQL's outcome.
    @Test("a removal kept after an unknown COMMIT, its item rebuilt between its halves, leaves the item as MySQL has it")
    func keptRemovalRebuiltBetween() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let running = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                #expect(try await onHand(stores) == 10, "rebuilt from MySQL, which has no part of it yet")
                // The COMMIT reaches MySQL, its answer does not, and MySQL stays away while the attempt asks the ledger.
                proxy.cutAfterRequest(containing: FaultProxy.commit, thenDown: true)
                proxy.release()
                let thrown = await #expect(throws: InventoryError.self) { try await running.value }
                #expect(thrown?.case == .outcomeUnknown)
                proxy.down = false
            }
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Not so for a PUT, with a setting: its delta was taken from the item before the rebuild, so its MySQL half does
    /// not commit (a later PUT may have set the stock from the rebuilt item: PutHalvesTests), and it answers 503 with
    /// nothing changed, setting and all. (Before, the rebuilt item got the delta and the setting when it closed.)
    @Test("an item rebuilt between a PUT's halves, from MySQL before its commit: the PUT is not committed, nothing changed")
    func putRebuiltBetweenHalves() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10, dangerNum: 2))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let running = try await heldAtMySQLHalf(proxy) { try await attempt.setStock(item, StockSettings(stock: 4, dangerNum: 3)) }
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                #expect(try await onHand(stores) == 10)
                proxy.release()
                let thrown = await #expect(throws: InventoryError.self) { try await running.value }
                #expect(thrown?.case == .unavailable)
            }
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.itemFields(1)["danger_num"] == "2")
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A code upload records its codes in MySQL (a one-time pool's stock grows by as many), then adds them in Redis. A
    /// repair between the two writes MySQL's count into the item without the codes: the upload must not add the count
    /// again. (It does not: a one-time pool's stock_num without as many codes is an item not whole, lib/items.lua, and
    /// the upload's add_codes.lua rebuilds it from MySQL instead.)
    @Test("a repair between a code upload's MySQL and Redis halves does not count its codes twice")
    func repairedDuringUpload() async throws {
        try await TestStores.with(redisPort: TestStores.redisAddress().port) { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setPool(item, CodePool(kind: .oneTime))
            #expect(try await onHand(stores) == 0, "the item in Redis")
            let codes = ["HELD-CODE-1", "HELD-CODE-2", "HELD-CODE-3"]
            try await withHeldAttempt(stores, heldRedis: true) { attempt, _, redisProxy in
                let redisProxy = try #require(redisProxy)
                redisProxy.holdRequest(containing: codes[0])
                let running = Task { try await attempt.loadCodes(item, codes) }
                try await waitFor("the upload's Redis half held") { redisProxy.isHolding }
                #expect(try await stores.mysqlStock(1) == 3)
                _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
                #expect(try await stores.itemFields(1)["stock_num"] == "3", "repaired to MySQL's count")
                redisProxy.release()
                #expect(try await running.value == CodeLoadOutcome(added: 3, duplicates: 0))
            }
            #expect(try await onHand(stores) == 3)
            #expect(try await stores.redis.command("SCARD", stores.keys.codes(item)).int == 3)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
