import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The second level of compensation: a reversal that could not run becomes a durable task, run exactly once.
@Suite("Durable retry of reversals")
struct CompensationTests {
    @Test("Redis unreachable, then a reply lost after the reversal ran: each stored once, applied exactly once")
    func storedAndRetried() async throws {
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(redisPort: proxy.port) { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let itemKey = stores.keys.item(item)
            func undo(_ delta: Int64, _ name: String) -> CompensationTask {
                .undoStock(
                    itemKey: itemKey, adjustmentKey: itemKey, delta: delta, fingerprint: "",
                    marker: String(itemKey.dropLast(4)) + "undo:" + name, token: ""
                )
            }

            proxy.down = true
            await engine.compensate(undo(4, "a"))
            proxy.down = false
            try await stores.reconnected()
            #expect(try await stores.pendingRetryTasks() == 1, "stored for the retrier")
            #expect(try await engine.stock(item).available == 10, "not applied while Redis was away")

            // The reversal reaches Redis but its answer does not come back: stored too, and must not apply twice.
            proxy.dropReplies = true
            await engine.compensate(undo(1, "b"))
            proxy.dropReplies = false
            try await stores.reconnected()
            #expect(try await stores.pendingRetryTasks() == 2)

            _ = try await engine.retryCompensations(limit: 1000)
            _ = try await engine.retryCompensations(limit: 1000)
            #expect(try await stores.pendingRetryTasks() == 0)
            #expect(try await engine.stock(item).available == 5, "10 − 4 − 1, each once")
        }
        await proxy.close()
    }

    @Test("a PUT whose MySQL half fails and whose reversal cannot reach Redis either: 503 saying the change may be made, not 'nothing was changed'")
    func reversalFailsToo() async throws {
        let redisUpstream = TestStores.redisAddress()
        let redisProxy = try await FaultProxy.start(upstreamHost: redisUpstream.host, upstreamPort: redisUpstream.port)
        let mysqlUpstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let mysqlProxy = try await FaultProxy.start(upstreamHost: mysqlUpstream.host, upstreamPort: mysqlUpstream.port)
        try await TestStores.with(redisPort: redisProxy.port, mysqlPort: mysqlProxy.port) { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            mysqlProxy.down = true
            // The reversal's script names its marker key (`…:undo:<id>`): Redis is cut before it runs.
            redisProxy.cutBeforeRequest(containing: ":undo:", thenDown: true)
            let thrown = await #expect(throws: InventoryError.self) { try await engine.setStock(item, StockSettings(stock: 20)) }
            #expect(thrown?.case == .outcomeUnknown, "the +10 is still in Redis: not 'nothing was changed'")
            redisProxy.down = false
            mysqlProxy.down = false
            try await stores.reconnected()
            #expect(try await engine.stock(item).available == 20, "the change stayed in Redis, as the answer said it may")
        }
        await redisProxy.close()
        await mysqlProxy.close()
    }

