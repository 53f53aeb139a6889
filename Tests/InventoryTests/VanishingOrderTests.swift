import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// An order's hash vanishes alone (an operator's DEL, a key lost) while its events still wait in the outbox and its
/// holds are still counted: the order comes back from the journal after what the outbox has of it is applied
/// (found by the model check, issue 18).
@Suite("Orders that vanish")
struct VanishingOrderTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    func deleteOrder(_ stores: TestStores, _ orderId: String) async throws {
        _ = try await stores.redis.command("DEL", stores.orderKey(orderId, sku: 1))
    }

    func expectAgree(_ stores: TestStores, available: Int64, reserved: Int64, mysql: Int64) async throws {
        try await RebuildDrainTests().expectAgree(stores, available: available, reserved: reserved, mysql: mysql)
    }

    @Test("a confirm after the order's hash is gone, its reserve still in the outbox, sells the hold")
    func confirmAfterHashDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-c"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            try await deleteOrder(stores, order)

            let confirmed = try await engine.confirm(orderId: order, bizId: stores.bizId)
            #expect(confirmed.reservation.status == .confirmed)
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }

    @Test("a reserve retried after the order's hash is gone is a replay, not a second hold")
    func retryAfterHashDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-r"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            try await deleteOrder(stores, order)

            guard case .replayed(let again) = try await engine.reserve(command(stores, order, 3)) else {
                Issue.record("held a second time")
                return
            }
            #expect(again.status == .reserved)
            try await expectAgree(stores, available: 7, reserved: 3, mysql: 10)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])
        }
    }

    /// The item's rollback key is what refuses the retry while the order's hash is gone (reserve.lua looks for it
    /// and for the reserve key with one EXISTS, then asks which).
    @Test("a reserve retried after a cancelled order's hash is gone is refused as cancelled, holding nothing", arguments: [false, true])
    func retryAfterCancelledHashDeleted(drained: Bool) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-k"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            _ = try await engine.cancel(orderId: order, bizId: stores.bizId)
            if drained { #expect(try await stores.drainWithWorker()) }
            try await deleteOrder(stores, order)

            await #expect(throws: InventoryError.orderClosed(.cancelled)) {
                try await engine.reserve(command(stores, order, 3))
            }
            #expect(try await stores.drainWithWorker())
            try await expectAgree(stores, available: 10, reserved: 0, mysql: 10)
        }
    }

    @Test("a cancel after a confirmed order's hash is gone, the confirm still in the outbox, is refused")
    func cancelAfterConfirmedHashDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-x"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            #expect(try await stores.drainWithWorker())
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            try await deleteOrder(stores, order)

            await #expect(throws: InventoryError.invalidState(.confirmed)) { try await engine.cancel(orderId: order, bizId: stores.bizId) }
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
            #expect(try await stores.journalRows().map(\.status) == ["CONFIRMED"])
        }
    }
}
