import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

extension RedisFullTests {
    /// Redis lost an outbox stream with its consumer group, then filled up; a confirm (which runs when Redis is full)
    /// appends to the stream again, which makes it without the group. Found by the model check (seed 790001, sync):
    /// the worker's XGROUP CREATE was refused for memory, so the stream was never read while Redis stayed full.
    @Test("a stream made again while Redis is full gets its consumer group, and is written back")
    func groupMadeWhenFull() async throws {
        let redis = try await TestRedisServer.start(["--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        try await TestStores.with(redisPort: redis.port, cluster: false) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "a", 3))
            #expect(try await stores.drainWithWorker())
            // The streams (and their group) lost; then Redis is full.
            for stream in stores.keys.outboxes { _ = try await stores.redis.command("DEL", stream) }
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "1")
            _ = try await engine.confirm(orderId: "a", bizId: stores.bizId)
            #expect(try await engine.outboxLength() == 1)
            #expect(try await stores.drainWithWorker(within: 20), "the confirm written back while Redis is full")
            #expect(try await stores.journalRows().map { "\($0.orderId):\($0.status)" } == ["a:CONFIRMED"])
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "0")
        }
    }
}