    @Test("a duplicate hold confirmed before it is taken back: handed back when a rebuild counted the earlier hold, not when that one was taken back")
    func settledDuplicate() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            func hold(_ orderId: String) async throws -> String {
                _ = try await engine.reserve(
                    ReserveCommand(
                        orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)],
                        ttlSeconds: 600, shortage: .reject
                    )
                )
                return try await stores.redis.command("HGET", stores.orderKey(orderId, sku: 1), "event").text ?? ""
            }
            let line = [ReservationLine(skuId: 1, requested: 1, reserved: 1)]

            // The earlier attempt's hold was taken back in Redis (its marker is set): this hold is the only one
            // the item counts, and it stays counted as confirmed.
            let first = try await hold("d1")
            _ = try await stores.redis.command("SET", stores.undoneMarkerKey("d1", eventId: "1-0", sku: 1), "1")
            _ = try await engine.confirm(orderId: "d1", bizId: stores.bizId)
            await engine.undoReserve(orderId: "d1", bizId: stores.bizId, lines: line, eventId: first, earlierEventId: "1-0")
            var fields = try await stores.itemFields(1)
            #expect([fields["stock_num"], fields["used_stock_num"], fields["confirmed_unapplied"]] == ["9", "0", "1"])

            // A rebuild from the journal counted the earlier hold (Redis had lost the order): the item hands the
            // one hold too many back, as much as the earlier hold's journal row holds.
            let second = try await hold("d2")
            _ = try await stores.mysql.query(
                """
                INSERT INTO reservation_journal (order_id, biz_id, sku_id, user_id, quantity, status, expires_at, reserve_event)
                VALUES ('d2', ?, 1, NULL, 1, 'RESERVED', NOW(3) + INTERVAL 1 HOUR, '2-0')
                """,
                [.string(stores.bizId)]
            )
            _ = try await stores.redis.command("HINCRBY", stores.keys.item(stores.item(1)), "used_stock_num", "1")
            _ = try await stores.redis.command("HINCRBY", stores.keys.item(stores.item(1)), "stock_num", "-1")
            _ = try await engine.confirm(orderId: "d2", bizId: stores.bizId)
            let epoch = try await stores.redis.command("HGET", stores.keys.item(stores.item(1)), "epoch").text ?? ""
            await engine.undoReserve(
                orderId: "d2", bizId: stores.bizId, lines: line, eventId: second, earlierEventId: "2-0", epochs: [1: epoch]
            )
            fields = try await stores.itemFields(1)
            #expect([fields["stock_num"], fields["used_stock_num"], fields["confirmed_unapplied"]] == ["8", "0", "2"])
        }
    }

    /// An order ended (confirmed) and its keys' retention ran out; the client retries its reserve: a new hold, which
    /// the client cancels before the worker meets the reserve's event. The worker finds it duplicating the ended order's
    /// journal row and takes it back: the order is settled (cancelled), and the item counts no earlier hold, so nothing
    /// more is handed back (the cancel gave the hold back; it was handed back a second time: 2 units over).
    /// `oneBatch`: the worker meets the ended order's confirm and the retry's reserve in one batch (it lagged more
    /// than the retention period): the journal row it reads before the batch's own updates is still RESERVED, yet the
    /// confirm came first in the stream, so the item counted no earlier hold when the retry was made.
    @Test(
        "a reserve retried after the ended order's retention, then cancelled: its take-back hands nothing more back",
        arguments: [false, true]
    )
    func retryAfterRetentionCancelled(oneBatch: Bool) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let command = ReserveCommand(
                orderId: "r1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 2)], ttlSeconds: 600,
                shortage: .reject
            )
            _ = try await engine.reserve(command)
            if oneBatch { #expect(try await stores.drainWithWorker()) }
            _ = try await engine.confirm(orderId: "r1", bizId: stores.bizId)
            if !oneBatch {
                #expect(try await stores.drainWithWorker())
                #expect(try await stores.mysqlStock(1) == 8)
            }
            // The retention period is over: the order's keys are gone.
            try await forgetOrder("r1", stores)
            _ = try await engine.reserve(command)
            _ = try await engine.cancel(orderId: "r1", bizId: stores.bizId)
            #expect(try await engine.stock(item).available == 8)
            #expect(try await stores.drainWithWorker())
            let level = try await engine.stock(item)
            #expect(level.available == 8)
            #expect(level.reserved == 0)
            #expect(try await stores.mysqlStock(1) == 8)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// Redis lost an order whose hold the item still counts (its journal row is RESERVED); the client retries and
    /// confirms. The worker commits the batch [retry, confirm] and stops before taking the duplicate back; the
    /// batch is delivered again. The row is CONFIRMED now, but the item still counted the earlier hold when the
    /// retry was made: the take-back hands it back (it handed nothing back: 2 units held by no order).
    @Test("a duplicate's batch delivered again after its commit moved the earlier row on: the earlier hold is still handed back")
    func duplicateDeliveredAgain() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            let command = ReserveCommand(
                orderId: "r2", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 2)], ttlSeconds: 600,
                shortage: .reject
            )
            _ = try await engine.reserve(command)
            #expect(try await stores.drainWithWorker())
            // The order's keys are lost; the item still counts its hold, as a rebuild from the journal would.
            try await forgetOrder("r2", stores)
            _ = try await engine.reserve(command)
            _ = try await engine.confirm(orderId: "r2", bizId: stores.bizId)
            #expect(try await engine.stock(item).reserved == 2)
            // The first delivery: committed, then the worker stopped before settling Redis.
            let stream = stores.outboxKey("r2", sku: 1)
            let events = OutboxEvent.entries(stream: stream, try await stores.redis.command("XRANGE", stream, "-", "+"))
                .compactMap(\.event)
            #expect(events.map(\.kind) == [.reserve, .confirm])
            let first = try await JournalRepository(client: stores.mysql).apply(events, fences: engine.batchFences)
            #expect(first.duplicates.map(\.existingStatus) == ["RESERVED"])
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
            // The worker delivers the batch again.
            #expect(try await stores.drainWithWorker())
            let level = try await engine.stock(item)
            #expect(level.available == 8)
            #expect(level.reserved == 0)
            #expect(try await stores.mysqlStock(1) == 8)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// An order's keys gone from Redis (its retention ran out, or Redis lost them); its item is left as it is.
    private func forgetOrder(_ orderId: String, _ stores: TestStores) async throws {
        _ = try await stores.redis.command("DEL", stores.orderKey(orderId, sku: 1))
        _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: orderId))
        if stores.keys.clustered { _ = try await stores.redis.command("DEL", stores.keys.directory(stores.orderName(orderId))) }
    }
}
