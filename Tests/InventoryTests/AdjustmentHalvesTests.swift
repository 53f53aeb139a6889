import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// An adjustment is made in two halves, Redis's then MySQL's. A retry of one whose MySQL half is not known done must
/// tell whether the earlier attempt's Redis half is still in the item: a repair by the reconciler or a rebuild writes
/// the item from MySQL, which did not have it. The item's mark (lua/lib/fence.lua: epoch and repairs) says so.
@Suite("Adjustments between their halves")
struct AdjustmentHalvesTests {
    let adjustment = StockAdjustment(adjustmentId: "a-1", delta: -3, reason: "damaged | counted")

    /// The Redis half alone, as an attempt that then died (or lost its COMMIT's answer) leaves it; its mark.
    func redisHalf(_ stores: TestStores) async throws -> String {
        let call = AdjustStockCall(stores.item(1), adjustment, retentionSeconds: 600, layout: stores.keys)
        guard case .applied(let mark) = try await stores.engine.stores.run(call) else {
            throw InventoryError.unavailable("adjust_stock did not apply")
        }
        return mark
    }

    var adjustmentKey: (TestStores) -> String {
        { $0.keys.adjustmentKey($0.item(1), adjustmentId: "a-1") }
    }

    /// The fence (and the key's time) as of 61 s ago: the attempt is over, its fence lapsed.
    func age(_ stores: TestStores, key value: String? = nil) async throws {
        let itemKey = stores.keys.item(stores.item(1))
        let old = try await stores.engine.redisNow(routingKey: itemKey) - 61_000
        _ = try await stores.redis.command("HSET", itemKey, "admin_since", String(old))
        if let value { _ = try await stores.redis.command("SET", adjustmentKey(stores), value.replacingOccurrences(of: "{old}", with: String(old)), "KEEPTTL") }
    }

    func onHand(_ stores: TestStores) async throws -> Int64 { try await stores.engine.stock(stores.item(1)).onHand }

    @Test("an unsettled adjustment whose Redis half a repair took out is applied afresh by its retry, in both stores")
    func unsettledAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let mark = try await redisHalf(stores)
            try await age(stores, key: "unsettled:\(mark):" + adjustment.fingerprint)
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 10)
            // The reconciler brings Redis to MySQL's count.
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await onHand(stores) == 10)
            // The retry: neither store has the adjustment now.
            let again = try await stores.engine.adjustStock(stores.item(1), adjustment)
            #expect(again.level.onHand == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text == adjustment.fingerprint)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a retry of an adjustment whose attempt died between its halves: 503 while it may be under way, then its MySQL half once")
    func diedBetweenHalves() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let mark = try await redisHalf(stores)
            await #expect(throws: InventoryError.self) { try await stores.engine.adjustStock(stores.item(1), adjustment) }
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 10)
            try await age(stores, key: "pending:\(mark):{old}:" + adjustment.fingerprint)
            let again = try await stores.engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.onHand == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text == adjustment.fingerprint)
            #expect(try await stores.itemFields(1)["admin_pending"] == nil, "the dead attempt's fence closed")
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            // A reversal of the dead attempt, stored as a task, that runs only now reverses nothing: MySQL has it.
            let undo = UndoStockCall(
                itemKey: stores.keys.item(stores.item(1)), adjustmentKey: adjustmentKey(stores),
                marker: stores.keys.item(stores.item(1)) + ":undo-test", delta: adjustment.delta, fingerprint: adjustment.fingerprint,
                mark: mark, settings: "", retentionSeconds: 600
            )
            #expect(try await stores.engine.stores.run(undo) == .done)
            #expect(try await onHand(stores) == 7)
        }
    }

    @Test("a reversal that runs after a repair took the change out reverses nothing")
    func undoAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let mark = try await redisHalf(stores)
            try await age(stores)
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await onHand(stores) == 10)
            let undo = UndoStockCall(
                itemKey: stores.keys.item(stores.item(1)), adjustmentKey: adjustmentKey(stores),
                marker: stores.keys.item(stores.item(1)) + ":undo-test", delta: adjustment.delta, fingerprint: adjustment.fingerprint,
                mark: mark, settings: "", retentionSeconds: 600
            )
            #expect(try await stores.engine.stores.run(undo) == .rebuilt)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.redis.command("EXISTS", adjustmentKey(stores)).int == 0, "a retry applies it afresh")
        }
    }
}
