import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Orders in parts on the cluster where a part holds nothing or Redis lost the order (found by the model check on
/// the cluster, issue 18).
@Suite("Cluster orders: empty parts and restored directories")
struct ClusterPartsTests {
    @Test("partial mode over two masters, one item sold out: held on the other, the empty line answered with 0")
    func partialWithEmptyPart() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(skus[1]), StockSettings(stock: 0))
            let order = ReserveCommand(
                orderId: "\(stores.bizId)-p", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 3), .init(skuId: skus[1], quantity: 2)], ttlSeconds: 600,
                shortage: .partial
            )
            guard case .created(let held) = try await engine.reserve(order) else {
                Issue.record("not held")
                return
            }
            #expect(held.lines.map(\.reserved).sorted() == [0, 3])
            #expect(try await engine.stock(stores.item(skus[0])).reserved == 3)
            _ = try await engine.confirm(orderId: order.orderId, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(skus[0]) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])

            // Nothing anywhere: refused, and nothing stays held.
            let none = ReserveCommand(
                orderId: "\(stores.bizId)-n", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[1], quantity: 2), .init(skuId: skus[2], quantity: 1)], ttlSeconds: 600,
                shortage: .partial
            )
            _ = try await engine.setStock(stores.item(skus[2]), StockSettings(stock: 0))
            let thrown = await #expect(throws: InventoryError.self) { try await engine.reserve(none) }
            #expect(thrown?.case == .insufficientStock)
            #expect(try await engine.stock(stores.item(skus[1])).reserved == 0)
            #expect(try await engine.stock(stores.item(skus[2])).reserved == 0)
        }
    }

    @Test("after Redis lost the order, another body naming another master's item is a conflict, holding nothing")
    func otherPartsAfterLoss() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 10)) }
            let orderId = "\(stores.bizId)-o"
            func command(_ items: [(UInt64, Int64)]) -> ReserveCommand {
                ReserveCommand(
                    orderId: orderId, bizId: stores.bizId, userId: nil,
                    items: items.map { ReserveCommand.Item(skuId: $0.0, quantity: $0.1) }, ttlSeconds: 600, shortage: .reject
                )
            }
            _ = try await engine.reserve(command([(skus[1], 2)]))
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()

            await #expect(throws: InventoryError.idempotencyConflict) {
                try await engine.reserve(command([(skus[0], 3), (skus[1], 2)]))
            }
            #expect(try await engine.stock(stores.item(skus[0])).reserved == 0)
            #expect(try await engine.stock(stores.item(skus[1])).reserved == 2)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}

extension ClusterPartsTests {
    @Test("a retry of a confirmed order of several parts is a replay of it, not 503 (model check seed 2013)")
    func retryOfConfirmedOrderOfParts() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            for sku in skus.prefix(2) { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 10)) }
            let order = ReserveCommand(
                orderId: "\(stores.bizId)-c", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 4), .init(skuId: skus[1], quantity: 4)], ttlSeconds: 600,
                shortage: .reject
            )
            _ = try await engine.reserve(order)
            _ = try await engine.confirm(orderId: order.orderId, bizId: stores.bizId)
            guard case .replayed(let again) = try await engine.reserve(order) else {
                Issue.record("not a replay")
                return
            }
            #expect(again.status == .confirmed)
            #expect(try await engine.stock(stores.item(skus[0])).available == 6)
        }
    }
}

extension ClusterPartsTests {
    @Test("a retry of a confirmed order whose part Redis lost: the part held anew is taken back, the answer is the confirmed order")
    func retryAfterPartLost() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            for sku in skus.prefix(2) { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 10)) }
            let order = ReserveCommand(
                orderId: "\(stores.bizId)-l", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 4), .init(skuId: skus[1], quantity: 3)], ttlSeconds: 600,
                shortage: .reject
            )
            _ = try await engine.reserve(order)
            _ = try await engine.confirm(orderId: order.orderId, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            // The part of the second item is lost with its hold mark (that shard's data).
            _ = try await stores.redis.command("DEL", stores.orderKey(order.orderId, sku: skus[1]))
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(skus[1]), orderId: order.orderId))

            guard case .replayed(let again) = try await engine.reserve(order) else {
                Issue.record("not a replay")
                return
            }
            #expect(again.status == .confirmed)
            #expect(try await engine.stock(stores.item(skus[1])).reserved == 0)
            #expect(try await engine.stock(stores.item(skus[1])).available == 7)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(skus[1]) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}

extension ClusterPartsTests {
    @Test("a partial order's part that held nothing, its hash deleted: the order is still found and confirmed (model check seed 200001)")
    func emptyPartLost() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 0))
            _ = try await engine.setStock(stores.item(skus[1]), StockSettings(stock: 10))
            let order = ReserveCommand(
                orderId: "\(stores.bizId)-e", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 4), .init(skuId: skus[1], quantity: 3)], ttlSeconds: 600,
                shortage: .partial
            )
            _ = try await engine.reserve(order)
            _ = try await stores.redis.command("DEL", stores.orderKey(order.orderId, sku: skus[0]))

            let confirmed = try await engine.confirm(orderId: order.orderId, bizId: stores.bizId)
            #expect(confirmed.reservation.status == .confirmed)
            #expect(confirmed.reservation.lines.map(\.reserved).reduce(0, +) == 3)
            #expect(try await engine.reservation(orderId: order.orderId, bizId: stores.bizId).status == .confirmed)
            // A retry of the same body is a replay, holding nothing on the item that had none.
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 10))
            guard case .replayed = try await engine.reserve(order) else {
                Issue.record("the retry is not a replay")
                return
            }
            #expect(try await engine.stock(stores.item(skus[0])).reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(skus[1]) == 7)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}

extension ClusterPartsTests {
    @Test("after a whole loss, the same request of a partial order whose part held nothing holds nothing there")
    func emptyPartAfterWholeLoss() async throws {
        try await TestStores.with(cluster: true) { stores in
            let skus = try await ClusterEngineTests().skusOnEveryMaster(stores)
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 0))
            _ = try await engine.setStock(stores.item(skus[1]), StockSettings(stock: 10))
            let order = ReserveCommand(
                orderId: "\(stores.bizId)-w", bizId: stores.bizId, userId: nil,
                items: [.init(skuId: skus[0], quantity: 4), .init(skuId: skus[1], quantity: 3)], ttlSeconds: 600,
                shortage: .partial
            )
            _ = try await engine.reserve(order)
            #expect(try await stores.drainWithWorker())
            try await stores.loseEverything()
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 10))
            // Refused (the restored directory does not name the part that held nothing) or a replay: never a hold.
            do {
                _ = try await engine.reserve(order)
            } catch InventoryError.idempotencyConflict {}
            #expect(try await engine.stock(stores.item(skus[0])).reserved == 0)
            #expect(try await engine.stock(stores.item(skus[1])).reserved == 3)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
