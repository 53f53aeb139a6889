import Foundation
import Inventory
import InventoryBaseline
import InventoryTestSupport
import Testing

/// The database-only baseline must be a fair opponent: correct, idempotent, no oversell.
@Suite("Database-only engine (baseline)")
struct DatabaseOnlyEngineTests {
    @Test("reserve, replay, confirm, cancel; 200 concurrent reserves of 1 on stock 50 hold exactly 50")
    func behaves() async throws {
        try await TestStores.with { stores in
            let engine = DatabaseOnlyEngine(mysql: stores.mysql)
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 50))
            // Order ids are global, like the Redis engine's: this test's are made unique by its business id.
            func command(_ order: String, _ quantity: Int64) -> ReserveCommand {
                ReserveCommand(
                    orderId: "\(stores.bizId)-\(order)", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
                    ttlSeconds: 60, shortage: .reject
                )
            }
            guard case .created = try await engine.reserve(command("a", 3)),
                case .replayed = try await engine.reserve(command("a", 3))
            else {
                Issue.record("expected created, then replayed")
                return
            }
            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(command("a", 4)) }
            _ = try await engine.confirm(orderId: "\(stores.bizId)-a", bizId: stores.bizId)
            _ = try await engine.reserve(command("b", 2))
            _ = try await engine.cancel(orderId: "\(stores.bizId)-b", bizId: stores.bizId)
            #expect(try await engine.cancel(orderId: "\(stores.bizId)-b", bizId: stores.bizId).replayed)
            var level = try await engine.stock(item)
            #expect(level.available == 47)
            #expect(level.reserved == 0)

            let held = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        do {
                            _ = try await engine.reserve(command("c\(index)", 1))
                            return true
                        } catch InventoryError.insufficientStock {
                            return false
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(held == 47)
            level = try await engine.stock(item)
            #expect(level.available == 0)
            #expect(level.reserved == 47)
            await #expect(throws: InventoryError.unknownItems([9])) {
                try await engine.reserve(
                    ReserveCommand(orderId: "\(stores.bizId)-u", bizId: stores.bizId, userId: nil, items: [.init(skuId: 9, quantity: 1)], ttlSeconds: 60, shortage: .reject)
                )
            }
        }
    }
}
