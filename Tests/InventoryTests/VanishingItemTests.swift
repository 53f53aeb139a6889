import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Single keys that vanish (a TTL ran out, Redis evicted them, an operator deleted them) while the rest of an
/// order's state is there. A script never writes into an item it does not find whole: it answers "missing", the
/// engine rebuilds the item from MySQL under the init lock and runs the script again (issue 17, item 1).
@Suite("Items that vanish between operations")
struct VanishingItemTests {
    func command(_ stores: TestStores, _ orderId: String, user: String? = nil, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: user, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    func reconciler(_ stores: TestStores) throws -> Reconciler { try stores.reconciler() }

    func deleteItem(_ stores: TestStores, _ sku: UInt64 = 1) async throws {
        _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(sku)))
    }

    /// The item is whole again: every field a rebuild writes, an epoch, and a TTL.
    func expectWhole(_ stores: TestStores, _ sku: UInt64 = 1) async throws {
        let fields = try await stores.itemFields(sku)
        for field in ["stock_num", "used_stock_num", "is_infinite", "backorder_limit", "user_limit", "epoch"] {
            #expect(fields[field] != nil, "item field \(field) after the operation")
        }
        #expect(fields["epoch"]?.isEmpty == false)
        let ttl = try await stores.redis.command("TTL", stores.keys.item(stores.item(sku))).int ?? -2
        #expect(ttl > 0, "the item has its TTL (\(ttl))")
    }

    @Test("cancel after the item hash is gone: the item comes back from MySQL whole, with its settings", arguments: [true, false])
    func cancelAfterItemDeleted(drainFirst: Bool) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10, userLimit: 3))
            _ = try await engine.reserve(command(stores, "o-1", user: "u1", 2))
            // Drained: the journal has the hold and the rebuild counts it. Not drained: the rebuild cannot count
            // it, the worker leaves its reserve line out as stale, and the cancel must hand back nothing.
            if drainFirst { #expect(try await stores.drainWithWorker()) }
            try await deleteItem(stores)

            let cancelled = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            #expect(cancelled.reservation.status == .cancelled)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(level.userLimit == 3)
            try await expectWhole(stores)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
            // The user's allowance is whole again: three units.
            _ = try await engine.reserve(command(stores, "o-2", user: "u1", 3))
        }
    }

    @Test("refund after the item hash is gone: stock comes back once, in both stores")
    func refundAfterItemDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            _ = try await engine.confirm(orderId: "o-1", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 7)
            try await deleteItem(stores)

            let refunded = try await engine.refund(orderId: "o-1", bizId: stores.bizId)
            #expect(refunded.reservation.status == .refunded)
            try await expectWhole(stores)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("confirm after the item hash is gone: the confirm carries the rebuilt epoch and MySQL is deducted")
    func confirmAfterItemDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            #expect(try await stores.drainWithWorker())
            try await deleteItem(stores)

            let confirmed = try await engine.confirm(orderId: "o-1", bizId: stores.bizId)
            #expect(confirmed.reservation.status == .confirmed)
            try await expectWhole(stores)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 7)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 0)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a take-back after the item hash is gone leaves no partial item and hands back only what the item counts")
    func undoReserveAfterItemDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 4))
            let eventId = try await stores.redis.command("HGET", stores.orderKey("o-1", sku: 1), "event").text ?? ""
            #expect(!eventId.isEmpty)
            try await deleteItem(stores)

            await engine.undoReserve(
                orderId: "o-1", bizId: stores.bizId, lines: [ReservationLine(skuId: 1, requested: 4, reserved: 4)],
                eventId: eventId
            )
            try await expectWhole(stores)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    /// With rebuilds of the item first: the first rebuild counts the hold (its reserve key gets the new epoch, the
    /// order's record keeps the epoch the hold was made in, which the item absorbs), the second one counts it again
    /// but absorbs only the first rebuild's epoch. Once the reserve key is gone the order's record is the hold's only
    /// account: it must still be taken for counted (the fault suite's key-del run found it: the expiry of such an
    /// order gave nothing back, and Redis kept the unit reserved for good; a confirm sold it twice).
    @Test("a reserve key deleted alone, also after its item was rebuilt twice: confirm still sells the hold, cancel still gives it back", arguments: [true, false], [0, 2])
    func reserveKeyDeleted(confirming: Bool, rebuilds: Int) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            #expect(try await stores.drainWithWorker())
            for _ in 0..<rebuilds {
                try await deleteItem(stores)
                #expect(try await engine.stock(stores.item(1)).available == 7)
            }
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: "o-1"))

            if confirming {
                _ = try await engine.confirm(orderId: "o-1", bizId: stores.bizId)
            } else {
                _ = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            }
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == (confirming ? 7 : 10))
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == (confirming ? 7 : 10))
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
            // Every key a confirm leaves expires with its order (the reserve key written anew too): none is kept for good.
            let reserveKey = stores.keys.reserveKey(stores.item(1), orderId: "o-1")
            let ttl = try await stores.redis.command("TTL", reserveKey).int ?? -2
            #expect(confirming ? ttl > 0 : ttl == -2, "the reserve key's TTL after the \(confirming ? "confirm" : "cancel"): \(ttl)")
        }
    }

    /// The order's record the rebuild re-stamps is wherever the order is kept: under its name, or under its bare
    /// orderId when it was made before orders were scoped by business; never another business's order.
    @Test("a rebuild re-stamps its holds' order records, also under a bare orderId, and leaves another business's order alone")
    func rebuildRestampsOrderRecords() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            for order in ["o-new", "o-old", "o-other"] { _ = try await engine.reserve(command(stores, order, 1)) }
            #expect(try await stores.drainWithWorker())
            func key(_ orderId: String, bare: Bool = false) -> String {
                let name = bare ? orderId : OrderRef(bizId: stores.bizId, orderId: orderId).name
                return stores.keys.order(name, shard: stores.keys.partShard(orderId: name, item: item))
            }
            // "o-old" as the version before scoped orders left it: under its bare orderId.
            let fields = try await stores.redis.command("HGETALL", key("o-old")).array?.compactMap(\.text) ?? []
            #expect(!fields.isEmpty)
            let legacy = key("o-old", bare: true)
            _ = try await stores.redis.send(["HSET", legacy] + fields, routingKey: legacy)
            _ = try await stores.redis.command("DEL", key("o-old"))
            // "o-other" claims another business: its record is not this item's to re-stamp.
            _ = try await stores.redis.command("HSET", key("o-other"), "biz", "someone-else")
            let before = try await stores.itemFields(1)["epoch"]

            for _ in 0..<2 {
                try await deleteItem(stores)
                #expect(try await engine.stock(item).reserved == 3)
            }
            let epoch = try #require(try await stores.itemFields(1)["epoch"])
            #expect(epoch != before)
            #expect(try await stores.redis.command("HGET", key("o-new"), "line_epochs").text == epoch)
            #expect(try await stores.redis.command("HGET", key("o-old", bare: true), "line_epochs").text == epoch)
            #expect(try await stores.redis.command("HGET", key("o-other"), "line_epochs").text == before)
        }
    }

    /// A take-back (a sync reserve whose journal commit failed, a duplicate the worker found) of a hold whose
    /// reserve key vanished alone: the order's record says what the item counts, as for a cancel.
    @Test("a reserve key deleted alone: a take-back of the hold still gives it back")
    func reserveKeyDeletedBeforeTakeBack() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-taken"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            guard case .created(let held) = try await engine.reserve(command(stores, order, 3)) else {
                Issue.record("the reserve was not made now")
                return
            }
            let reserve = try #require(
                try await RebuildDrainTests.outboxEvents(stores).first { $0.kind == .reserve && $0.orderId == order }
            )
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: order))

            await engine.undoReserve(orderId: order, bizId: stores.bizId, lines: held.lines, eventId: reserve.id, routine: true)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await stores.journalRows().isEmpty)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("an adjustment replayed after its de-duplication key is gone is a replay: MySQL's ledger decides")
    func adjustmentReplayAfterKeyDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let adjustment = StockAdjustment(adjustmentId: "a-1", delta: 5, reason: nil)
            let first = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(!first.replayed)
            _ = try await stores.redis.command(
                "DEL", stores.keys.adjustmentKey(stores.item(1), adjustmentId: "a-1")
            )

            let again = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.available == 15)
            #expect(try await stores.mysqlStock(1) == 15)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
            // Remembered in Redis again: the next replay is answered there.
            let third = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(third.replayed)
            #expect(third.level.available == 15)
        }
    }

    @Test("an adjustment replayed after its key and the item are gone is a replay too")
    func adjustmentReplayAfterItemAndKeyDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let adjustment = StockAdjustment(adjustmentId: "a-1", delta: -4, reason: "damage")
            _ = try await engine.adjustStock(stores.item(1), adjustment)
            try await stores.loseEverything()

            let again = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(again.replayed)
            #expect(again.level.available == 6)
            #expect(try await stores.mysqlStock(1) == 6)
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("items rebuilt one after another read each pending outbox entry once, and count every hold")
    func rebuildsReadEachEntryOnce() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let items: [UInt64] = Array(1...20)
            for sku in items { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 100)) }
            // No worker: every reserve's event waits in the outbox.
            for sku in items {
                for order in 1...10 {
                    _ = try await engine.reserve(
                        ReserveCommand(
                            orderId: "r-\(sku)-\(order)", bizId: stores.bizId, userId: nil,
                            items: [.init(skuId: sku, quantity: 1)], ttlSeconds: 600, shortage: .reject
                        )
                    )
                }
            }
            let before = engine.stores.outboxIndex.entriesRead.withLockedValue { $0 }
            // Each item vanishes and is rebuilt from MySQL, after applying its events still in the outbox.
            for sku in items {
                try await deleteItem(stores, sku)
                #expect(try await engine.stock(stores.item(sku)).reserved == 10, "item \(sku) counts its holds")
            }
            let read = engine.stores.outboxIndex.entriesRead.withLockedValue { $0 } - before
            // Before: every rebuild read every stream whole, 20 × 200 entries; now each once, and each item's own.
            #expect(read <= 2 * items.count * 10, "outbox entries read by \(items.count) rebuilds: \(read)")
        }
    }
}
