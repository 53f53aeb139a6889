import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// A duplicate hold sold and forgotten by Redis too, whose order is restored from the journal: it ends where its part's
/// stream stood while the part was absent, so the restored order's events are the journal row's, whatever Redis lost.
extension RetentionRetryTests {
    /// The order's duplicate holds in MySQL, oldest first: (status, ended).
    func duplicates(_ stores: TestStores, _ order: String) async throws -> [(status: String, ended: Bool)] {
        try await stores.mysql.query(
            "SELECT status, ended_event FROM reserve_duplicates WHERE order_id = ? AND biz_id = ? ORDER BY reserve_event",
            [.string(order), .string(stores.bizId)]
        ).rows.map { ($0.string("status") ?? "", $0.string("ended_event") != nil) }
    }

    /// The earlier order confirmed, its retry after retention confirmed (a duplicate sold), committed, and forgotten.
    func soldDuplicateForgotten(_ stores: TestStores, _ order: String) async throws {
        try await endedAndForgotten(stores, order, end: .confirmed)
        _ = try await stores.engine.reserve(command(stores, order, 3))
        _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
        #expect(try await stores.drainWithWorker())
        try await forget(stores, order)
    }

    @Test("a sold duplicate forgotten with its part's stream (Redis lost the stream): the restored order's refund is the journal row's")
    func restoreAfterStreamLost() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-s"
            try await soldDuplicateForgotten(stores, order)
            _ = try await stores.redis.command("DEL", stores.outboxKey(order, sku: 1))
            _ = try await stores.engine.refund(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            // Before (the end filtered to duplicates before the stream's last id, '0-0' here): the duplicate stayed
            // open and took the refund.
            #expect(try await stores.journalRows().map(\.status) == ["REFUNDED"])
            #expect(try await duplicates(stores, order).map(\.status) == ["CONFIRMED"])
            try await expectAgree(stores, available: 7)
        }
    }

    @Test("a retry held, sold and recorded between a restore's read of the part's end and its end: it stays open and owns its refund")
    func retryBetweenEndingAndEnd() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-b"
            try await soldDuplicateForgotten(stores, order)
            try await OrderReader.$afterPartEnding.withValue({ _ in
                try await OrderReader.$afterPartEnding.withValue(nil) {
                    _ = try await engine.reserve(command(stores, order, 3))
                    _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
                    #expect(try await stores.drainWithWorker())
                }
            }) {
                _ = try await engine.refund(orderId: order, bizId: stores.bizId)
            }
            #expect(try await stores.drainWithWorker())
            // The second retry was the part Redis had when the refund came: its refund is its own.
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
            #expect(try await duplicates(stores, order).map(\.status) == ["CONFIRMED", "REFUNDED"])
            try await expectAgree(stores, available: 4)
        }
    }

    @Test("an order whose reserve's take-back left its hold to the order ('kept': it was confirmed first) is restored from its row")
    func keptMarkerRestores() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-m"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            let event = try await entries(stores, order).first?.id ?? ""
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            // A take-back of that reserve (its sync commit failed, the worker wrote its row) found the order confirmed:
            // its row stays, no undo removes it.
            _ = try await stores.redis.command("SET", stores.undoneMarkerKey(order, eventId: event, sku: 1), "kept")
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)
            // Before: taken for a row about to be removed, 503 for the marker's lifetime.
            let refunded = try await engine.refund(orderId: order, bizId: stores.bizId)
            #expect(refunded.reservation.status == .refunded)
            try await expectAgree(stores, available: 10)
        }
    }
}
