import Foundation
import InventoryTestSupport
import MySQLClient
import Testing

@testable import Inventory

/// A PUT sets on-hand stock: it turns the value asked for into a delta from what the Redis item counts, and MySQL
/// gets that delta. Another stock change's half still in the item and not (or not yet) in MySQL must not be counted
/// (lua/lib/fence.lua, the stale list; set_stock.lua).
@Suite("PUT beside another change's half")
struct PutHalvesTests {
    /// Item 1 set to 10, then the Redis half only of a PUT of 30 (+20): its delta, token and settings.
    func redisHalfOfPut(_ stores: TestStores) async throws -> (delta: Int64, token: String, settings: String) {
        let item = stores.item(1)
        _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
        let reply = try await stores.engine.stores.run(
            SetStockCall(item, StockSettings(stock: 30), itemTTLSeconds: 600, layout: stores.keys)
        )
        guard case .changed(let delta, let token, let settings) = reply else {
            Issue.record("set_stock did not change the item: \(reply)")
            throw CancellationError()
        }
        return (delta, token, settings)
    }

    /// A PUT of item 1 that made its Redis half and waits at the start of its MySQL transaction (held by the proxy)
    /// until `proxy.release()`.
    func heldAfterRedisHalf(
        _ stores: TestStores, _ proxy: FaultProxy, _ settings: StockSettings
    ) async throws -> Task<StockLevel, any Error> {
        proxy.holdRequest(containing: FaultProxy.begin)
        let put = Task { try await stores.engine.setStock(stores.item(1), settings) }
        try await waitFor("the PUT's MySQL half held") { proxy.isHolding }
        return put
    }

