import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

@testable import Inventory

/// A stock change whose COMMIT reached MySQL but whose answer did not come back: MySQL's ledger decides what
/// happened, and Redis is never left with more to sell than MySQL may have.
@Suite("Stock changes whose commit outcome is unknown")
struct CommitOutcomeTests {
    /// Runs `body` with stores whose MySQL connections go through a fault proxy.
    func withProxiedMySQL(_ body: @escaping @Sendable (TestStores, FaultProxy) async throws -> Void) async throws {
        let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        do {
            try await TestStores.with(mysqlPort: proxy.port) { stores in try await body(stores, proxy) }
        } catch {
            await proxy.close()
            throw error
        }
        await proxy.close()
    }

    /// MySQL's stock for the item, read past the proxy.
    func mysqlStock(_ stores: TestStores, sku: UInt64 = 1) async throws -> Int64? {
        let direct = MySQLClient(
            configuration: TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment), logger: stores.logger
        )
        defer { Task { await direct.shutdown() } }
        return try await StockRepository(client: direct).row(bizId: stores.bizId, skuId: sku)?.stock
    }

    @Test("an adjustment whose commit answer is lost is applied once in both stores, and its retry is a replay")
    func adjustmentCommitAnswerLost() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutAfterRequest(containing: FaultProxy.commit)
            let adjustment = StockAdjustment(adjustmentId: "a-1", delta: 5, reason: nil)
            let outcome = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(outcome.level.onHand == 15)
            #expect(outcome.replayed == false)
            #expect(try await mysqlStock(stores) == 15)
            let again = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.onHand == 15)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a PUT whose commit answer is lost is applied in both stores, settings too")
    func putCommitAnswerLost() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutAfterRequest(containing: FaultProxy.commit)
            let level = try await engine.setStock(stores.item(1), StockSettings(stock: 30, dangerNum: 4))
            #expect(level.onHand == 30)
            #expect(level.dangerNum == 4)
            #expect(try await mysqlStock(stores) == 30)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a removal whose outcome cannot be learnt (MySQL gone right after the commit) stays removed in Redis")
    func removalOutcomeUnknown() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutAfterRequest(containing: FaultProxy.commit, thenDown: true)
            let adjustment = StockAdjustment(adjustmentId: "a-2", delta: -3, reason: "damaged")
            let thrown = await #expect(throws: InventoryError.self) { try await engine.adjustStock(stores.item(1), adjustment) }
            #expect(thrown?.case == .outcomeUnknown, "the removal may be in MySQL: not \"nothing was changed\"")
            proxy.down = false
            // The removal did commit: Redis kept it rather than handing 3 units back that MySQL no longer has.
            #expect(try await mysqlStock(stores) == 7)
            #expect(try await engine.stock(stores.item(1)).onHand == 7)
            let retry = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(retry.replayed)
            #expect(retry.level.onHand == 7)
        }
    }

    @Test("a removal whose COMMIT never arrived, kept in Redis: its retry completes it in MySQL, not a bare replay")
    func removalNeverCommitted() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutBeforeRequest(containing: FaultProxy.commit, thenDown: true)
            let adjustment = StockAdjustment(adjustmentId: "a-4", delta: -3, reason: "damaged")
            let thrown2 = await #expect(throws: InventoryError.self) { try await engine.adjustStock(stores.item(1), adjustment) }
            #expect(thrown2?.case == .outcomeUnknown, "COMMIT got no answer: MySQL may have it")
            proxy.down = false
            #expect(try await mysqlStock(stores) == 10)
            #expect(try await engine.stock(stores.item(1)).onHand == 7)
            let retry = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(retry.level.onHand == 7)
            #expect(try await mysqlStock(stores) == 7)
            let again = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.onHand == 7)
            #expect(try await mysqlStock(stores) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A PUT that makes a finite item infinite, with less on hand (a removal, which is otherwise kept when its outcome
    /// cannot be learnt): kept, Redis sold without limit while MySQL, whose COMMIT never arrived, stayed finite, and
    /// the reconciler does not compare the two (an item infinite in either store is judged as infinite).
    @Test("a PUT that made an item infinite whose COMMIT never arrived is not kept in Redis")
    func infiniteFlipOutcomeUnknown() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutBeforeRequest(containing: FaultProxy.commit, thenDown: true)
            await #expect(throws: InventoryError.self) { try await engine.setStock(stores.item(1), StockSettings(stock: 8, infinite: true)) }
            proxy.down = false
            #expect(try await mysqlStock(stores) == 10)
            let level = try await engine.stock(stores.item(1))
            #expect(!level.infinite, "as MySQL has it")
            #expect(level.onHand == 10)
        }
    }

    @Test("an addition whose outcome cannot be learnt is not sold: Redis never has more than MySQL")
    func additionOutcomeUnknown() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.cutAfterRequest(containing: FaultProxy.commit, thenDown: true)
            let adjustment = StockAdjustment(adjustmentId: "a-3", delta: 4, reason: nil)
            let thrown3 = await #expect(throws: InventoryError.self) { try await engine.adjustStock(stores.item(1), adjustment) }
            #expect(thrown3?.case == .outcomeUnknown, "the addition is in MySQL: not \"nothing was changed\"")
            proxy.down = false
            #expect(try await mysqlStock(stores) == 14)
            #expect(try await engine.stock(stores.item(1)).onHand == 10)
        }
    }
}

