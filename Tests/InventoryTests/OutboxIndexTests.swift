import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The index of which outbox entries name which order (`OutboxIndex`), against a real stream: entries acknowledged
/// and deleted, and a stream Redis lost and made again.
@Suite("Outbox order index")
struct OutboxIndexTests {
    /// Appends an event of `order` (explicit `id`, or `*`); returns its id.
    func append(_ stores: TestStores, _ stream: String, _ order: String, id: String = "*") async throws -> StreamEntryID {
        let reply = try await stores.redis.send(["XADD", stream, id, "type", "reserve", "order", order], routingKey: stream)
        return try #require(reply.text.flatMap(StreamEntryID.init), "XADD answered \(reply)")
    }

    @Test("an order's entries, each read once; deleted ones left out; a stream made again read from its start")
    func findsTheOrdersEntries() async throws {
        try await TestStores.with { stores in
            let stream = stores.keys.outboxes[0]
            let index = OutboxIndex()
            let ask = { (order: String) in try await index.entries(of: .order(order), in: stream, redis: stores.redis) }
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

    @Test("questions at once read a backlog once, past pages of 1,000")
    func concurrentQuestionsReadOnce() async throws {
        try await TestStores.with { stores in
            let stream = stores.keys.outboxes[0]
            _ = try await stores.redis.send(
                [
                    "EVAL",
                    "for i = 1, 2500 do redis.call('XADD', KEYS[1], '*', 'type', 'reserve', 'order', 'o-' .. (i % 50)) end",
                    "1", stream,
                ], routingKey: stream
            )
            let index = OutboxIndex()
            let found = try await withThrowingTaskGroup(of: Int.self) { group in
                for order in 0..<20 {
                    group.addTask { try await index.entries(of: .order("o-\(order)"), in: stream, redis: stores.redis).count }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(found == Array(repeating: 50, count: 20))
            #expect(index.entriesRead.withLockedValue { $0 } == 2500, "the backlog read once, not by every question")
        }
    }

    @Test("an entry read after the stream was seen empty is kept (the summary and the read ran in either order)")
    func entryAfterAnEmptySummaryKept() {
        var indexed = OutboxIndex.Indexed()
        let entry = StreamEntryID(milliseconds: 20, sequence: 0)
        let event = OutboxEvent.parse(
            stream: "s", id: entry.description, fields: [.string("type"), .string("reserve"), .string("order"), .string("x")]
        )
        indexed.merge([(entry.description, event)], added: 5, maxDeleted: .zero)
        // The summary saw the stream empty, its last id 10-0: everything up to it is gone, not what came after.
        let last = StreamEntryID(milliseconds: 10, sequence: 0)
        indexed.prune(keeping: { $0 > last }, length: 0)
        #expect(indexed.bySubject[.order("x")] == [entry])
        #expect(indexed.through == entry)
    }

    @Test("an order's pending events, read by id in one step: those acknowledged and deleted are not applied again")
    func ordersPendingEvents() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let command = { (order: String) in
                ReserveCommand(
                    orderId: order, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)], ttlSeconds: 600,
                    shortage: .reject
                )
            }
            for order in ["p-1", "p-2"] { _ = try await engine.reserve(command(order)) }
            _ = try await engine.confirm(orderId: "p-1", bizId: stores.bizId)
            let name = OrderRef(bizId: stores.bizId, orderId: "p-1").name
            let streams = stores.keys.outboxes(ofOrder: name)
            var events: [OutboxEvent] = []
            for stream in streams { events += try await engine.stores.pendingEvents(of: .order(name), in: stream) }
            #expect(events.map(\.kind) == [.reserve, .confirm])
            #expect(Set(events.map(\.orderName)) == [name])
            // The worker applies and deletes them: nothing left to apply.
            #expect(try await stores.drainWithWorker())
            events = []
            for stream in streams { events += try await engine.stores.pendingEvents(of: .order(name), in: stream) }
            #expect(events.isEmpty)
        }
    }

    @Test("an item's pending events past a page of 1,000 ids, each read, the earlier pages checked again")
    func itemsEventsPastAPage() async throws {
        try await TestStores.with { stores in
            let stream = stores.keys.outboxes[0]
            let item = stores.item(1)
            _ = try await stores.redis.send(
                [
                    "EVAL",
                    "for i = 1, 2500 do redis.call('XADD', KEYS[1], '*', 'type', 'reserve', 'order', ARGV[1] .. i, 'biz', ARGV[2], 'items', '1:1') end",
                    "1", stream, "\(stores.bizId)/page-", stores.bizId,
                ], routingKey: stream
            )
            let before = stores.engine.stores.outboxIndex.entriesRead.withLockedValue { $0 }
            let events = try await stores.engine.stores.pendingEvents(of: .item(item), in: stream)
            #expect(events.count == 2500)
            #expect(events.allSatisfy { $0.bizId == item.bizId && $0.lines.map(\.skuId) == [1] })
            // The index's read, the three pages, and the two earlier pages again.
            #expect(stores.engine.stores.outboxIndex.entriesRead.withLockedValue { $0 } - before == 2500 + 2500 + 2000)
        }
    }
}
