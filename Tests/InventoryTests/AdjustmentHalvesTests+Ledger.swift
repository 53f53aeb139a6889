import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

@testable import Inventory

/// What MySQL's ledger decides about an adjustment's Redis half when the half's key cannot: a MySQL half that would
/// commit after a retry took its half over, a row that names no half, a ledger that cannot be read, a half that went
/// with lost Redis data.
extension AdjustmentHalvesTests {
    /// The adjustment key as the attempt's Redis half wrote it, marked as if the attempt had ended without learning
    /// MySQL's outcome: a retry takes the half over at once (as after a minute), its name and times as they are.
    func markUnsettled(_ stores: TestStores) async throws {
        let key = try #require(try await stores.redis.command("GET", adjustmentKey(stores)).text)
        #expect(key.hasPrefix("pending:"))
        _ = try await stores.redis.command("SET", adjustmentKey(stores), "unsettled:" + key.dropFirst("pending:".count), "KEEPTTL")
    }

    /// An earlier attempt's Redis half (as the version before names left it, or any), whose key then vanished.
    func otherAttemptsHalf(_ stores: TestStores) async throws {
        _ = try await redisHalf(stores)
        _ = try await stores.redis.command("DEL", adjustmentKey(stores))
    }

    /// Item 1 at 10 with two Redis halves of the adjustment: an earlier attempt's, whose key vanished, and A's, kept
    /// after an unknown COMMIT (its key unsettled). Redis 4 on hand, MySQL 10.
    func keptBesideOtherHalf(_ stores: TestStores) async throws -> StockItemID {
        let item = stores.item(1)
        _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
        try await otherAttemptsHalf(stores)
        _ = try await redisHalf(stores)
        try await markUnsettled(stores)
        return item
    }

