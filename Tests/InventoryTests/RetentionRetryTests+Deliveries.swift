import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// What a duplicate hold owns is decided by stream position alone: the same on every delivery of its events, in sync
/// mode's commits as in the worker's, and no longer once its order came back from the journal.
extension RetentionRetryTests {
    /// The outbox entries of the order's stream now (before a drain deletes them).
    func entries(_ stores: TestStores, _ order: String) async throws -> [OutboxEvent] {
        let stream = stores.outboxKey(order, sku: 1)
        return OutboxEvent.entries(stream: stream, try await stores.redis.command("XRANGE", stream, "-", "+"))
            .compactMap(\.event).filter { $0.orderId == order }
    }

    func apply(_ stores: TestStores, _ events: [OutboxEvent], inStreamOrder: Bool = true) async throws {
        _ = try await JournalRepository(client: stores.mysql).apply(events, fences: stores.engine.batchFences, inStreamOrder: inStreamOrder)
    }

    @Test("the retry's confirm and refund delivered again after their commit: applied once, to the retry")
    func redeliveredRefund() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-r"
            try await endedAndForgotten(stores, order, end: .confirmed)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            _ = try await stores.engine.refund(orderId: order, bizId: stores.bizId)
            let events = try await entries(stores, order)
            #expect(events.map(\.kind) == [.reserve, .confirm, .refund])
            #expect(try await stores.drainWithWorker())
            // A worker that committed and died before its acknowledgement: delivered again, alone and together.
            try await apply(stores, [events[2]])
            try await apply(stores, Array(events[1...]))
            // Before: the refund, its retry no longer open, went to the earlier order's row (MySQL 10).
            try await expectAgree(stores, available: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }

    @Test("a cancelled order's retry confirmed, committed out of stream order first (sync mode), then by the worker: one sale")
    func syncThenWorker() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-y"
            try await endedAndForgotten(stores, order, end: .cancelled)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            let events = try await entries(stores, order)
            try await apply(stores, [events[0]], inStreamOrder: false)
            try await apply(stores, [events[1]], inStreamOrder: false)
            // Before: the sync commit sold it on the cancelled row's source, the worker on the retry's: MySQL 4.
            try await expectAgree(stores, available: 7)
        }
    }

    @Test("a second retry after retention takes the code the first retry's refund gave back: it holds it")
    func secondRetryTakesCode() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-2"
            try await oneTimePool(stores, ["CODE-A", "CODE-X"])
            let (first, second) = try await dispensedTwice(stores, order)
            _ = try await engine.refund(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            #expect(dispensedCodes(try await engine.reserve(command(stores, order, 1, dispense: true))) == second)
            // Before: the second retry's code stayed the refunded first retry's, usable again after a rebuild.
            try await expectCodesAfterRebuild(stores, usable: Set(["CODE-A", "CODE-X"]).subtracting(first + second))
        }
    }

    @Test("a retry sold before the worker, then forgotten too: a refund of the order restored from the journal is the earlier order's")
    func refundAfterRestore() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-e"
            try await oneTimePool(stores, ["CODE-A", "CODE-B", "CODE-C"])
            let (first, second) = try await dispensedTwice(stores, order)
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            // The order comes back from its journal row (the first sale), and that one is refunded.
            let refunded = try await engine.refund(orderId: order, bizId: stores.bizId)
            #expect(refunded.reservation.lines.flatMap(\.codes) == first)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["REFUNDED"])
            // Before: the refund went to the retry's sale; the earlier order kept its code in MySQL, Redis had it back.
            try await expectCodesAfterRebuild(stores, usable: Set(["CODE-A", "CODE-B", "CODE-C"]).subtracting(second))
        }
    }

    @Test("a retry sold, then forgotten too: a restore whose duplicate cannot be ended restores nothing, and its retry is the earlier order's")
    func restoreEndFails() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-w"
            try await endedAndForgotten(stores, order, end: .confirmed)
            _ = try await engine.reserve(command(stores, order, 3))
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            // MySQL refuses the duplicate's end (a failure between the restore's steps).
            let trigger = "fail_end_\(stores.bizId)"
            let create = """
                CREATE TRIGGER \(trigger) BEFORE UPDATE ON reserve_duplicates FOR EACH ROW
                BEGIN IF NEW.order_id = '\(order)' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'test: no end'; END IF; END
                """
            _ = try await stores.mysql.withConnection { try $0.execute(create) }
            await #expect(throws: (any Error).self) { try await engine.refund(orderId: order, bizId: stores.bizId) }
            _ = try await stores.mysql.withConnection { try $0.execute("DROP TRIGGER \(trigger)") }
            // Before: the part was restored before its duplicate's end failed; the retry found it restored, the
            // duplicate stayed open and took the restored order's refund.
            #expect(try await stores.keys(matching: "*:order:*\(KeyLayout.globEscaped(order))*").isEmpty)
            _ = try await engine.refund(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["REFUNDED"])
            try await expectAgree(stores, available: 7)
        }
    }
}
