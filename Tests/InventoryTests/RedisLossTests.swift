import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// What clients rely on must survive Redis losing its data after the write-back drained (issue 17, items 3 and 4):
/// the answer to a retried orderId the journal has, and a cancel made before any reserve.
@Suite("Redis loses its data after a drain")
struct RedisLossTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    func reconciler(_ stores: TestStores) throws -> Reconciler { try stores.reconciler() }

    @Test("a retry of a confirmed order after Redis lost its data gets the journal's answer and holds nothing", arguments: [Durability.async, .sync])
    func retryOfConfirmedOrder(durability: Durability) async throws {
        try await TestStores.with(durability: durability) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            _ = try await engine.confirm(orderId: "o-1", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()

            let retry = try await engine.reserve(command(stores, "o-1", 3))
            guard case .replayed(let reservation) = retry else {
                Issue.record("a retry of a confirmed order was held again: \(retry)")
                return
            }
            #expect(reservation.status == .confirmed)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a cancel before any reserve keeps refusing a late reserve after Redis lost its data", arguments: [Durability.async, .sync])
    func cancelBeforeReserveSurvives(durability: Durability) async throws {
        try await TestStores.with(durability: durability) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            // Order ids are global (other tests' journal rows share them): this one is the test's own.
            let late = "\(stores.bizId)-late"
            _ = try await engine.reserve(command(stores, "o-0", 1))
            _ = try await engine.cancel(orderId: late, bizId: stores.bizId)
            // Async: the tombstone is written by the worker; sync: before the cancel answered.
            if durability == .async { #expect(try await stores.drainWithWorker()) }
            try await stores.loseEverything()

            await #expect(throws: InventoryError.orderClosed(.cancelled)) {
                try await engine.reserve(command(stores, late, 2))
            }
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 9)
            #expect(level.reserved == 1)
            // A new order is held as usual (the journal was asked, and knows nothing of it).
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-new", 2))
            #expect(try await engine.stock(stores.item(1)).reserved == 3)
        }
    }

    @Test("sync mode: a hold whose item was rebuilt before its journal commit is taken back; the retry holds afresh")
    func syncHoldLeftOutIsTakenBack() async throws {
        try await TestStores.with { stores in
            // Made in Redis (async: no commit yet), then its item vanishes with the outbox (its event is lost: the
            // rebuild cannot apply it) and is rebuilt without it.
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-stale"
            _ = try await stores.engine.reserve(command(stores, orderId, 3))
            for stream in stores.keys.outboxes { _ = try await stores.redis.command("DEL", stream) }
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 0, "rebuilt without the hold")

            var configuration = stores.engine.configuration
            configuration.durability = .sync
            let sync = InventoryEngine(
                redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(),
                configuration: configuration, logger: stores.logger
            )
            // The replay finds the hold's line left out of the journal: 503, and the order is taken back ...
            let thrown = await #expect(throws: InventoryError.self) { try await sync.reserve(command(stores, orderId, 3)) }
            #expect(thrown?.case == .unavailable)
            // ... so the retry is held and recorded.
            let retry = try await sync.reserve(command(stores, orderId, 3))
            guard case .created(let reservation) = retry else {
                Issue.record("the retry was not held afresh: \(retry)")
                return
            }
            #expect(reservation.persisted == true)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 3)
            #expect(try await stores.journalRows().map(\.quantity) == [3])
        }
    }

    @Test("an order whose hold Redis took back is not restored from its journal row while the undo is on its way")
    func takenBackOrderNotRestored() async throws {
        try await TestStores.with(durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let orderId = "\(stores.bizId)-undone"
            _ = try await engine.reserve(command(stores, orderId, 3))
            let eventId = try await stores.redis.command("HGET", stores.orderKey(orderId, sku: 1), "event").text ?? ""
            // Taken back in Redis (as after a failed commit whose row was written after all); its undo event is in
            // the outbox, not applied yet: the journal row is still there.
            await engine.undoReserve(
                orderId: orderId, bizId: stores.bizId, lines: [ReservationLine(skuId: 1, requested: 3, reserved: 3)],
                eventId: eventId
            )
            #expect(try await stores.journalRows().map(\.orderId) == [orderId])

            let thrown2 = await #expect(throws: InventoryError.self) { try await engine.confirm(orderId: orderId, bizId: stores.bizId) }
            #expect(thrown2?.case == .notFound)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().isEmpty)
            await #expect(throws: InventoryError.notFound) { try await engine.confirm(orderId: orderId, bizId: stores.bizId) }
            #expect(try await engine.stock(stores.item(1)).available == 10)
        }
    }

    @Test("a shard's first start trusts Redis: no journal question, and the marker says so")
    func firstStartTrustsRedis() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 1))
            let shard = stores.keys.shard(of: stores.orderName("o-1"))
            #expect(try await stores.redis.command("GET", stores.keys.generation(shard: shard)).text == "0")
            try await stores.loseEverything()
            _ = try await engine.reserve(command(stores, "o-2", 1))
            let marker = Int64(
                try await stores.redis.command("GET", stores.keys.generation(shard: stores.keys.shard(of: stores.orderName("o-2")))).text ?? ""
            ) ?? 0
            #expect(marker > (try await engine.redisNow()), "after a loss: ask the journal for one retention period")
        }
    }

    @Test("the day after a loss, each journal question reads only the outbox entries appended since the one before")
    func journalQuestionsReadEachEntryOnce() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 1000))
            _ = try await engine.reserve(command(stores, "o-0", 1))
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()
            // No worker meanwhile: the outbox grows with every reserve, and every reserve of a new order asks the
            // journal, after applying what the outbox has of that order.
            let orders = 200
            let before = engine.stores.outboxIndex.entriesRead.withLockedValue { $0 }
            for index in 1...orders { _ = try await engine.reserve(command(stores, "o-\(index)", 1)) }
            let read = engine.stores.outboxIndex.entriesRead.withLockedValue { $0 } - before
            // Before: each question read its shard's whole stream, about orders² / (2 × streams) entries in all
            // (5,000 here); now each entry once.
            #expect(read < orders, "outbox entries read by \(orders) journal questions: \(read)")
            #expect(try await engine.stock(stores.item(1)).reserved == Int64(orders + 1))
        }
    }
}
