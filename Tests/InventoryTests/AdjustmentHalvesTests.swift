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

    /// The Redis half alone, as an attempt that then died (or lost its COMMIT's answer) leaves it; its token
    /// ('mark@ms', lua/lib/fence.lua).
    func redisHalf(_ stores: TestStores) async throws -> String {
        let call = AdjustStockCall(stores.item(1), adjustment, retentionSeconds: 600, layout: stores.keys)
        guard case .applied(let mark) = try await stores.engine.stores.run(call) else {
            throw InventoryError.unavailable("adjust_stock did not apply")
        }
        return mark
    }

    /// The mark part of a half's token.
    func markOf(_ token: String) -> String { String(token.split(separator: "@").first ?? "") }

    var adjustmentKey: (TestStores) -> String {
        { $0.keys.adjustmentKey($0.item(1), adjustmentId: "a-1") }
    }

    /// The fence (and the key's time) as of 61 s ago: the attempt is over, its fence lapsed.
    @discardableResult
    func age(_ stores: TestStores, key value: String? = nil) async throws -> Int64 {
        let itemKey = stores.keys.item(stores.item(1))
        let old = try await stores.engine.redisNow(routingKey: itemKey) - 61_000
        _ = try await stores.redis.command("HSET", itemKey, "admin_since", String(old))
        if let value { _ = try await stores.redis.command("SET", adjustmentKey(stores), value.replacingOccurrences(of: "{old}", with: String(old)), "KEEPTTL") }
        return old
    }

    func onHand(_ stores: TestStores) async throws -> Int64 { try await stores.engine.stock(stores.item(1)).onHand }

    @Test("an unsettled adjustment whose Redis half a repair took out is applied afresh by its retry, in both stores")
    func unsettledAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let mark = markOf(try await redisHalf(stores))
            // The attempt ended a minute ago without learning MySQL's outcome (its key stays pending).
            try await age(stores, key: "pending:\(mark):{old}:" + adjustment.fingerprint)
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
            let token = try await redisHalf(stores)
            let mark = markOf(token)
            let busy = await #expect(throws: InventoryError.self) { try await stores.engine.adjustStock(stores.item(1), adjustment) }
            #expect(busy?.case == .unavailable)
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
            let late = undo(stores, mark: token, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .done)
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
            let late = undo(stores, mark: mark, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .rebuilt)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.redis.command("EXISTS", adjustmentKey(stores)).int == 0, "a retry applies it afresh")
        }
    }

    func undo(_ stores: TestStores, mark: String, delta: Int64, adjustmentKey: String? = nil, fingerprint: String = "", settings: String = "")
        -> UndoStockCall
    {
        let itemKey = stores.keys.item(stores.item(1))
        return UndoStockCall(
            itemKey: itemKey, adjustmentKey: adjustmentKey ?? itemKey, marker: itemKey + ":undo-test", delta: delta,
            fingerprint: fingerprint, mark: mark, settings: settings, retentionSeconds: 600
        )
    }

    @Test("a reversal stored before marks (a bare epoch, the key's plain fingerprint) still reverses, and frees the id")
    func legacyTaskReverses() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await redisHalf(stores)
            // As the previous version left it: the plain fingerprint from the Redis half on.
            _ = try await stores.redis.command("SET", adjustmentKey(stores), adjustment.fingerprint)
            let epoch = try #require(try await stores.itemFields(1)["epoch"])
            let call = undo(stores, mark: epoch, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(call) == .reversed)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.redis.command("EXISTS", adjustmentKey(stores)).int == 0)
        }
    }

    @Test("a PUT's reversal after a repair took its delta out still puts its settings back")
    func putUndoAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let half = try await stores.engine.stores.run(
                SetStockCall(stores.item(1), StockSettings(stock: 12, dangerNum: 7), itemTTLSeconds: 0, layout: stores.keys)
            )
            guard case .changed(let delta, let mark, let before) = half else {
                Issue.record("set_stock answered \(half)")
                return
            }
            try await age(stores)
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await stores.engine.stores.run(undo(stores, mark: mark, delta: delta, settings: before)) == .rebuilt)
            #expect(try await stores.itemFields(1)["danger_num"] == "0", "the setting goes back")
            #expect(try await onHand(stores) == 10, "the delta was the repair's to take out")
        }
    }

    @Test("the close of an attempt's half leaves alone the key of an attempt that made the change afresh since")
    func adminDoneOtherMark() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let token = try await redisHalf(stores)
            let mark = markOf(token)
            let itemKey = stores.keys.item(stores.item(1))
            let call = AdminDoneCall(itemKey: itemKey, mark: "old-epoch/0", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(call))
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text?.hasPrefix("pending:\(mark):") == true)
            #expect(try await stores.itemFields(1)["admin_pending"] == "1")
            let own = AdminDoneCall(itemKey: itemKey, mark: token, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(own))
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text == adjustment.fingerprint)
            #expect(try await stores.itemFields(1)["admin_pending"] == nil)
            // Once: a second close of the same half finds the key settled and closes nothing.
            _ = try await stores.redis.command("HSET", itemKey, "admin_pending", "1", "admin_since", "1")
            #expect(try await stores.engine.stores.run(own))
            #expect(try await stores.itemFields(1)["admin_pending"] == "1")
        }
    }

    /// A retry that completes the MySQL half of an earlier attempt's half takes the half over: a reversal of the
    /// earlier attempt (stored as a task, run while the retry's MySQL half is under way) must not reverse it.
    @Test("a retry takes an earlier attempt's half over: that attempt's reversal then reverses nothing; the retry closes the fence")
    func retryTakesHalfOver() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let made = try await redisHalf(stores)
            let old = try await age(stores, key: "pending:\(markOf(made)):{old}:" + adjustment.fingerprint)
            // The earlier attempt's token, as the aged key names it.
            let first = markOf(made) + "@\(old)"
            // The retry's Redis step (as adjustStockOnce runs it): the half is its own from now on.
            let call = AdjustStockCall(stores.item(1), adjustment, retentionSeconds: 600, layout: stores.keys)
            guard case .unsettled(let taken) = try await stores.engine.stores.run(call) else {
                Issue.record("the retry did not take the half over")
                return
            }
            #expect(taken != first)
            let itemKey = stores.keys.item(stores.item(1))
            // The earlier attempt's reversal, meanwhile.
            let late = undo(stores, mark: first, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .done)
            #expect(try await onHand(stores) == 7)
            // The retry's MySQL half, then its close.
            _ = try await StockRepository(client: stores.mysql).apply(
                StockChange(
                    bizId: stores.bizId, skuId: 1, delta: adjustment.delta, reason: adjustment.reason ?? "adjustment",
                    source: StockAdministration.adjustmentSource(stores.item(1), adjustment), infinite: nil, dangerNum: nil,
                    backorderLimit: nil
                )
            )
            let done = AdminDoneCall(itemKey: itemKey, mark: taken, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(done))
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text == adjustment.fingerprint)
            #expect(try await stores.itemFields(1)["admin_pending"] == nil)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a settle by a retry that found the adjustment in MySQL leaves a half younger than a minute to its attempt")
    func settleLeavesYoungHalf() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let token = try await redisHalf(stores)
            let itemKey = stores.keys.item(stores.item(1))
            let settle = AdminDoneCall(itemKey: itemKey, mark: "*", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(settle))
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text?.hasPrefix("pending:") == true)
            #expect(try await stores.itemFields(1)["admin_pending"] == "1")
            // Its attempt finds its half a duplicate of what MySQL had, and reverses it.
            #expect(try await stores.engine.stores.run(undo(stores, mark: token, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)) == .reversed)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.itemFields(1)["admin_pending"] == nil)
        }
    }
}