    /// A stalls at its MySQL half; a retry takes the half over, its own MySQL half fails, and it reverses the half.
    /// A's MySQL half then goes on: past its deadline it rolls back instead of committing (it committed: MySQL 7
    /// against Redis 10, the removal sellable again in Redis).
    @Test("an adjustment's MySQL half past its deadline rolls back: a retry that took the half over may have reversed it")
    func mysqlHalfPastItsDeadline() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            try await withHeldAttempt(stores, configure: { $0.adjustmentCommitDeadline = .zero }) { attempt, proxy, _ in
                let stalled = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                try await markUnsettled(stores)
                try await withHeldAttempt(stores) { retry, retryProxy, _ in
                    retryProxy.cutBeforeRequest(containing: FaultProxy.begin)
                    await #expect(throws: InventoryError.self) { try await retry.adjustStock(item, adjustment) }
                }
                #expect(try await onHand(stores) == 10, "the retry reversed the half it took over")
                proxy.release()
                await #expect(throws: InventoryError.self) { try await stalled.value }
            }
            try await expectBoth(stores, at: 10, reconciled: true)
            // The client's retry makes it, once.
            #expect(try await stores.engine.adjustStock(item, adjustment).replayed == false)
            try await expectBoth(stores, at: 7)
        }
    }

    /// An attempt O of the version before names makes its half, and its key vanishes; A makes the change afresh and
    /// keeps its half after an unknown COMMIT; a retry takes A's half over while O's row (it names no half) commits:
    /// not this named half's row, so the half is a surplus (it was kept as MySQL's: Redis 4 against MySQL's 7).
    @Test("a retry's MySQL half beside a row that names no half reverses the named half it took over")
    func retryBesideUnnamedRow() async throws {
        try await TestStores.with { stores in
            let item = try await keptBesideOtherHalf(stores)
            try await withHeldAttempt(stores) { retry, proxy, _ in
                let running = try await heldAtMySQLHalf(proxy) { try await retry.adjustStock(item, adjustment) }
                try await mysqlHalf(stores, adjustment, half: nil)
                proxy.release()
                #expect(try await running.value.replayed)
            }
            try await expectBoth(stores, at: 7)
        }
    }

    /// The same found by a replay (the ledger read first, O's row there): the key's named half beside a row that names
    /// none is a surplus (the replay settled it as MySQL's: Redis 4 against MySQL's 7).
    @Test("a replay reverses a kept named half when the ledger's row names no half")
    func replayBesideUnnamedRow() async throws {
        try await TestStores.with { stores in
            let item = try await keptBesideOtherHalf(stores)
            try await mysqlHalf(stores, adjustment, half: nil)
            #expect(try await onHand(stores) == 4)
            #expect(try await stores.engine.adjustStock(item, adjustment).replayed)
            try await expectBoth(stores, at: 7)
        }
    }

    /// A reversal whose key cannot tell, while MySQL cannot be read: not decided (it kept the removal and answered
    /// "reversed"); it runs once MySQL answers.
    @Test("a reversal that must ask the ledger waits for MySQL: not reversed now, reversed once it answers")
    func reversalWaitsForLedger() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let token = try await redisHalf(stores)
            _ = try await stores.redis.command("DEL", adjustmentKey(stores))
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                proxy.down = true
                let now = await reverse(stores, token: token, engine: attempt)
                #expect(!now, "MySQL could not say whether it has the half")
                let kept = try await onHand(stores)
                #expect(kept == 7)
                proxy.down = false
                let later = await reverse(stores, token: token, engine: attempt)
                #expect(later)
            }
            try await expectBoth(stores, at: 10)
        }
    }

    /// Redis loses a change's last writes (a restart without them, a failover to a replica behind): the item is as it
    /// was before the half, same epoch, and the half's key is gone. The half's reversal must not add the change back
    /// (it did: 13 on hand against MySQL's 10).
    @Test("a reversal of a half that went with lost Redis data reverses nothing")
    func reversalOfLostHalf() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let itemKey = stores.keys.item(item)
            let before = try await stores.redis.command("HGETALL", itemKey).array?.compactMap(\.text) ?? []
            let token = try await redisHalf(stores)
            #expect(try await onHand(stores) == 7)
            _ = try await stores.redis.command("DEL", itemKey, adjustmentKey(stores))
            _ = try await stores.redis.send(["HSET", itemKey] + before, routingKey: itemKey)
            #expect(try await onHand(stores) == 10)
            #expect(
                await reverse(stores, token: token)
            )
            try await expectBoth(stores, at: 10, reconciled: true)
        }
    }

    /// The same for a PUT: Redis loses the PUT's Redis half (item, settings and fence entry as before it); its MySQL
    /// half fails and its reversal must not add the delta back (it did: 13 on hand against MySQL's 10). And a half
    /// whose fence entry lapsed (the PUT stalled more than a minute, another change's write dropped the entry) is not
    /// taken for lost: its reversal goes through.
    @Test("a PUT's reversal of a half lost with Redis data reverses nothing; one whose fence lapsed reverses")
    func putReversalOfLostHalf() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            let itemKey = stores.keys.item(item)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let before = try await stores.redis.command("HGETALL", itemKey).array?.compactMap(\.text) ?? []
            let put = SetStockCall(item, StockSettings(stock: 7, dangerNum: 2), itemTTLSeconds: 600, layout: stores.keys)
            guard case .changed(let delta, let token, let settings) = try await stores.engine.stores.run(put) else {
                Issue.record("set_stock did not change the item")
                return
            }
            _ = try await stores.redis.command("DEL", itemKey)
            _ = try await stores.redis.send(["HSET", itemKey] + before, routingKey: itemKey)
            #expect(
                await stores.engine.compensator.undoStock(
                    itemKey: itemKey, delta: delta, adjustmentKey: nil, fingerprint: "", token: token, settings: settings
                )
            )
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.engine.stock(item).dangerNum == 0)

            // A PUT whose entry lapsed: its reversal still reverses it.
            guard case .changed(let later, let laterToken, let laterSettings) = try await stores.engine.stores.run(put) else {
                Issue.record("set_stock did not change the item")
                return
            }
            try await stores.ageFences(1)
            let other = AdjustStockCall(item, StockAdjustment(adjustmentId: "a-9", delta: 1, reason: nil), retentionSeconds: 600, layout: stores.keys)
            guard case .applied = try await stores.engine.stores.run(other) else {
                Issue.record("adjust_stock did not apply")
                return
            }
            let aged = markOf(laterToken) + "@\((Int64(laterToken.split(separator: "@").last ?? "") ?? 0) - 61_000)"
            #expect(
                await stores.engine.compensator.undoStock(
                    itemKey: itemKey, delta: later, adjustmentKey: nil, fingerprint: "", token: aged, settings: laterSettings
                )
            )
            #expect(try await onHand(stores) == 11, "10, the PUT's −3 reversed, the other change's +1")
        }
    }

    /// An item written before lapsed entries were remembered, whose PUT half's entry the version before dropped as
    /// lapsed: its reversal (a stored task, run after the upgrade) cannot tell the half from a lost one, and reverses
    /// it (it took it for lost: 13 on hand against MySQL's 10).
    @Test("a reversal on an item from before lapsed entries were remembered reverses its half")
    func reversalBeforeLapsesWereKept() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            let itemKey = stores.keys.item(item)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            _ = try await stores.redis.command("HDEL", itemKey, "admin_lapsed")
            let put = SetStockCall(item, StockSettings(stock: 13), itemTTLSeconds: 600, layout: stores.keys)
            guard case .changed(let delta, let token, let settings) = try await stores.engine.stores.run(put) else {
                Issue.record("set_stock did not change the item")
                return
            }
            // The version before dropped the entry as lapsed, remembering nothing.
            _ = try await stores.redis.command("HDEL", itemKey, "admin_open", "admin_lapsed")
            #expect(
                await stores.engine.compensator.undoStock(
                    itemKey: itemKey, delta: delta, adjustmentKey: nil, fingerprint: "", token: token, settings: settings
                )
            )
            #expect(try await onHand(stores) == 10)
        }
    }

    /// A's half is kept after an unknown COMMIT; a retry takes it over; A's COMMIT lands after all (late, under its
    /// half's name); the retry's own MySQL half fails and it reverses the half it took over. The ledger has that very
    /// half: it stays (it was reversed: Redis 10 against MySQL's 7, the removal sellable again).
    @Test("a retry's reversal of a removal it took over asks the ledger first, and keeps a half MySQL has")
    func takenOverRemovalAsksLedger() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let made = try await redisHalf(stores)
            try await markUnsettled(stores)
            let (taken, half) = try await takeOver(stores)
            #expect(half == made)
            try await mysqlHalf(stores, adjustment, half: made)
            #expect(
                await reverse(stores, token: taken, half: half)
            )
            try await expectBoth(stores, at: 7)
        }
    }

    /// A retry takes A's half over (its own fence opened) while A's MySQL half finds the adjustment there from another
    /// half: A reverses the half as a surplus, and the retry's fence and key go with it (they stayed: the item fenced
    /// from the reconciler for a minute, the key pending for a day).
    @Test("a surplus reversal of a half a retry took over closes that retry's fence and removes its key")
    func surplusReversalClosesTakersFence() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let made = try await redisHalf(stores)
            try await markUnsettled(stores)
            _ = try await takeOver(stores)
            #expect(try await stores.openFences(1) == 1)
            #expect(
                await reverse(stores, token: made, surplus: true)
            )
            #expect(try await onHand(stores) == 10)
            #expect(try await stores.openFences(1) == 0)
            #expect(try await stores.redis.command("EXISTS", adjustmentKey(stores)).int == 0)
        }
    }
}
