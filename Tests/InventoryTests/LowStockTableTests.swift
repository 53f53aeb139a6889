import Foundation
import InventoryTestSupport
import Testing

@testable import Inventory

/// The bounded table of items seen low (status pages, `inventory_low_stock_*`): slots come back, per business.
@Suite("Low-stock table")
struct LowStockTableTests {
    @Test("an item gone from Redis gives its slot back when its business's status is read (it no longer holds one of the 100)")
    func goneItemFreesItsSlot() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 0))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 0))
            #expect(Set(InventoryMetrics.lowStockItems(of: stores.bizId)) == [stores.item(1), stores.item(2)])
            // Item 1's hash goes (its TTL, a deletion): before, it kept its slot (and its gauges) for good.
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            let low = try await engine.lowStock(of: stores.bizId, limit: 100)
            #expect(low.levels.map(\.item) == [stores.item(2)])
            #expect(InventoryMetrics.lowStockItems(of: stores.bizId) == [stores.item(2)])
            // Seen low again once it is back: tracked again.
            #expect(try await engine.stock(stores.item(1)).available == 0)
            #expect(Set(InventoryMetrics.lowStockItems(of: stores.bizId)) == [stores.item(1), stores.item(2)])
            for sku: UInt64 in [1, 2] { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            #expect(InventoryMetrics.lowStockItems(of: stores.bizId).isEmpty)
        }
    }
}
