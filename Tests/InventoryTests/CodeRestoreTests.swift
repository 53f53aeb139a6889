import Foundation
import InventoryTestSupport
import MySQLClient
import Testing

@testable import Inventory

/// One-time codes of an order restored from the journal after Redis lost data. On a single Redis an item's events go
/// to as many outbox streams as its orders' shards, and the worker commits each stream on its own: a later take of a
/// code can reach the journal before the give-back that freed it, and the give-back can then be lost with Redis.
@Suite("One-time codes of an order restored after Redis lost its give-back")
struct CodeRestoreTests {
    func command(_ stores: TestStores, _ orderId: String, code: String) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1, codes: [code])],
            ttlSeconds: 1800, shortage: .reject
        )
    }

    /// Codes A and B in a one-time pool; order `first` held A (in the journal), was cancelled, and the cancel was lost
    /// with all of Redis after the second order, whose events go to another stream, took A, was confirmed, and was
    /// committed. Returns the second order's id.
    func retakenCode(_ stores: TestStores, first: String) async throws -> String {
        let engine = stores.engine
        let item = stores.item(1)
        _ = try await engine.setPool(item, CodePool(kind: .oneTime))
        _ = try await engine.loadCodes(item, ["CODE-A", "CODE-B"])
        let second = try #require((2..<64).map { "o-\($0)" }.first { stores.outboxKey($0, sku: 1) != stores.outboxKey(first, sku: 1) })
        _ = try await engine.reserve(command(stores, first, code: "CODE-A"))
        #expect(try await stores.drainWithWorker())
        // The first order is cancelled (CODE-A back in Redis); the second takes CODE-A and is paid.
        _ = try await engine.cancel(orderId: first, bizId: stores.bizId)
        _ = try await engine.reserve(command(stores, second, code: "CODE-A"))
        _ = try await engine.confirm(orderId: second, bizId: stores.bizId)
        // The worker commits the second order's stream only; then Redis loses everything, the cancel with it.
        let stream = stores.outboxKey(second, sku: 1)
        let events = OutboxEvent.entries(stream: stream, try await stores.redis.command("XRANGE", stream, "-", "+"))
            .compactMap(\.event)
        #expect(events.map(\.kind) == [.reserve, .confirm])
        _ = try await JournalRepository(client: stores.mysql).apply(events, fences: engine.batchFences)
        try await stores.loseEverything()
        return second
    }

    /// The pool as it must end: CODE-B usable and sellable, CODE-A the second order's only, and both stores agreeing.
    func expectWhole(_ stores: TestStores) async throws {
        let item = stores.item(1)
        let usable = try await stores.redis.command("SMEMBERS", stores.keys.codes(item)).array?.compactMap(\.text) ?? []
        #expect(usable == ["CODE-B"])
        #expect(try await stores.engine.stock(item).available == 1)
        let thrown = await #expect(throws: InventoryError.self) {
            try await stores.engine.reserve(command(stores, "o-third", code: "CODE-A"))
        }
        #expect(thrown?.case == .codeUnavailable)
        let shared = try await stores.mysql.query(
            """
            SELECT a.code FROM code_assignments a JOIN reservation_journal j
              ON j.order_id = a.order_id AND j.biz_id = a.biz_id AND j.sku_id = a.sku_id AND j.reserve_event = a.reserve_event
            WHERE a.biz_id = ? AND j.status IN ('RESERVED', 'CONFIRMED') GROUP BY a.code HAVING COUNT(*) > 1
            """,
            [.string(stores.bizId)]
        ).rows
        #expect(shared.isEmpty, "no code held by two live orders")
        let report = try await stores.reconciler().run(.business(stores.bizId))
        #expect(report.differences == [])
        #expect(report.codeDifferences == [])
    }

    @Test("a cancel lost with Redis after another order took the code and confirmed: the restored order gives no code back")
    func lostCancelOfRetakenCode() async throws {
        // (A single Redis: on a cluster an item's events share its shard's stream, and are committed in order.)
        try await TestStores.with(cluster: false) { stores in
            _ = try await retakenCode(stores, first: "o-1")
            // The first order's cancel again: it comes back from the journal (RESERVED) and is cancelled. Before: it
            // came back holding CODE-A and gave it back, into the usable codes while the second order has it.
            _ = try await stores.engine.cancel(orderId: "o-1", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await expectWhole(stores)
        }
    }

    @Test("a payment for that order after the loss sells nothing: the order is cancelled (its code is another's)")
    func lateConfirmOfRetakenCode() async throws {
        try await TestStores.with(cluster: false) { stores in
            _ = try await retakenCode(stores, first: "o-1")
            // Before (with the code left out of the restored order): the confirm sold a unit without a code, MySQL
            // deducted twice for CODE-A, and CODE-B could not be sold.
            let thrown = await #expect(throws: InventoryError.self) { try await stores.engine.confirm(orderId: "o-1", bizId: stores.bizId) }
            #expect(thrown?.case == .orderClosed)
            #expect(try await stores.engine.reservation(orderId: "o-1", bizId: stores.bizId).status == .cancelled)
            #expect(try await stores.drainWithWorker())
            try await expectWhole(stores)
        }
    }

    @Test("a backorder hold made before its item got a one-time pool is still sold when paid (it never held codes)")
    func holdBeforeOneTimePoolConfirms() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 0, backorderLimit: 5))
            _ = try await engine.reserve(
                ReserveCommand(
                    orderId: "o-1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 2)], ttlSeconds: 1800,
                    shortage: .backorder
                )
            )
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            // (Only an order restored from the journal with fewer codes than units is refused: confirm.lua.)
            #expect(try await engine.confirm(orderId: "o-1", bizId: stores.bizId).reservation.status == .confirmed)
        }
    }

    @Test("a reusable pool's order restored from the journal keeps its code, which later orders share by design")
    func reusableCodeKept() async throws {
        try await TestStores.with(cluster: false) { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await engine.setPool(item, CodePool(kind: .reusable))
            _ = try await engine.loadCodes(item, ["CODE-R"])
            for orderId in ["o-1", "o-2"] {
                _ = try await engine.reserve(
                    ReserveCommand(
                        orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)], ttlSeconds: 1800,
                        shortage: .reject
                    )
                )
            }
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()
            // Read back from the journal. (With a one-time pool's rule applied to every pool, it came back without it.)
            let restored = try await engine.reservation(orderId: "o-1", bizId: stores.bizId)
            #expect(restored.lines.first?.codes == ["CODE-R"])
        }
    }

    @Test("a code two confirmed orders hold in MySQL is reported by the reconciler (MySQL's stock is below its codes left)")
    func codeSoldTwiceReported() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(item, ["CODE-A", "CODE-B"])
            for (orderId, code) in [("o-1", "CODE-A"), ("o-2", "CODE-B")] {
                _ = try await engine.reserve(command(stores, orderId, code: code))
                _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
            }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).codeDifferences == [])
            // MySQL as a code sold twice leaves it: both orders hold CODE-A, both confirms deducted the stock (0), and
            // CODE-B is used by nobody. Before, the used codes were counted per order (2) and the pool looked whole.
            _ = try await stores.mysql.query(
                "UPDATE code_assignments SET code = 'CODE-A' WHERE biz_id = ? AND order_id = ?", [.string(stores.bizId), .string("o-2")]
            )
            let report = try await stores.reconciler().run(.business(stores.bizId))
            #expect(report.codeDifferences.map(\.detail) == ["MySQL: stock 0 but 2 codes of which 1 used"])
        }
    }
}
