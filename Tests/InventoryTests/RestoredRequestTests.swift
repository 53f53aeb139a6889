import Foundation
import InventoryTestSupport
import Testing

@testable import Inventory

/// An order Redis lost and brought back from the journal still knows the request that made it: a retry with the
/// same body is a replay, another body under its id is refused (issue 17, item 3: the journal's answer).
@Suite("Orders restored from the journal keep their request")
struct RestoredRequestTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64, user: String? = nil) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: user, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    @Test("after Redis lost everything, another body under a held or confirmed order's id is a conflict", arguments: [
        Durability.async, .sync,
    ])
    func otherBodyAfterLoss(durability: Durability) async throws {
        try await TestStores.with(durability: durability) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let held = "\(stores.bizId)-held"
            let sold = "\(stores.bizId)-sold"
            _ = try await engine.reserve(command(stores, held, 2, user: "u1"))
            _ = try await engine.reserve(command(stores, sold, 3))
            _ = try await engine.confirm(orderId: sold, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()

            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(command(stores, held, 4, user: "u1")) }
            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(command(stores, held, 2, user: "u2")) }
            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(command(stores, sold, 1)) }
            guard case .replayed(let again) = try await engine.reserve(command(stores, held, 2, user: "u1")) else {
                Issue.record("the same body is not a replay")
                return
            }
            #expect(again.status == .reserved)
            guard case .replayed(let confirmed) = try await engine.reserve(command(stores, sold, 3)) else {
                Issue.record("the same body of the confirmed order is not a replay")
                return
            }
            #expect(confirmed.status == .confirmed)
            let level = try await engine.stock(stores.item(1))
            #expect(level.reserved == 2)
            #expect(level.available == 5)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("an order's hash deleted alone comes back with its request: another body naming its item is a conflict")
    func otherBodyAfterHashDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-o"
            _ = try await engine.reserve(command(stores, orderId, 2))
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.orderKey(orderId, sku: 1))
            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(command(stores, orderId, 5)) }
            #expect(try await engine.stock(stores.item(1)).reserved == 2)
        }
    }
}

extension RestoredRequestTests {
    @Test("sync mode, Redis forgot an ended order after its retention: another body under its id is a conflict, the same body its replay", arguments: [
        ReservationStatus.confirmed, .cancelled,
    ])
    func otherBodyAfterRetention(end: ReservationStatus) async throws {
        try await TestStores.with(durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-r"
            _ = try await engine.reserve(command(stores, orderId, 3, user: "u1"))
            if end == .confirmed {
                _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
            } else {
                _ = try await engine.cancel(orderId: orderId, bizId: stores.bizId)
            }
            #expect(try await stores.drainWithWorker())
            try await RetentionRetryTests().forget(stores, orderId)

            // Before: answered from the journal as a replay of the earlier order, whatever the body. A cancelled
            // order answers closed before its request is compared, as reserve.lua does for an order Redis knows.
            let otherBody = end == .confirmed ? InventoryError.idempotencyConflict : .orderClosed(.cancelled)
            await #expect(throws: otherBody) { try await engine.reserve(command(stores, orderId, 4, user: "u1")) }
            await #expect(throws: otherBody) { try await engine.reserve(command(stores, orderId, 3, user: "u2")) }
            if end == .confirmed {
                guard case .replayed(let again) = try await engine.reserve(command(stores, orderId, 3, user: "u1")) else {
                    Issue.record("the same body is not a replay")
                    return
                }
                #expect(again.status == .confirmed)
            } else {
                await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.reserve(command(stores, orderId, 3, user: "u1")) }
            }
            #expect(try await stores.drainWithWorker())
            let level = try await engine.stock(stores.item(1))
            #expect(level.reserved == 0)
            #expect(level.available == (end == .confirmed ? 7 : 10))
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}

extension RestoredRequestTests {
    /// Another instance on the same stores with async durability: its holds wait for the worker (none commits them).
    func asyncInstance(_ stores: TestStores) throws -> InventoryEngine {
        var configuration = stores.engine.configuration
        configuration.durability = .async
        return InventoryEngine(
            redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: configuration,
            logger: stores.logger
        )
    }

    @Test("sync mode, a replay of a hold that duplicates the journal's order and was not taken back: answered from the journal")
    func replayOfDuplicateHold() async throws {
        try await TestStores.with(durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-d"
            _ = try await engine.reserve(command(stores, orderId, 3))
            _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await RetentionRetryTests().forget(stores, orderId)
            // A hold of the same request left in Redis, never committed (its instance's take-back did not run).
            _ = try await asyncInstance(stores).reserve(command(stores, orderId, 3))
            // Before: its replay committed it, met the journal's row, and answered it as held and recorded (200
            // reserved, persisted), a hold the worker then takes back.
            guard case .replayed(let answer) = try await engine.reserve(command(stores, orderId, 3)) else {
                Issue.record("not a replay")
                return
            }
            #expect(answer.status == .confirmed)
            #expect(try await stores.drainWithWorker())
            let level = try await engine.stock(stores.item(1))
            #expect(level.reserved == 0)
            #expect(level.available == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}

extension RestoredRequestTests {
    @Test("sync mode, a replay of a partial hold whose new line the journal recorded beside a duplicate line: not answered as held")
    func replayOfPartialDuplicateHold() async throws {
        try await TestStores.with(durability: .sync) { stores in
            let engine = stores.engine
            let orderId = "\(stores.bizId)-pd"
            // Both items in one part of the order (on a cluster, a part of another shard is an order of its own to the
            // worker's duplicate check: see the note of session 30).
            let other = stores.skuSharingPart(orderId, with: 1)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 2))
            _ = try await engine.setStock(stores.item(other), StockSettings(stock: 0))
            let partial = ReserveCommand(
                orderId: orderId, bizId: stores.bizId, userId: nil,
                items: [.init(skuId: 1, quantity: 3), .init(skuId: other, quantity: 1)], ttlSeconds: 600, shortage: .partial
            )
            _ = try await engine.reserve(partial)
            _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await RetentionRetryTests().forget(stores, orderId)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(other), StockSettings(stock: 5))
            // A hold of the same request (3 and 1), committed (item 2 a row of its own, item 1 a duplicate of the
            // confirmed row), its take-back not run.
            _ = try await asyncInstance(stores).reserve(partial)
            let stream = stores.outboxKey(orderId, sku: 1)
            let events = OutboxEvent.entries(stream: stream, try await stores.redis.command("XRANGE", stream, "-", "+"))
                .compactMap(\.event).filter { $0.orderId == orderId }
            _ = try await JournalRepository(client: stores.mysql).apply(events, fences: engine.batchFences)
            // Before: its item 2 row made it look recorded, and the replay answered it held (3 and 1), a hold the
            // worker then took back. Now it is taken back at once and the order answered from the journal.
            let answer = try? await engine.reserve(partial)
            if case .created = answer { Issue.record("held anew") }
            if case .replayed(let reservation) = answer { #expect(reservation.status == .confirmed) }
            #expect(try await stores.drainWithWorker())
            guard case .replayed(let again) = try await engine.reserve(partial) else {
                Issue.record("not a replay")
                return
            }
            #expect(again.status == .confirmed)
            #expect(again.lines.map(\.reserved) == [2])
            // The PUTs set on-hand after the first sale: the retry's hold taken back leaves 10 and 5.
            #expect(try await engine.stock(stores.item(1)).available == 10)
            #expect(try await engine.stock(stores.item(other)).available == 5)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
