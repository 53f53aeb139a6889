import Foundation
import InventoryTestSupport
import MySQLClient
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

    /// The fence and the adjustment key's time as of 61 s ago: the attempt is over, its fence lapsed. Returns the key's
    /// time now (the half's token's).
    @discardableResult
    func age(_ stores: TestStores) async throws -> Int64 {
        try await stores.ageFences(1, adjustmentKey: adjustmentKey(stores)) ?? 0
    }

    /// Whether the adjustment's key says it is done (lua/lib/fence.lua: 'done:<mark>:<ms>:<made>:<fingerprint>', or the
    /// bare fingerprint a replay writes).
    func isDone(_ stores: TestStores) async throws -> Bool {
        guard let value = try await stores.redis.command("GET", adjustmentKey(stores)).text else { return false }
        return value == adjustment.fingerprint || (value.hasPrefix("done:") && value.hasSuffix(":" + adjustment.fingerprint))
    }

    func onHand(_ stores: TestStores) async throws -> Int64 { try await stores.engine.stock(stores.item(1)).onHand }

    /// Both stores have `stock` on hand (and, with `reconciled`, the reconciler finds no difference).
    func expectBoth(
        _ stores: TestStores, at stock: Int64, reconciled: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        #expect(try await onHand(stores) == stock, "Redis", sourceLocation: sourceLocation)
        #expect(try await stores.mysqlStock(1) == stock, "MySQL", sourceLocation: sourceLocation)
        if reconciled {
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [], sourceLocation: sourceLocation)
        }
    }

    /// A retry's Redis step that takes the earlier attempt's half over (adjust_stock.lua): its token, the half's name.
    func takeOver(_ stores: TestStores) async throws -> (token: String, half: String) {
        let call = AdjustStockCall(stores.item(1), adjustment, retentionSeconds: 600, layout: stores.keys)
        guard case .unsettled(let token, let half) = try await stores.engine.stores.run(call) else {
            throw InventoryError.unavailable("the retry did not take the half over")
        }
        return (token, half)
    }

    /// The reversal of the half of `token` (named `half` when a retry took it over), as `engine`'s compensator runs
    /// it (the ledger's source given); whether it ran now.
    @discardableResult
    func reverse(
        _ stores: TestStores, token: String, half: String = "", surplus: Bool = false, engine: InventoryEngine? = nil
    ) async -> Bool {
        await (engine ?? stores.engine).compensator.undoStock(
            itemKey: stores.keys.item(stores.item(1)), delta: adjustment.delta, adjustmentKey: adjustmentKey(stores),
            fingerprint: adjustment.fingerprint, token: token, surplus: surplus, half: half,
            source: StockAdministration.adjustmentSource(stores.item(1), adjustment)
        )
    }

    @Test("an unsettled adjustment whose Redis half a repair took out is applied afresh by its retry, in both stores")
    func unsettledAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await redisHalf(stores)
            // The attempt ended a minute ago without learning MySQL's outcome (its key stays pending).
            try await age(stores)
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 10)
            // The reconciler brings Redis to MySQL's count.
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await onHand(stores) == 10)
            // The retry: neither store has the adjustment now.
            let again = try await stores.engine.adjustStock(stores.item(1), adjustment)
            #expect(again.level.onHand == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await isDone(stores))
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a retry of an adjustment whose attempt died between its halves: 503 while it may be under way, then its MySQL half once")
    func diedBetweenHalves() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let mark = markOf(try await redisHalf(stores))
            let busy = await #expect(throws: InventoryError.self) { try await stores.engine.adjustStock(stores.item(1), adjustment) }
            #expect(busy?.case == .unavailable)
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 10)
            // The attempt's half as if made a minute ago (its token with it).
            let died = mark + "@\(try await age(stores))"
            let again = try await stores.engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.onHand == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await isDone(stores))
            #expect(try await stores.openFences(1) == 0, "the dead attempt's fence closed")
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            // A reversal of the dead attempt, stored as a task, that runs only now reverses nothing: MySQL has it.
            let late = undo(stores, token: died, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .done)
            #expect(try await onHand(stores) == 7)
        }
    }

    @Test("a reversal that runs after a repair took the change out reverses nothing")
    func undoAfterRepair() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let token = try await redisHalf(stores)
            // The half's token as the aged key names it.
            let aged = markOf(token) + "@\(try await age(stores))"
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await onHand(stores) == 10)
            let late = undo(stores, token: aged, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .rebuilt)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.redis.command("EXISTS", adjustmentKey(stores)).int == 0, "a retry applies it afresh")
        }
    }

    func undo(_ stores: TestStores, token: String, delta: Int64, adjustmentKey: String? = nil, fingerprint: String = "", settings: String = "")
        -> UndoStockCall
    {
        let itemKey = stores.keys.item(stores.item(1))
        return UndoStockCall(
            itemKey: itemKey, adjustmentKey: adjustmentKey ?? itemKey, marker: itemKey + ":undo-test", delta: delta,
            fingerprint: fingerprint, token: token, settings: settings, retentionSeconds: 600
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
            let call = undo(stores, token: epoch, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
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
            #expect(try await stores.engine.stores.run(undo(stores, token: mark, delta: delta, settings: before)) == .rebuilt)
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
            // A half of an earlier mark whose MySQL half made version 0: the item was built after it.
            let call = AdminDoneCall(
                itemKey: itemKey, token: "old-epoch/0@1", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint,
                version: 0
            )
            #expect(try await stores.engine.stores.run(call) == .closed)
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text?.hasPrefix("pending:\(mark):") == true)
            #expect(try await stores.openFences(1) == 1)
            let own = AdminDoneCall(itemKey: itemKey, token: token, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(own) == .closed)
            #expect(try await isDone(stores))
            #expect(try await stores.openFences(1) == 0)
            // Once: a second close of the same half finds the key settled and closes nothing (another change's fence
            // stays).
            let other = AdjustStockCall(stores.item(1), StockAdjustment(adjustmentId: "a-2", delta: 1, reason: nil), retentionSeconds: 600, layout: stores.keys)
            guard case .applied = try await stores.engine.stores.run(other) else {
                Issue.record("adjust_stock did not apply")
                return
            }
            #expect(try await stores.engine.stores.run(own) == .closed)
            #expect(try await stores.openFences(1) == 1)
            // A half of an earlier mark, committed after the item's read, whose key is no longer its own: another
            // attempt's half may stand in the item instead, so the change is not added by hand; the item is dropped (its
            // next use rebuilds it from MySQL), the key left alone.
            let notOwn = AdminDoneCall(
                itemKey: itemKey, token: "old-epoch/0@1", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint,
                version: 1_000_000_000, delta: adjustment.delta
            )
            #expect(try await stores.engine.stores.run(notOwn) == .dropped)
            #expect(try await stores.redis.command("EXISTS", itemKey).int == 0)
            #expect(try await isDone(stores))
            // Likewise when the MySQL half's version is not known.
            _ = try await stores.engine.stock(stores.item(1))
            let unknown = AdminDoneCall(itemKey: itemKey, token: "old-epoch/0@1", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(unknown) == .dropped)
            #expect(try await stores.redis.command("EXISTS", itemKey).int == 0)
        }
    }

    /// A retry that completes the MySQL half of an earlier attempt's half takes the half over: a reversal of the
    /// earlier attempt (stored as a task, run while the retry's MySQL half is under way) must not reverse it.
    @Test("a retry takes an earlier attempt's half over: that attempt's reversal then reverses nothing; the retry closes the fence")
    func retryTakesHalfOver() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let made = try await redisHalf(stores)
            let old = try await age(stores)
            // The earlier attempt's token, as the aged key names it.
            let first = markOf(made) + "@\(old)"
            // The retry's Redis step (as adjustStockOnce runs it): the half is its own from now on.
            let (taken, half) = try await takeOver(stores)
            #expect(taken != first)
            let itemKey = stores.keys.item(stores.item(1))
            // The earlier attempt's reversal, meanwhile.
            let late = undo(stores, token: first, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(late) == .done)
            #expect(try await onHand(stores) == 7)
            // The retry's MySQL half, then its close.
            try await mysqlHalf(stores, adjustment, half: half)
            let done = AdminDoneCall(itemKey: itemKey, token: taken, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(done) == .closed)
            #expect(try await isDone(stores))
            #expect(try await stores.openFences(1) == 0)
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
            let settle = AdminDoneCall(itemKey: itemKey, token: "*", adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(settle) == .closed)
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text?.hasPrefix("pending:") == true)
            #expect(try await stores.openFences(1) == 1)
            // Its attempt finds its half a duplicate of what MySQL had, and reverses it.
            #expect(try await stores.engine.stores.run(undo(stores, token: token, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)) == .reversed)
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.openFences(1) == 0)
        }
    }

    /// An attempt stalls at its MySQL half; a retry takes the half over and completes it; the
    /// attempt's MySQL half then finds the adjustment there, from its own half (the ledger names it): nothing to
    /// reverse (taken for a surplus, it was reversed: Redis 10 against MySQL's 7).
    @Test("an attempt whose MySQL half finds its own half completed by a retry that took it over leaves it")
    func ownHalfCompletedByRetry() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let stalled = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                // The retry may take the half over now (as after a minute; its name and times stay what they are).
                try await markUnsettled(stores)
                #expect(try await stores.engine.adjustStock(item, adjustment).replayed, "the retry completed the half")
                #expect(try await stores.mysqlStock(1) == 7)
                proxy.release()
                #expect(try await stalled.value.replayed)
            }
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await isDone(stores))
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// The MySQL half of `adjustment`, as its attempt makes it.
    func mysqlHalf(_ stores: TestStores, _ adjustment: StockAdjustment, half: String? = nil) async throws {
        _ = try await StockRepository(client: stores.mysql).apply(StockAdministration.mysqlHalf(stores.item(1), adjustment, half: half))
    }

    /// A caller died between its halves a minute ago; a later change's halves must be fenced all the same (the fence
    /// was a count dated by its first change: once the dead caller's count lapsed, the later change was not fenced,
    /// and a repair between its halves wrote the old counters under it: Redis 10 against MySQL's 8).
    @Test("a change made after another's fence lapsed is fenced on its own: a repair between its halves writes nothing")
    func laterChangeFencedOnItsOwn() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await redisHalf(stores)
            try await age(stores)
            let later = StockAdjustment(adjustmentId: "b-1", delta: -2, reason: nil)
            let call = AdjustStockCall(stores.item(1), later, retentionSeconds: 600, layout: stores.keys)
            guard case .applied(let token) = try await stores.engine.stores.run(call) else {
                Issue.record("adjust_stock did not apply")
                return
            }
            #expect(try await onHand(stores) == 5)
            let between = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(between.itemsInFlight == 1)
            #expect(try await onHand(stores) == 5, "nothing written between the halves")
            try await mysqlHalf(stores, later)
            let mysql = try #require(try await stores.mysqlStock(1))
            #expect(try await onHand(stores) <= mysql, "Redis never has more to sell than MySQL")
            let key = stores.keys.adjustmentKey(stores.item(1), adjustmentId: "b-1")
            let itemKey = stores.keys.item(stores.item(1))
            #expect(try await stores.engine.stores.run(AdminDoneCall(itemKey: itemKey, token: token, adjustmentKey: key, fingerprint: later.fingerprint)) == .closed)
            #expect(try await stores.openFences(1) == 0, "the dead caller's lapsed fence dropped with it")
            // Nothing fenced now: the repair takes the dead caller's half out.
            _ = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(try await onHand(stores) == 8)
            #expect(try await stores.mysqlStock(1) == 8)
            #expect(try await stores.openFences(1) == 0)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// A retry takes over the half of an attempt that died a minute ago (its fence lapsed) and makes its MySQL half: it
    /// is fenced anew meanwhile (a repair between took the half out: Redis 10, and the retry's MySQL half then made
    /// MySQL 7).
    @Test("a retry that takes an earlier attempt's half over fences it until its MySQL half is done")
    func takenOverHalfFenced() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await redisHalf(stores)
            try await age(stores)
            let (taken, half) = try await takeOver(stores)
            let between = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(between.itemsInFlight == 1)
            #expect(try await onHand(stores) == 7, "nothing written between the halves")
            try await mysqlHalf(stores, adjustment, half: half)
            let itemKey = stores.keys.item(stores.item(1))
            #expect(try await stores.engine.stores.run(AdminDoneCall(itemKey: itemKey, token: taken, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)) == .closed)
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.openFences(1) == 0)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
