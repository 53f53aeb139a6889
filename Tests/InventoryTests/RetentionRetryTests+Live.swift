import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// A held order whose keys vanished while its item still counts its hold: a reserve again holds anew (a duplicate of a
/// live order). Its order going on with it before the worker takes it back (a confirm) makes the duplicate the order's
/// hold: the item hands back the earlier hold, as much of each line as that one held, and the journal row takes the
/// duplicate's quantities and codes.
extension RetentionRetryTests {
    @Test("a partly held order's keys vanish, its retry holds more (and a line the order held none of) and is confirmed first: what was sold stays sold")
    func livePartialDuplicateConfirmed() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-p"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 2))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 0))
            let partial = ReserveCommand(
                orderId: order, bizId: stores.bizId, userId: nil,
                items: [.init(skuId: 1, quantity: 3), .init(skuId: 2, quantity: 1)], ttlSeconds: 600, shortage: .partial
            )
            guard case .created(let first) = try await engine.reserve(partial) else {
                Issue.record("not held")
                return
            }
            #expect(first.lines.map(\.reserved) == [2, 0])
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 5))
            guard case .created(let retry) = try await engine.reserve(partial) else {
                Issue.record("Redis remembered the order")
                return
            }
            #expect(retry.lines.map(\.reserved) == [3, 1])
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            // Committed, not yet taken back: the item still counts the earlier hold (2 of item 1). Before, the
            // reconciler took the retry's reserve in flight (3) for it.
            try await apply(stores, try await entries(stores, order))
            try await expectNoDifference(stores)
            #expect(try await stores.drainWithWorker())
            // Before: the take-back handed back the retry's 3 of item 1 for the earlier hold's 2, and 1 of item 2,
            // which no earlier hold had (units that were never held: 8 and 5 available).
            for (sku, available) in [(UInt64(1), Int64(7)), (2, 4)] {
                let level = try await engine.stock(stores.item(sku))
                #expect(level.available == available)
                #expect(level.reserved == 0)
                #expect(try await stores.mysqlStock(sku) == available)
            }
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            let rows = try await stores.journalRows()
            #expect(rows.map(\.status) == ["CONFIRMED", "CONFIRMED"])
            #expect(rows.map(\.quantity) == [3, 1])
            // Forgotten again, the order comes back from its rows and is refunded whole. Before: the row the retry made
            // of item 2 was taken for one about to be removed (its take-back's marker), 503 for the marker's lifetime.
            try await forget(stores, order)
            let refunded = try await engine.refund(orderId: order, bizId: stores.bizId)
            #expect(refunded.reservation.lines.sorted { $0.skuId < $1.skuId }.map(\.reserved) == [3, 1])
            #expect(try await stores.drainWithWorker())
            for (sku, available) in [(UInt64(1), Int64(10)), (2, 5)] {
                #expect(try await engine.stock(stores.item(sku)).available == available)
                #expect(try await stores.mysqlStock(sku) == available)
            }
        }
    }

    @Test("a held order's retry confirmed and committed, its item rebuilt before the take-back: nothing is handed back the rebuild did not count")
    func liveDuplicateAfterRebuild() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-r"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            guard case .created(let first) = try await engine.reserve(command(stores, order, 2)) else {
                Issue.record("not held")
                return
            }
            let earlier = try await entries(stores, order).first?.id ?? ""
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            _ = try await engine.reserve(command(stores, order, 2))
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            let events = try await entries(stores, order)
            try await apply(stores, events)
            // The item vanishes and is rebuilt from the journal, whose row is confirmed now: it counts no hold.
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            #expect(try await engine.stock(stores.item(1)).available == 8)
            await engine.undoReserve(
                orderId: order, bizId: stores.bizId, lines: first.lines, eventId: events[0].id, earlierEventId: earlier
            )
            // Before: the earlier hold (2) was handed back to an item that did not count it (10 available, 2 oversold).
            #expect(try await engine.stock(stores.item(1)).available == 8)
            try await expectAgree(stores, available: 8)
        }
    }

    @Test("a held order's retry, its item rebuilt before the confirm (the rebuild re-stamps the order's hold): nothing handed back twice")
    func liveDuplicateRebuiltBeforeConfirm() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-b"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 2))
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            _ = try await engine.reserve(command(stores, order, 2))
            // The item vanishes and is rebuilt: it counts the journal's row once, in the order's hold of its new epoch.
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            #expect(try await engine.stock(stores.item(1)).available == 8)
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            // The worker: the retry duplicates the row, its order went on, and the item counts no earlier hold. Before:
            // the re-stamped epoch looked like the retry's own, and 2 units were handed back (10 available).
            try await expectAgree(stores, available: 8)
        }
    }
    @Test("a held order's retry, its item rebuilt before the worker takes the retry back: the earlier hold the rebuild counted stays counted")
    func liveDuplicateRebuiltThenTakenBack() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-u"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 2))
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            _ = try await engine.reserve(command(stores, order, 2))
            #expect(try await engine.stock(stores.item(1)).available == 6)
            // The item vanishes and is rebuilt: it counts the journal's row once, in the order's hold of its new epoch.
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            #expect(try await engine.stock(stores.item(1)).available == 8)
            // The worker takes the retry back. Before: the re-stamped hold looked like the retry's own and was given
            // back (10 available while the journal's row still held 2: 2 units to sell twice).
            try await RebuildDrainTests().expectAgree(stores, available: 8, reserved: 2, mysql: 10)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])
            let other = ReserveCommand(
                orderId: "\(stores.bizId)-v", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 9)],
                ttlSeconds: 600, shortage: .reject
            )
            await #expect(throws: InventoryError.insufficientStock([.init(skuId: 1, requested: 9, available: 8)])) {
                try await engine.reserve(other)
            }
            // The order is the journal's again, and is sold once.
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await expectAgree(stores, available: 8)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }
}

