import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

extension RedisFullTests {
    @Test("a code upload while Redis is full is refused with nothing changed; the item stays and its holds settle")
    func codeUploadWhenFull() async throws {
        let redis = try await TestRedisServer.start(["--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        try await TestStores.with(redisPort: redis.port, cluster: false) { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(item, ["A", "B", "C"])
            _ = try await engine.reserve(command(stores, "a", 1))
            #expect(try await stores.drainWithWorker())

            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "1")
            await expectFull("a code upload") { _ = try await engine.loadCodes(item, ["N"]) }
            // Before: MySQL recorded N, Redis refused it, and the item was dropped, which could not be rebuilt while
            // Redis was full: the paid order's confirm answered 503.
            let recorded = try await stores.mysql.query(
                "SELECT COUNT(*) AS n FROM codes WHERE biz_id = ? AND sku_id = 1", [.string(stores.bizId)]
            ).rows.first?.int64("n")
            #expect(recorded == 3, "nothing recorded in MySQL")
            _ = try await engine.confirm(orderId: "a", bizId: stores.bizId)

            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "0")
            #expect(try await engine.loadCodes(item, ["N"]) == CodeLoadOutcome(added: 1, duplicates: 0))
            #expect(try await stores.drainWithWorker())
            #expect(try await engine.unusedCodes(item).count == 3)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
