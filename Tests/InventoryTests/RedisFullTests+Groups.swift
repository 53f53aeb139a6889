import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

extension RedisFullTests {
    /// On a Redis of the test's own (`noeviction`, room for now): item 1 of stock 10, order "a" holding 3 of it, its
    /// reserve written back.
    func withHoldWrittenBack(_ body: @escaping @Sendable (TestStores) async throws -> Void) async throws {
        let redis = try await TestRedisServer.start(["--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        try await TestStores.with(redisPort: redis.port, cluster: false) { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await stores.engine.reserve(command(stores, "a", 3))
            #expect(try await stores.drainWithWorker())
            try await body(stores)
        }
    }

    /// Redis lost an outbox stream with its consumer group, then filled up; a confirm (which runs when Redis is full)
    /// appends to the stream again, which makes it without the group. Found by the model check (seed 790001, sync):
    /// the worker's XGROUP CREATE was refused for memory, so the stream was never read while Redis stayed full.
    @Test("a stream made again while Redis is full gets its consumer group, and is written back")
    func groupMadeWhenFull() async throws {
        try await withHoldWrittenBack { stores in
            let engine = stores.engine
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

    /// Redis lost its drain marks (it went back in time, or lost everything) and is full: the check finds it behind,
    /// forgets what it has and raises the marks to MySQL's. The raise was a plain SET, refused while Redis is full: the
    /// worker's every pass failed there (nothing written back), and confirms, cancels and refunds, which meet the
    /// check through their floors, answered 503 (found by a reviewer of `groupMadeWhenFull`).
    @Test("Redis full and behind: the check forgets and raises the drain marks to MySQL's")
    func wentBackWhenFull() async throws {
        try await withHoldWrittenBack { stores in
            let engine = stores.engine
            let journal = JournalRepository(client: stores.mysql)
            let mysql = try await journal.drainMarkCounts(stores.keys.drainMarks)
            try #require(mysql.values.contains { $0 > 0 })
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "1")
            for key in stores.keys.drainMarks + [stores.keys.drainSequence].compactMap({ $0 }) {
                _ = try await stores.redis.command("DEL", key)
            }
            let behind = try await engine.forgetIfWentBack(journal: journal)
            #expect(Set(behind) == Set(mysql.filter { $0.value > 0 }.keys))
            for (mark, value) in mysql where value > 0 {
                #expect(try await stores.redis.command("GET", mark).int == value, "\(mark) raised to MySQL's")
            }
            #expect(try await engine.forgetIfWentBack(journal: journal) == [], "not behind any more")
            _ = try await stores.redis.command("CONFIG", "SET", "maxmemory", "0")
        }
    }
}