extension CommitOutcomeTests {
    @Test("a fence a change left open still lapses while later changes of the item come and go")
    func abandonedFenceLapses() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            // A change whose caller died between its halves, 61 s ago: its Redis half (−3) is not in MySQL.
            let dead = StockAdjustment(adjustmentId: "a-4", delta: -3, reason: nil)
            guard case .applied = try await engine.stores.run(AdjustStockCall(stores.item(1), dead, retentionSeconds: 600, layout: stores.keys))
            else {
                Issue.record("adjust_stock did not apply")
                return
            }
            try await stores.ageFences(1)
            _ = try await engine.adjustStock(stores.item(1), StockAdjustment(adjustmentId: "a-5", delta: 1, reason: nil))
            #expect(try await engine.stock(stores.item(1)).onHand == 8)
            // The item is not fenced: the repair brings Redis to MySQL's 11.
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await engine.stock(stores.item(1)).onHand == 11)
            #expect(try await stores.openFences(1) == 0)
        }
    }

    /// A retry that took an earlier attempt's half over (to complete its MySQL half) and whose MySQL half then fails
    /// for sure reverses the half as its own: the earlier attempt's stored reversal no longer names it.
    @Test("a retry that took a half over and whose MySQL half fails reverses it; the next retry applies it afresh")
    func takenOverHalfFails() async throws {
        try await withProxiedMySQL { stores, proxy in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let adjustment = StockAdjustment(adjustmentId: "a-9", delta: 4, reason: nil)
            // An attempt that died after its Redis half, a minute ago.
            guard case .applied = try await engine.stores.run(
                AdjustStockCall(item, adjustment, retentionSeconds: 600, layout: stores.keys)
            ) else {
                Issue.record("adjust_stock did not apply")
                return
            }
            try await stores.ageFences(1, adjustmentKey: stores.keys.adjustmentKey(item, adjustmentId: "a-9"))
            #expect(try await engine.stock(item).onHand == 14)
            // The retry takes the half over; its MySQL half breaks before its COMMIT, and MySQL stays away (nothing
            // written).
            proxy.cutAfterRequest(containing: FaultProxy.begin, thenDown: true)
            await #expect(throws: InventoryError.self) { try await engine.adjustStock(item, adjustment) }
            proxy.down = false
            #expect(try await engine.stock(item).onHand == 10, "the half the retry owned is reversed")
            #expect(try await mysqlStock(stores) == 10)
            let again = try await engine.adjustStock(item, adjustment)
            #expect(again.level.onHand == 14)
            #expect(try await mysqlStock(stores) == 14)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
