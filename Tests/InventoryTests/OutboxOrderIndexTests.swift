import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The index of which outbox entries name which order (`OutboxOrderIndex`), against a real stream: entries acknowledged
/// and deleted, and a stream Redis lost and made again.
@Suite("Outbox order index")
struct OutboxOrderIndexTests {
    /// Appends an event of `order` (explicit `id`, or `*`); returns its id.
    func append(_ stores: TestStores, _ stream: String, _ order: String, id: String = "*") async throws -> StreamEntryID {
        let reply = try await stores.redis.send(["XADD", stream, id, "type", "reserve", "order", order], routingKey: stream)
        return try #require(reply.text.flatMap(StreamEntryID.init), "XADD answered \(reply)")
    }

    @Test("an order's entries, each read once; deleted ones left out; a stream made again read from its start")
    func findsTheOrdersEntries() async throws {
        try await TestStores.with { stores in
            let stream = stores.keys.outboxes[0]
            let index = OutboxOrderIndex()
            let ask = { (order: String) in try await index.entries(of: order, in: stream, redis: stores.redis) }
            #expect(try await ask("a").isEmpty, "no stream")
            let a1 = try await append(stores, stream, "a")
            let b1 = try await append(stores, stream, "b")
            let a2 = try await append(stores, stream, "a")
            #expect(try await ask("a") == [a1, a2])
            #expect(try await ask("b") == [b1])
            #expect(index.entriesRead.withLockedValue { $0 } == 3, "each entry read once")
            let a3 = try await append(stores, stream, "a")
            #expect(try await ask("a") == [a1, a2, a3])
            #expect(index.entriesRead.withLockedValue { $0 } == 4)

            // Acknowledged and deleted: the first ones go.
            _ = try await stores.redis.send(["XDEL", stream, a1.description, b1.description], routingKey: stream)
            #expect(try await ask("a") == [a2, a3])
            #expect(try await ask("b").isEmpty)

            // Redis lost the stream, and it was made again on a clock behind, then ahead: one entry below what was
            // read, one above, and fewer entries ever added than before.
            _ = try await stores.redis.send(["DEL", stream], routingKey: stream)
            let below = try await append(stores, stream, "d", id: "\(a3.milliseconds - 1)-0")
            let above = try await append(stores, stream, "e", id: "\(a3.milliseconds + 1)-0")
            #expect(try await ask("d") == [below])
            #expect(try await ask("e") == [above])
            #expect(try await ask("a").isEmpty)

            // Made again with every id below what was read.
            _ = try await stores.redis.send(["DEL", stream], routingKey: stream)
            let behind = try await append(stores, stream, "a", id: "1-1")
            #expect(try await ask("a") == [behind])
        }
    }
}
