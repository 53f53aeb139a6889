import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Testing

@testable import Inventory

/// Attempts of one adjustment that each made a Redis half: the key of the first vanished (evicted) before the second
/// made its own. MySQL's ledger lets one of them in and records its name (lua/lib/fence.lua, `stock_ledger.half`):
/// whichever attempt, retry or replay finds out reverses every other half, once.
extension AdjustmentHalvesTests {
    /// E makes its half, its key vanishes; A makes the change afresh and stalls past its fence; a retry R takes A's half
    /// over and waits at its MySQL half while E's MySQL half commits. R's MySQL half finds the adjustment there from
    /// E's half: the half it took over is a surplus. (R kept it and A's reversal left it to R: Redis 4 on hand against
    /// MySQL's 7, until a repair.)
    @Test("a retry that took a half over reverses it when MySQL has the adjustment from another attempt's half")
    func takenOverSurplusReversed() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let early = try await redisHalf(stores)
            _ = try await stores.redis.command("DEL", adjustmentKey(stores))
            let later = try await redisHalf(stores)
            // A's half as its aged key names it.
            let stalled = markOf(later) + "@\(try await age(stores))"
            #expect(try await onHand(stores) == 4, "both attempts' Redis halves")
            try await withHeldAttempt(stores) { attempt, proxy, _ in
                let retry = try await heldAtMySQLHalf(proxy) { try await attempt.adjustStock(item, adjustment) }
                try await mysqlHalf(stores, adjustment, half: early)
                proxy.release()
                #expect(try await retry.value.replayed)
            }
            #expect(try await onHand(stores) == 7, "the half the retry took over reversed")
            #expect(try await stores.mysqlStock(1) == 7)
            // A's own MySQL half finds the adjustment there too and reverses its half as a surplus: once, whoever
            // reverses it (the marker is the half's).
            #expect(
                await reverse(stores, token: stalled, surplus: true)
            )
            #expect(try await onHand(stores) == 7)
            // E's close.
            _ = try await stores.engine.stores.run(
                AdminDoneCall(itemKey: stores.keys.item(item), token: early, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            )
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.engine.adjustStock(item, adjustment).replayed)
            try await expectBoth(stores, at: 7, reconciled: true)
        }
    }

    /// E makes its half, its key vanishes; A makes the change afresh; E's MySQL half commits; A's MySQL half gets no
    /// answer to its COMMIT and cannot read the ledger: it keeps its half (a removal) and says so in the key. A replay
    /// then finds the adjustment in MySQL's ledger, from E's half: A's half is a surplus, reversed. (The replay settled
    /// it as MySQL's: Redis 4 against MySQL's 7.)
    @Test("a replay reverses a kept half when MySQL's ledger has the adjustment from another attempt's half")
    func replayReversesKeptSurplus() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let early = try await redisHalf(stores)
            _ = try await stores.redis.command("DEL", adjustmentKey(stores))
            let later = try await redisHalf(stores)
            try await mysqlHalf(stores, adjustment, half: early)
            let itemKey = stores.keys.item(item)
            #expect(
                try await stores.engine.stores.run(
                    UnsettleCall(itemKey: itemKey, adjustmentKey: adjustmentKey(stores), token: later, fingerprint: adjustment.fingerprint)
                )
            )
            #expect(try await onHand(stores) == 4)
            #expect(try await stores.engine.adjustStock(item, adjustment).replayed)
            #expect(try await onHand(stores) == 7, "the kept half reversed")
            #expect(try await isDone(stores))
            _ = try await stores.engine.stores.run(
                AdminDoneCall(itemKey: itemKey, token: early, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            )
            #expect(try await stores.openFences(1) == 0, "E's close closes its own half's fence (the key is not its own)")
            try await expectBoth(stores, at: 7, reconciled: true)
        }
    }

    /// E makes its half, its key vanishes; A makes the change afresh in the same item; E's MySQL half fails outright
    /// and E reverses its half. The key names A's half, not E's (the reversal took it for E's half taken over and
    /// reversed nothing: Redis 4 against MySQL's 7 once A is done).
    @Test("a reversal reverses its half when the key names a half made afresh since, in the same item")
    func reversalBesideAfreshHalf() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let early = try await redisHalf(stores)
            _ = try await stores.redis.command("DEL", adjustmentKey(stores))
            let later = try await redisHalf(stores)
            // The key cannot tell whether MySQL has E's half: its ledger decides (no row: it has not).
            let reversal = undo(stores, token: early, delta: adjustment.delta, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            #expect(try await stores.engine.stores.run(reversal) == .check)
            #expect(try await onHand(stores) == 4)
            #expect(
                await reverse(stores, token: early)
            )
            #expect(try await onHand(stores) == 7)
            #expect(try await stores.redis.command("GET", adjustmentKey(stores)).text?.hasPrefix("pending:") == true, "A's key stays")
            try await mysqlHalf(stores, adjustment, half: later)
            let close = AdminDoneCall(
                itemKey: stores.keys.item(stores.item(1)), token: later, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint
            )
            #expect(try await stores.engine.stores.run(close) == .closed)
            #expect(try await isDone(stores))
            try await expectBoth(stores, at: 7, reconciled: true)
        }
    }

    /// An attempt's COMMIT got no answer; the ledger has the adjustment, from another attempt's half: this attempt's
    /// transaction did not commit (the source is unique), so its half is a duplicate, not applied (it was taken as
    /// applied, and its half kept beside the other's).
    @Test("an unknown COMMIT whose ledger row is another half's is a duplicate, not applied")
    func unknownCommitOfAnotherHalf() async throws {
        try await TestStores.with { stores in
            let repository = StockRepository(client: stores.mysql)
            _ = try await repository.apply(StockAdministration.mysqlHalf(stores.item(1), adjustment, half: "e/0@1"))
            let cut = MySQLError(code: .commitOutcomeUnknown, message: "connection lost during COMMIT")
            let own = StockAdministration.mysqlHalf(stores.item(1), adjustment, half: "e/0@2")
            #expect(try await repository.settle(own, unknownCommit: cut) == .duplicate(half: .named("e/0@1")))
            let same = StockAdministration.mysqlHalf(stores.item(1), adjustment, half: "e/0@1")
            guard case .applied = try await repository.settle(same, unknownCommit: cut) else {
                Issue.record("the half the ledger names was applied")
                return
            }
            #expect(try await repository.apply(own) == .duplicate(half: .named("e/0@1")))
            // A row that names no half (a version before names, or a retry of a key from then) is not this change's
            // either: it wrote its half's name.
            let other = StockAdjustment(adjustmentId: "a-2", delta: 1, reason: nil)
            _ = try await repository.apply(StockAdministration.mysqlHalf(stores.item(1), other, half: nil))
            let named = StockAdministration.mysqlHalf(stores.item(1), other, half: "e/0@3")
            #expect(try await repository.settle(named, unknownCommit: cut) == .duplicate(half: .unnamed))
        }
    }

    /// A makes its half and stalls; a retry C takes it over and completes it in MySQL (under A's half's name); the key
    /// then vanishes, and B makes the change afresh. A's reversal (its MySQL half failed) finds a key of another half,
    /// which cannot tell that MySQL has A's: the ledger says so, and the half stays. B's MySQL half finds the adjustment
    /// there from A's half and reverses its own. (A's half was reversed too: Redis 10 against MySQL's 7.)
    @Test("a reversal whose key names another half keeps its half when MySQL's ledger has it")
    func reversalKeptByLedger() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            let first = try await redisHalf(stores)
            let stalled = markOf(first) + "@\(try await age(stores))"
            let (taken, half) = try await takeOver(stores)
            #expect(half == stalled)
            try await mysqlHalf(stores, adjustment, half: half)
            _ = try await stores.redis.command("DEL", adjustmentKey(stores))
            let afresh = try await redisHalf(stores)
            #expect(try await onHand(stores) == 4)
            let itemKey = stores.keys.item(item)
            await reverse(stores, token: stalled)
            #expect(try await onHand(stores) == 4, "A's half stays: MySQL has it")
            // B's MySQL half: a duplicate of A's half; B reverses its own as a surplus.
            let outcome = try await StockRepository(client: stores.mysql).apply(StockAdministration.mysqlHalf(item, adjustment, half: afresh))
            #expect(outcome == .duplicate(half: .named(stalled)))
            await reverse(stores, token: afresh, surplus: true)
            // C's close (its key is gone: it closes its own fence).
            _ = try await stores.engine.stores.run(
                AdminDoneCall(itemKey: itemKey, token: taken, adjustmentKey: adjustmentKey(stores), fingerprint: adjustment.fingerprint)
            )
            try await expectBoth(stores, at: 7)
            #expect(try await stores.openFences(1) == 0)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Keys written before halves had names: an old retry C1 took A's half over, committed it in MySQL (the ledger
    /// names no half) and kept it without learning so. A replay settles the key; A's reversal, stored as a task, runs
    /// after. The settled key must stay unnamed (its time is C1's, not the half's: named after it, the half was taken
    /// for another and reversed, Redis 7 against MySQL's 10 for this addition).
    @Test("a key from before halves had names stays unnamed when settled, and an old task of its half reverses nothing")
    func unnamedKeyStaysUnnamed() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            let addition = StockAdjustment(adjustmentId: "a-1", delta: 3, reason: "found")
            _ = try await stores.engine.setStock(item, StockSettings(stock: 7))
            let call = AdjustStockCall(item, addition, retentionSeconds: 600, layout: stores.keys)
            guard case .applied(let first) = try await stores.engine.stores.run(call) else {
                Issue.record("adjust_stock did not apply")
                return
            }
            // As the version before names left it: C1's token in a key of four fields.
            let taker = try await stores.engine.redisNow() + 5
            let mark = markOf(first)
            _ = try await stores.redis.command("SET", adjustmentKey(stores), "unsettled:\(mark):\(taker):\(addition.fingerprint)")
            try await mysqlHalf(stores, addition)
            #expect(try await stores.engine.adjustStock(item, addition).replayed)
            let settled = try #require(try await stores.redis.command("GET", adjustmentKey(stores)).text)
            #expect(settled == "done:\(mark):\(taker):\(addition.fingerprint)")
            let task = UndoStockCall(
                itemKey: stores.keys.item(item), adjustmentKey: adjustmentKey(stores), marker: stores.keys.item(item) + ":undo-old",
                delta: addition.delta, fingerprint: addition.fingerprint, token: first, settings: "", retentionSeconds: 600
            )
            #expect(try await stores.engine.stores.run(task) == .done)
            try await expectBoth(stores, at: 10)
        }
    }
}
