import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// An item hash vanishes alone (TTL, eviction, an operator's DEL) while its outbox events are still in the stream,
/// not yet in the journal. The rebuild must count them: it applies them to the journal first, under the item's row
/// lock, so nothing of the old epoch is left out as stale (issue 17: a paid confirm dropped, a hold confirmed
/// without a journal row, a hold taken as uncounted after its reserve key went).
@Suite("Rebuilds apply the outbox first")
struct RebuildDrainTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    func deleteItem(_ stores: TestStores) async throws {
        _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
    }

    func expectAgree(_ stores: TestStores, available: Int64, reserved: Int64, mysql: Int64) async throws {
        #expect(try await stores.drainWithWorker())
        let level = try await stores.engine.stock(stores.item(1))
        #expect(level.available == available)
        #expect(level.reserved == reserved)
        #expect(try await stores.mysqlStock(1) == mysql)
        #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
    }

    @Test("a confirm still in the outbox when its item is rebuilt is applied, in MySQL and in the rebuilt item")
    func pendingConfirm() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-paid"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            #expect(try await stores.drainWithWorker())
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await deleteItem(stores)

            let rebuilt = try await engine.stock(stores.item(1))
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 0)
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }

    @Test("a hold still in the outbox when its item is rebuilt is counted: its confirm has a journal row to settle")
    func pendingHoldConfirmed() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-held"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            try await deleteItem(stores)

            let rebuilt = try await engine.stock(stores.item(1))
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 3)
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
            let rows = try await stores.journalRows()
            #expect(rows.map(\.status) == ["CONFIRMED"])
            #expect(rows.map(\.quantity) == [3])
        }
    }

    @Test("a reserve key deleted after its item was rebuilt still holds: the cancel gives the units back", arguments: [true, false])
    func reserveKeyDeletedAfterRebuild(drainFirst: Bool) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-kept"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            if drainFirst { #expect(try await stores.drainWithWorker()) }
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).reserved == 3)
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: order))

            let cancelled = try await engine.cancel(orderId: order, bizId: stores.bizId)
            #expect(cancelled.reservation.status == .cancelled)
            try await expectAgree(stores, available: 10, reserved: 0, mysql: 10)
            #expect(try await stores.journalRows().map(\.status) == ["CANCELLED"])
        }
    }

    @Test("a commit of the old epoch's events after the rebuild (sync mode's commit in flight) is not stale")
    func commitAfterRebuild() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-late"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            // The hold's event as a commit still on its way carries it.
            let events = try await RebuildDrainTests.outboxEvents(stores)
            #expect(events.count == 1)
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).reserved == 3)

            let result = try await JournalRepository(client: stores.mysql).apply(events, fences: engine.batchFences)
            #expect(result.staleLines.isEmpty)
            #expect(result.duplicates.isEmpty)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])
            try await expectAgree(stores, available: 7, reserved: 3, mysql: 10)
        }
    }

    @Test("reconcile --fix after a rebuild that applied a pending confirm leaves the item alone (model check seed 16)")
    func reconcileFixAfterAbsorbedConfirm() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-fix"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 28))
            _ = try await engine.reserve(command(stores, order, 4))
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).available == 24)

            // The confirm is still in the outbox, but in an epoch the rebuilt item absorbed: not in flight.
            let report = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(report.differences == [])
            try await expectAgree(stores, available: 24, reserved: 0, mysql: 24)
            #expect(try await stores.itemFields(1)["confirmed_unapplied"] == "0")
        }
    }

    @Test("a hold whose reserve key vanished stays counted across two rebuilds (model check seed 20038 --cluster)")
    func holdWithoutKeyAcrossRebuilds() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-twice"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-other", 2))
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: order))
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).reserved == 5)
            #expect(try await stores.drainWithWorker())
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).reserved == 5)

            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await expectAgree(stores, available: 5, reserved: 2, mysql: 7)
        }
    }

    /// The outbox entries of the test not yet acknowledged.
    static func outboxEvents(_ stores: TestStores) async throws -> [OutboxEvent] {
        var events: [OutboxEvent] = []
        for stream in stores.keys.outboxes {
            let reply = try await stores.redis.command("XRANGE", stream, "-", "+")
            events += OutboxEvent.entries(stream: stream, reply).compactMap(\.event)
        }
        return events
    }
}

extension RebuildDrainTests {
    @Test("an outbox stream deleted alone: a rebuild does not count the holds whose events went with it (no phantom units)")
    func deletedOutboxStream() async throws {
        try await TestStores.with(cluster: false) { stores in
            let engine = stores.engine
            let drained = "\(stores.bizId)-drained"
            let lost = "\(stores.bizId)-lost"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, drained, 3))
            #expect(try await stores.drainWithWorker())
            _ = try await engine.reserve(command(stores, lost, 4))
            // The stream holding the second hold's event is deleted (an operator's DEL), then the item vanishes too.
            _ = try await stores.redis.command("DEL", stores.keys.outbox(forOrder: stores.orderName(lost)))
            try await deleteItem(stores)

            let rebuilt = try await engine.stock(stores.item(1))
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 3)
            // The lost hold was never counted by the rebuilt item: its cancel gives nothing back.
            _ = try await engine.cancel(orderId: lost, bizId: stores.bizId)
            try await expectAgree(stores, available: 7, reserved: 3, mysql: 10)
        }
    }
}

extension RebuildDrainTests {
    /// Found by the model check (issue 18, cluster seed 200004, step 225): a cluster reserve whose other part failed
    /// took its part back (an undo event) before its item vanished; the rebuild reduced the reserve and its undo to
    /// nothing and absorbed their epoch; a worker then committed the reserve alone (its batch ended there) and was
    /// killed. The reconciler left the undo out of what is in flight (its line's epoch is not the item's current
    /// one), took the journal's row for a live hold, and `--fix` made Redis count a hold nobody has.
    @Test("an undo of an absorbed epoch still in the outbox is in flight: the reconciler sees no difference and fixes nothing")
    func undoOfAbsorbedEpochInFlight() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-undone"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            #expect(try await stores.drainWithWorker())
            guard case .created(let held) = try await engine.reserve(command(stores, order, 3)) else {
                Issue.record("the reserve was not made now")
                return
            }
            let reserve = try #require(try await Self.outboxEvents(stores).first { $0.kind == .reserve && $0.orderId == order })
            await engine.undoReserve(orderId: order, bizId: stores.bizId, lines: held.lines, eventId: reserve.id, routine: true)
            try await deleteItem(stores)
            #expect(try await engine.stock(stores.item(1)).reserved == 0, "the rebuild reduced the reserve and its undo")

            // A worker commits the reserve alone and acknowledges it; the undo is still to come.
            _ = try await JournalRepository(client: stores.mysql).apply([reserve], fences: engine.batchFences)
            _ = try await stores.redis.send(["XDEL", reserve.stream, reserve.id], routingKey: reserve.stream)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])

            let report = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(report.differences == [], "the undo in flight gives the journal's row back")
            #expect(try await engine.stock(stores.item(1)).reserved == 0)
            try await expectAgree(stores, available: 10, reserved: 0, mysql: 10)
            #expect(try await stores.journalRows().isEmpty)
        }
    }
}