    @Test("a PUT retried after its COMMIT got no answer sets the stock in MySQL too, not a delta of 0")
    func retryAfterUnknownCommit() async throws {
        try await CommitOutcomeTests().withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            // The COMMIT never arrives and MySQL is gone at once: the removal's Redis half is kept (4 on hand).
            proxy.cutBeforeRequest(containing: FaultProxy.commit, thenDown: true)
            let thrown = await #expect(throws: InventoryError.self) { try await engine.setStock(item, StockSettings(stock: 4)) }
            #expect(thrown?.case == .outcomeUnknown)
            proxy.down = false
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 10)
            #expect(try await engine.stock(item).onHand == 4)
            // The admin's retry. Before: a delta of 0 from the kept half, MySQL stayed at 10 while the answer said 4,
            // and the reconciler later brought Redis to MySQL's 10.
            let level = try await engine.setStock(item, StockSettings(stock: 4))
            #expect(level.onHand == 4)
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 4)
            #expect(try await stores.reconciler().run(.business(stores.bizId), fix: true).differences == [])
            #expect(try await engine.stock(item).onHand == 4)
        }
    }

    @Test("a PUT that adds, retried after its COMMIT landed unanswered and its Redis half was reversed, adds once")
    func additionRetryAfterUnknownCommit() async throws {
        try await CommitOutcomeTests().withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            // The COMMIT lands, its answer is lost and MySQL is gone: the addition's Redis half is reversed (Redis never
            // has more to sell than MySQL may have), while MySQL has it.
            proxy.cutAfterRequest(containing: FaultProxy.commit, thenDown: true)
            let thrown = await #expect(throws: InventoryError.self) { try await engine.setStock(item, StockSettings(stock: 30)) }
            #expect(thrown?.case == .outcomeUnknown)
            proxy.down = false
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 30)
            #expect(try await engine.stock(item).onHand == 10)
            // The retry. Before: +20 again from the reversed item, MySQL 50, the answer 30, and the reconciler later
            // brought Redis to MySQL's 50.
            #expect(try await engine.setStock(item, StockSettings(stock: 30)).onHand == 30)
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 30)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a given-up PUT's reversal run later as a stored task puts its half on the stale list in the same step")
    func givenUpReversalAsTask() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            let itemKey = stores.keys.item(item)
            // A PUT's Redis half (+20) whose COMMIT landed without an answer, and whose reversal could not run at once.
            let (delta, token, settings) = try await redisHalfOfPut(stores)
            _ = try await StockRepository(client: stores.mysql).apply(
                StockChange(bizId: stores.bizId, skuId: 1, delta: delta, reason: "set", source: "set:\(UUID().uuidString)")
            )
            #expect(try await stores.mysqlStock(1) == 30)
            let task = CompensationTask.undoStock(
                itemKey: itemKey, adjustmentKey: itemKey, delta: delta, fingerprint: "", marker: itemKey + ":undo:t", token: token,
                settings: settings, givenUp: true
            )
            let stored = try #require(CompensationTask(kind: task.kind, payload: task.payload))
            _ = try await engine.compensator.runCompensation(stored)
            #expect(try await engine.stock(item).onHand == 10)
            let at = try #require(token.split(separator: "@").last.map(String.init))
            let fields = try await stores.redis.command("HMGET", itemKey, "admin_open", "admin_stale").array ?? []
            #expect(fields.first?.text == nil, "out of the fence")
            #expect(fields.last?.text == "u" + at, "on the stale list, as given up")
            // The next PUT rebuilds the item from MySQL (30) and moves it by 0. Before, the reversal closed the half
            // and the PUT took +20 from the reversed item: MySQL 50.
            #expect(try await engine.setStock(item, StockSettings(stock: 30)).onHand == 30)
            #expect(try await stores.mysqlStock(1) == 30)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a given-up PUT's half that went with lost Redis data is not reversed, and still goes on the stale list")
    func givenUpHalfLost() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            let itemKey = stores.keys.item(item)
            let (delta, token, settings) = try await redisHalfOfPut(stores)
            // Redis lost the half's entry with its last writes (the counters as they were: 10).
            _ = try await stores.redis.command("HDEL", itemKey, "admin_open")
            _ = try await stores.redis.command("HINCRBY", itemKey, "stock_num", String(-delta))
            #expect(
                await engine.compensator.undoStock(
                    itemKey: itemKey, delta: delta, adjustmentKey: nil, fingerprint: "", token: token, settings: settings, givenUp: true
                )
            )
            #expect(try await engine.stock(item).onHand == 10, "nothing reversed: the half was not in the item")
            let at = try #require(token.split(separator: "@").last.map(String.init))
            #expect(try await stores.redis.command("HGET", itemKey, "admin_stale").text == "u" + at)
        }
    }

    @Test("a PUT beside a half under way answers 503 with nothing changed; once that half is left for good, it rebuilds")
    func besideAbandonedHalf() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            // An adjustment whose caller stopped after its Redis half (−3): MySQL never gets it.
            let dead = StockAdjustment(adjustmentId: "a-1", delta: -3, reason: nil)
            guard case .applied = try await engine.stores.run(AdjustStockCall(item, dead, retentionSeconds: 600, layout: stores.keys))
            else {
                Issue.record("adjust_stock did not apply")
                return
            }
            // While its half may still be under way, a PUT waits, then answers 503. Before: it set on-hand 20 by a
            // delta of +13 from the 7 Redis counted, MySQL went to 23, and the reconciler later brought Redis there.
            let busy = await #expect(throws: InventoryError.self) { try await engine.setStock(item, StockSettings(stock: 20)) }
            #expect(busy?.case == .unavailable)
            #expect(try await engine.stock(item).onHand == 7)
            #expect(try await stores.mysqlStock(1) == 10)
            // A minute later the half is stale: the PUT drops the item, rebuilds it from MySQL (10), and moves it by +10.
            try await stores.ageFences(1)
            #expect(try await engine.setStock(item, StockSettings(stock: 20)).onHand == 20)
            #expect(try await stores.mysqlStock(1) == 20)
            #expect(try await stores.reconciler().run(.business(stores.bizId), fix: true).differences == [])
            #expect(try await engine.stock(item).onHand == 20)
            // The adjustment's retry finds its half gone with the rebuild, and applies it afresh, in both stores.
            #expect(try await engine.adjustStock(item, dead).level.onHand == 17)
            #expect(try await stores.mysqlStock(1) == 17)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a PUT whose item is rebuilt between its halves is not committed: the later PUT's stock stands in both stores")
    func itemRebuiltBetweenHalves() async throws {
        try await CommitOutcomeTests().withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            // PUT 1 (30) stops after its Redis half (+20).
            let first = try await heldAfterRedisHalf(stores, proxy, StockSettings(stock: 30))
            // Redis loses the item; PUT 2 (30) rebuilds it from MySQL (10), without PUT 1's half, and moves it by +20.
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            #expect(try await engine.setStock(item, StockSettings(stock: 30)).onHand == 30)
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 30)
            proxy.release()
            // Before: PUT 1 committed its +20 as well, and the close of its fence added it to the rebuilt item: 50 in
            // both stores against two answers of 30, and nothing for the reconciler to see.
            let thrown = await #expect(throws: InventoryError.self) { try await first.value }
            #expect(thrown?.case == .unavailable, "nothing was changed")
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 30)
            #expect(try await engine.stock(item).onHand == 30)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a PUT whose MySQL half comes after a one-time pool was made for the item is refused (409), nothing changed")
    func oneTimePoolMadeBetweenHalves() async throws {
        try await CommitOutcomeTests().withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 0))
            // The PUT (10) stops after its Redis half.
            let put = try await heldAfterRedisHalf(stores, proxy, StockSettings(stock: 10))
            // A one-time pool is made meanwhile: MySQL's stock is still 0.
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            proxy.release()
            // Before: MySQL got the 10 units, a one-time pool's stock without codes, and the item could be neither sold
            // nor rebuilt whole (503 for good).
            let thrown = await #expect(throws: InventoryError.self) { try await put.value }
            #expect(thrown?.case == .poolConflict)
            #expect(try await CommitOutcomeTests().mysqlStock(stores) == 0)
            #expect(try await engine.stock(item).onHand == 0)
            #expect(try await engine.loadCodes(item, ["CODE-A"]) == CodeLoadOutcome(added: 1, duplicates: 0))
            let held = try await engine.reserve(
                ReserveCommand(
                    orderId: "o-1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)], ttlSeconds: 600,
                    shortage: .reject
                )
            )
            guard case .created(let reservation) = held else {
                Issue.record("the reserve did not hold: \(held)")
                return
            }
            #expect(reservation.lines.first?.codes == ["CODE-A"])
            #expect(try await stores.drainWithWorker())
            let report = try await stores.reconciler().run(.business(stores.bizId))
            #expect(report.differences == [])
            #expect(report.codeDifferences == [])
        }
    }
}
