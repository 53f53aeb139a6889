import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Redis comes back from an older state than MySQL already has (a stale snapshot or replica): its generation marker
/// came back with it, so only the outbox's drain marks tell (InventoryEngine.checkDrainMarks).
@Suite("Redis that comes back stale")
struct StaleRedisTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    /// Every stream's drain mark in Redis.
    func marks(_ stores: TestStores) async throws -> [String: String?] {
        var marks: [String: String?] = [:]
        for stream in stores.keys.outboxes {
            marks[stream] = try await stores.redis.command("GET", KeyLayout.drainMark(ofStream: stream)).text
        }
        return marks
    }

    /// Redis as it was before `orderId`'s reserve of `quantity` units of item 1: the order's keys gone, the item's
    /// counts given back, every drain mark as in `marks`.
    func goBack(_ stores: TestStores, _ orderId: String, _ quantity: Int64, marks: [String: String?]) async throws {
        let item = stores.keys.item(stores.item(1))
        _ = try await stores.redis.command("DEL", stores.orderKey(orderId, sku: 1))
        _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: stores.orderName(orderId)))
        if stores.keys.clustered { _ = try await stores.redis.command("DEL", stores.keys.directory(stores.orderName(orderId))) }
        _ = try await stores.redis.command("HINCRBY", item, "stock_num", String(quantity))
        _ = try await stores.redis.command("HINCRBY", item, "used_stock_num", String(-quantity))
        for (stream, mark) in marks {
            let key = KeyLayout.drainMark(ofStream: stream)
            if let mark { _ = try await stores.redis.command("SET", key, mark) } else { _ = try await stores.redis.command("DEL", key) }
        }
    }

    @Test("a Redis back from before a drained reserve is found behind once; its items are rebuilt and a retry of the order is answered from the journal")
    func backFromBeforeADrainedReserve() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let streams = stores.keys.outboxes
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            #expect(try await stores.drainWithWorker())
            let before = try await marks(stores)
            _ = try await engine.reserve(command(stores, "o-1", 3))
            #expect(try await stores.drainWithWorker())
            // Redis has everything MySQL has: nothing is behind.
            #expect(try await engine.checkDrainMarks(streams: streams) == [])

            try await goBack(stores, "o-1", 3, marks: before)
            #expect(try await engine.stock(stores.item(1)).available == 10, "the stale item offers the held units again")
            #expect(try await engine.checkDrainMarks(streams: streams).count == 1)
            #expect(try await engine.checkDrainMarks(streams: streams) == [], "reported once")
            #expect(try await stores.redis.command("EXISTS", stores.keys.item(stores.item(1))).int == 0, "the item is dropped")

            guard case .replayed(let again) = try await engine.reserve(command(stores, "o-1", 3)) else {
                Issue.record("the retried order was held a second time")
                return
            }
            #expect(again.status == .reserved)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])
            #expect(try await stores.mysqlStock(1) == 10)
        }
    }

    @Test("entries committed but not acknowledged yet (a worker stopped between the two) are not a Redis gone back")
    func committedNotAcknowledged() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let streams = stores.keys.outboxes
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            #expect(try await stores.drainWithWorker())
            _ = try await engine.reserve(command(stores, "o-1", 3))
            // What the worker does before its acknowledgement: the batch and its drain marks committed.
            var events: [OutboxEvent] = []
            var drained: [String: OutboxEntryID] = [:]
            for stream in streams {
                let pending = try await engine.stores.pendingEvents(in: stream) { _ in true }
                events += pending
                if let last = pending.compactMap({ OutboxEntryID($0.id) }).max() { drained[stream] = last }
            }
            #expect(!drained.isEmpty)
            _ = try await engine.journal.apply(events, epochs: engine.itemEpochs, drained: drained)

            #expect(try await engine.checkDrainMarks(streams: streams) == [])
            #expect(try await stores.drainWithWorker())
            #expect(try await engine.checkDrainMarks(streams: streams) == [])
            #expect(try await engine.stock(stores.item(1)).available == 7)
        }
    }
}
