import Foundation
@testable import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// What keeps a stream to one reader when workers stall or share a name.
extension WriteBackTests {
    /// Runs `body` with a worker whose commands (its client's and its reader's) go through a fault proxy to one Redis;
    /// `prepare` arms the proxy before the worker exists. Returns the worker, stopped, for its stats.
    @discardableResult
    func withProxiedWorker(
        _ stores: TestStores, prepare: (FaultProxy) -> Void = { _ in },
        _ body: @Sendable (WriteBackWorker, FaultProxy) async throws -> Void
    ) async throws -> WriteBackWorker {
        let address = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: address.host, upstreamPort: address.port)
        let proxied = RedisConfiguration(
            host: address.host, port: proxy.port, connections: 1, database: TestStores.redisTestDatabase()
        )
        let redis = RedisClient(configuration: proxied, logger: stores.logger)
        prepare(proxy)
        let worker = stores.worker(redis: redis, readerConfiguration: proxied)
        do {
            try await withWorker(worker) { try await body(worker, proxy) }
        } catch {
            await redis.shutdown()
            await proxy.close()
            throw error
        }
        await redis.shutdown()
        await proxy.close()
        return worker
    }

    @Test("a read that reaches Redis after the worker lost its leases reads nothing of their streams")
    func readAfterLeaseLostReadsNothing() async throws {
        try await TestStores.with { stores in
            // (The worker's commands go through a proxy to one Redis.)
            guard !stores.keys.clustered else { return }
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            let worker = try await withProxiedWorker(stores) { worker, proxy in
                try await waitFor("the worker reads every stream", within: .seconds(20)) {
                    worker.streams.count == stores.keys.outboxes.count
                }
                // The worker's next read of new entries (its argument `>`) stalls on the way to Redis ...
                proxy.holdRequest(containing: "$1\r\n>\r\n")
                try await waitFor("a read held", within: .seconds(20)) { proxy.isHolding }
                // ... while its leases run out and another worker takes every stream, and an order comes in.
                for stream in stores.keys.outboxes {
                    let lease = KeyLayout.streamLease(stream)
                    _ = try await stores.redis.send(["SET", lease, "other", "PX", "60000"], routingKey: lease)
                }
                _ = try await reserve(stores, "fenced-1", [(1, 1)])
                proxy.release()
                try await waitFor("the worker gives the streams up", within: .seconds(20)) { worker.streams.isEmpty }
            }
            // The order's reserve is still there for the stream's holder to read. Before: the stalled read delivered
            // it to the worker that had lost the stream, which applied it.
            var readByHolder = 0
            for stream in stores.keys.outboxes {
                let read = try await stores.redis.send(
                    ["XREADGROUP", "GROUP", WriteBackConfiguration().group, "other", "COUNT", "100", "STREAMS", stream, ">"],
                    routingKey: stream
                )
                readByHolder += read.array?.first?.array?[safe: 1]?.array?.count ?? 0
            }
            #expect(readByHolder == 1)
            #expect(try await stores.journalRows().isEmpty)
            #expect(worker.stats.lostStreams == stores.keys.outboxes.count, "the read said which streams it lost")
        }
    }

    @Test("a take-over's claim that reaches Redis after the worker lost the lease claims nothing")
    func claimAfterLeaseLostClaimsNothing() async throws {
        try await TestStores.with { stores in
            // (The worker's commands go through a proxy to one Redis.)
            guard !stores.keys.clustered else { return }
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            for order in ["claimed-1", "claimed-2"] { _ = try await reserve(stores, order, [(1, 1)]) }
            // A worker read both reserves and stopped; its leases run out in a moment, and this worker takes them over.
            try #require(try await ghostRead(stores, leaseHolder: "stopped", milliseconds: 500) == 2)
            // The take-over's claim stalls on the way to Redis (the first request naming XAUTOCLAIM: the command, or
            // the source of the script that runs it) ...
            try await withProxiedWorker(stores, prepare: { $0.holdRequest(containing: "XAUTOCLAIM") }) { worker, proxy in
                try await waitFor("the take-over's claim held", within: .seconds(20)) { proxy.isHolding }
                // ... while the leases go to another worker.
                for stream in stores.keys.outboxes {
                    let lease = KeyLayout.streamLease(stream)
                    _ = try await stores.redis.send(["SET", lease, "other", "PX", "60000"], routingKey: lease)
                }
                proxy.release()
                try await waitFor("the worker gives the streams up", within: .seconds(20)) { worker.streams.isEmpty }
            }
            // Both reserves are still pending on the stopped consumer, for the new holder to claim. Before: the late
            // claim moved them to a worker that could no longer read the stream.
            var owners: [String] = []
            for stream in stores.keys.outboxes {
                let pending = try await stores.redis.send(
                    ["XPENDING", stream, WriteBackConfiguration().group, "-", "+", "100"], routingKey: stream
                )
                owners += (pending.array ?? []).compactMap { $0.array?[safe: 1]?.text }
            }
            #expect(owners == ["ghost", "ghost"])
            #expect(try await stores.journalRows().isEmpty)
        }
    }

    @Test("two workers given one consumer name hold different streams")
    func sharedConsumerNameSplitsStreams() async throws {
        try await TestStores.with { stores in
            let first = stores.worker(consumer: "same")
            let second = stores.worker(consumer: "same")
            try await withWorker(first) {
                try await withWorker(second) {
                    // Before: both took every lease as their own (the leases knew workers by name) and read every
                    // stream at once.
                    try await waitFor("the streams split between the two", within: .seconds(30)) {
                        let one = Set(first.streams)
                        let other = Set(second.streams)
                        return one.isDisjoint(with: other) && one.union(other).count == stores.keys.outboxes.count
                            && !one.isEmpty && !other.isEmpty
                    }
                }
            }
        }
    }
}
