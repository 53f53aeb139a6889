import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The first request that meets a Redis gone back finds it out (lua/lib/floor.lua): an instance that has seen a drain
/// mark handed out knows MySQL's value is at least that, and its scripts check Redis's mark against it before they
/// decide anything. Before, clients acted on the old Redis until the write-back worker's check a second later.
extension RedisWentBackTests {
    @Test("a cancel right after it of an order confirmed since is refused: nothing is given back twice")
    func cancelRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-paid"
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, order, 3))
            #expect(try await stores.drainWithWorker())
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)

            // No worker's check: the cancel is the first to meet the old Redis, whose order is still held.
            await #expect(throws: InventoryError.invalidState(.confirmed)) {
                try await engine.cancel(orderId: order, bizId: stores.bizId)
            }
            #expect(try await engine.reservation(orderId: order, bizId: stores.bizId).status == .confirmed)
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
        }
    }

    @Test("a reserve right after it does not sell the units MySQL knows are held")
    func reserveRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await oneHoldRecorded(stores)
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-b", 8))
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)

            // The old Redis has 9 available; MySQL has 1 + 8 held of 10.
            do {
                _ = try await engine.reserve(command(stores, "\(stores.bizId)-c", 5))
                Issue.record("c was held on the old Redis's counts")
            } catch InventoryError.insufficientStock(let lines) {
                #expect(lines.map(\.available) == [1])
            }
            #expect(try await stores.drainWithWorker())
            try await expectAgree(stores, available: 1, reserved: 9, mysql: 10)
        }
    }

    @Test("a PUT right after it is applied to MySQL's stock, not refused")
    func putRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await oneHoldRecorded(stores)
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 25))
            try await stores.sendRedisBack(to: snapshot)

            // The instance that made the PUT of 25 knows the old Redis is behind before its Redis half runs.
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 30))
            try await expectAgree(stores, available: 29, reserved: 1, mysql: 30)
        }
    }
}