extension RetentionRetryTests {
    @Test("a partly held order's retry holds a line the order held none of, that item is rebuilt before the take-back: the line's own hold is given back")
    func livePartialDuplicateRebuiltThenTakenBack() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-q"
            // Both items in one part of the order (on a cluster, a part of another shard is an order of its own to the
            // worker's duplicate check: README, known limits).
            let other = stores.skuSharingPart(order, with: 1)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 2))
            _ = try await engine.setStock(stores.item(other), StockSettings(stock: 0))
            let partial = ReserveCommand(
                orderId: order, bizId: stores.bizId, userId: nil,
                items: [.init(skuId: 1, quantity: 3), .init(skuId: other, quantity: 1)], ttlSeconds: 600, shortage: .partial
            )
            _ = try await engine.reserve(partial)
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(other), StockSettings(stock: 5))
            guard case .created(let retry) = try await engine.reserve(partial) else {
                Issue.record("Redis remembered the order")
                return
            }
            #expect(retry.lines.map(\.reserved) == [3, 1])
            // The other item is rebuilt: the retry's line of it is a row of its own (the order held none of it), counted.
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(other)))
            #expect(try await engine.stock(stores.item(other)).available == 4)
            #expect(try await stores.drainWithWorker())
            // The take-back gives back the retry's 3 of item 1 (the order's 2 stay held) and its own 1 of item 2, whose
            // row the undo removes. Before: that hold was kept as if it were the earlier order's (4 against 5).
            for (sku, available, reserved) in [(UInt64(1), Int64(8), Int64(2)), (other, 5, 0)] {
                let level = try await engine.stock(stores.item(sku))
                #expect(level.available == available)
                #expect(level.reserved == reserved)
            }
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("an ended order's retry recorded as a duplicate, then Redis loses everything before its take-back: no rebuild counts the hold Redis lost")
    func endedRetryLostWithRedis() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-l"
            try await endedAndForgotten(stores, order, end: .cancelled)
            _ = try await engine.reserve(command(stores, order, 3))
            // Recorded (its duplicate row RESERVED), not yet taken back, when Redis loses its data.
            try await apply(stores, try await entries(stores, order))
            try await stores.loseEverything()
            // Before: the rebuild counted the row's 3 units, which no order held any more (7 available, for good).
            try await expectAgree(stores, available: 10)
        }
    }

    @Test("an ended order's retry after Redis lost its data, its item rebuilt before the worker: the stale hold is not counted")
    func endedRetryRebuiltAfterLoss() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-a"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()
            // Long after the loss: its journal window closed (Redis's clock is past the markers).
            for shard in 0..<stores.keys.shards { _ = try await stores.redis.command("SET", stores.keys.generation(shard: shard), "0") }
            #expect(try await engine.stock(stores.item(1)).available == 7)
            _ = try await engine.reserve(command(stores, order, 3))
            #expect(try await engine.stock(stores.item(1)).available == 4)
            // Rebuilt: the retry's epoch began before the outbox streams were made again (the loss), so this rebuild
            // does not absorb it, and the worker leaves its reserve out as stale. Before: counted (4 available), and
            // nothing ever gave the 3 units back (reserved 3 after the drain).
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            try await expectAgree(stores, available: 7)
        }
    }

    enum AfterRebuild: String, CaseIterable, Sendable { case takenBack, cancelled, confirmed }

    @Test("an ended order's retry, its item rebuilt before the worker: taken back, cancelled or sold once", arguments: AfterRebuild.allCases)
    func endedRetryRebuilt(then: AfterRebuild) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-e"
            try await endedAndForgotten(stores, order, end: .cancelled)
            _ = try await engine.reserve(command(stores, order, 2))
            #expect(try await engine.stock(stores.item(1)).available == 8)
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            // Rebuilt, the item counts the retry's hold (a hold of its own while its row is RESERVED). Before: 10.
            #expect(try await engine.stock(stores.item(1)).available == 8)
            switch then {
            case .takenBack:
                try await expectAgree(stores, available: 10)
            case .cancelled:
                _ = try await engine.cancel(orderId: order, bizId: stores.bizId)
                try await expectAgree(stores, available: 10)
            case .confirmed:
                _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
                try await expectAgree(stores, available: 8)
            }
        }
    }
}
