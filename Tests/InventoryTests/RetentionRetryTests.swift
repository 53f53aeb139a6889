import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// A reserve retried after everything Redis kept of its order ran out (the order hash and its de-duplication keys,
/// a retention period after the order ended): Redis holds it as a new order, and the worker finds the journal's row
/// of the earlier reserve (the de-duplication of last resort) and takes the new hold back. A hold confirmed before
/// that (a dispense is confirmed at once) was told to its client as sold: the journal records it as a sale of its
/// own, beside the earlier order's row, so MySQL and Redis agree and no unit or code is sold twice.
@Suite("Retries after retention")
struct RetentionRetryTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64, dispense: Bool = false) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject, dispense: dispense
        )
    }

    /// Every key naming the order runs out, as their TTLs do a retention period after the order ended.
    func forget(_ stores: TestStores, _ orderId: String) async throws {
        let names = try await stores.keys(matching: "*\(KeyLayout.globEscaped(orderId))*")
        #expect(!names.isEmpty)
        for key in names { _ = try await stores.redis.command("DEL", key) }
    }

    func expectAgree(_ stores: TestStores, available: Int64) async throws {
        try await RebuildDrainTests().expectAgree(stores, available: available, reserved: 0, mysql: available)
    }

    /// The order's first reserve, ended as `end` says and committed, then forgotten by Redis.
    func endedAndForgotten(_ stores: TestStores, _ order: String, end: ReservationStatus) async throws {
        let engine = stores.engine
        _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
        _ = try await engine.reserve(command(stores, order, 3))
        switch end {
        case .confirmed: _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
        case .cancelled: _ = try await engine.cancel(orderId: order, bizId: stores.bizId)
        default: Issue.record("not an end this test makes: \(end)")
        }
        #expect(try await stores.drainWithWorker())
        try await forget(stores, order)
    }

    @Test("a confirmed order's reserve retried after retention and confirmed at once: both sales in both stores")
    func confirmedRetryConfirmed() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-c"
            try await endedAndForgotten(stores, order, end: .confirmed)
            guard case .created = try await stores.engine.reserve(command(stores, order, 3)) else {
                Issue.record("Redis remembered the order")
                return
            }
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            // Before: Redis 4 (two sales), MySQL 7 (the retry's confirm was taken for the first one's).
            try await expectAgree(stores, available: 4)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }

    @Test("a confirmed order's retry after retention, confirmed and refunded before the worker: nothing sold twice or given back twice")
    func confirmedRetryRefunded() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-f"
            try await endedAndForgotten(stores, order, end: .confirmed)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            _ = try await stores.engine.refund(orderId: order, bizId: stores.bizId)
            // Before: MySQL 10 (the retry's refund taken for a refund of the first order's sale), Redis 7.
            try await expectAgree(stores, available: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }

    @Test("a cancelled order's retry after retention, confirmed before the worker: one sale, and the cancelled row stays")
    func cancelledRetryConfirmed() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-k"
            try await endedAndForgotten(stores, order, end: .cancelled)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            try await expectAgree(stores, available: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CANCELLED"])
            // The sale is the retry's, in the ledger under its own reserve event.
            let sources = try await stores.mysql.query(
                "SELECT source FROM stock_ledger WHERE biz_id = ? AND reason = 'confirm'", [.string(stores.bizId)]
            ).rows.compactMap { $0.string("source") }
            #expect(sources.count == 1)
            #expect(sources.allSatisfy { $0.hasPrefix("confirm:\(order):\(stores.bizId):1:") })
        }
    }

    @Test("a retry after retention taken back before its confirm: the confirm and a refund are the earlier order's")
    func retryTakenBackThenRefunded() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-b"
            try await endedAndForgotten(stores, order, end: .confirmed)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            #expect(try await stores.drainWithWorker())
            // Taken back: the order is the journal's again.
            let confirmed = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            #expect(confirmed.replayed)
            _ = try await stores.engine.refund(orderId: order, bizId: stores.bizId)
            try await expectAgree(stores, available: 10)
            #expect(try await stores.journalRows().map(\.status) == ["REFUNDED"])
        }
    }
}
