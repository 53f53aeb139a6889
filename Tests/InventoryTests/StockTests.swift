import Foundation
import Inventory
import InventoryTestSupport
import Testing

/// Stock administration writes both stores, and refuses what would break a reservation.
@Suite("Stock administration on real Redis and MariaDB")
struct StockTests {
    @Test("PUT sets on-hand in Redis and MySQL; adjustments apply once")
    func setAndAdjust() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let repository = StockRepository(client: stores.mysql)
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10, dangerNum: 3))
            #expect(try await repository.row(bizId: stores.bizId, skuId: 1)?.stock == 10)
            _ = try await engine.reserve(
                ReserveCommand(
                    orderId: "a-1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 4)],
                    ttlSeconds: 60, shortage: .reject
                )
            )
            // On-hand 10 with 4 reserved: setting 20 leaves 16 available.
            var level = try await engine.setStock(stores.item(1), StockSettings(stock: 20))
            #expect(level.available == 16)
            #expect(level.reserved == 4)
            #expect(level.dangerNum == 3)
            #expect(try await repository.row(bizId: stores.bizId, skuId: 1)?.stock == 20)

            await #expect(throws: InventoryError.belowReserved(reserved: 4)) {
                try await engine.setStock(stores.item(1), StockSettings(stock: 3))
            }
            let adjustment = StockAdjustment(adjustmentId: "in-1", delta: 5, reason: "inbound")
            let first = try await engine.adjustStock(stores.item(1), adjustment)
            let second = try await engine.adjustStock(stores.item(1), adjustment)
            #expect(first.replayed == false)
            #expect(second.replayed == true)
            #expect(second.level.available == 21)
            #expect(try await repository.row(bizId: stores.bizId, skuId: 1)?.stock == 25)
            await #expect(throws: InventoryError.idempotencyConflict) {
                try await engine.adjustStock(stores.item(1), StockAdjustment(adjustmentId: "in-1", delta: 6, reason: "inbound"))
            }
            await #expect(throws: InventoryError.belowReserved(reserved: 4)) {
                try await engine.adjustStock(stores.item(1), StockAdjustment(adjustmentId: "dmg-1", delta: -22, reason: nil))
            }
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 21)
            #expect(level.reserved == 4)
            #expect(try await repository.row(bizId: stores.bizId, skuId: 1)?.stock == 25)
        }
    }

    @Test("reading an item that was never set is not found")
    func unknownItem() async throws {
        try await TestStores.with { stores in
            await #expect(throws: InventoryError.notFound) { try await stores.engine.stock(stores.item(404)) }
            await #expect(throws: InventoryError.notFound) {
                try await stores.engine.adjustStock(stores.item(404), StockAdjustment(adjustmentId: "x", delta: 1, reason: nil))
            }
        }
    }
}
