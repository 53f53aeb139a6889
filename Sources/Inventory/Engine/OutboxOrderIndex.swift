import NIOConcurrencyHelpers
import RedisClient

/// An outbox entry's id (`ms-seq`), ordered as the stream orders them.
struct StreamEntryID: Comparable, Hashable, Sendable, CustomStringConvertible {
    let milliseconds: UInt64
    let sequence: UInt64

    static let zero = StreamEntryID(milliseconds: 0, sequence: 0)

    init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let milliseconds = UInt64(parts[0]), let sequence = UInt64(parts[1]) else { return nil }
        self.init(milliseconds: milliseconds, sequence: sequence)
    }

    var description: String { "\(milliseconds)-\(sequence)" }

    static func < (lhs: StreamEntryID, rhs: StreamEntryID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }
}

/// Which entries of each outbox stream name which order, as this instance has read them so far. Before the journal
/// is asked about an order Redis does not know (the day after a Redis data loss every reserve of a new order asks), the
/// order's events still in the outbox are applied; finding them by reading the whole stream each time cost every such
/// reserve the whole backlog (n reserves behind a backlog of n entries read n² entries, and the service crawled while
/// the worker lagged). Here each question reads only what was appended since the last one, and then the order's own
/// entries by id, so only entries still in the stream (not yet acknowledged) are applied.
final class OutboxOrderIndex: Sendable {
    private struct Indexed {
        /// Counts the times the stream was found made again: a read begun before is not merged.
        var generation = 0
        /// Every entry up to this id has been read (entries come in id order).
        var through = StreamEntryID.zero
        /// The entries the stream had ever added when last read (XINFO STREAM's `entries-added`): fewer now means the
        /// stream was made again (Redis lost it), and what was read of it is dropped.
        var added: Int64 = 0
        /// Entry ids by order name.
        var byOrder: [String: [StreamEntryID]] = [:]
        var count = 0
    }

    private let streams = NIOLockedValueBox<[String: Indexed]>([:])
    /// Outbox entries this instance read outside the worker so far (the index's reads, an order's entries by id, an
    /// item rebuild's scan), for tests.
    let entriesRead = NIOLockedValueBox(0)

    /// The ids of `orderName`'s entries still in `stream` as of now, in stream order (some may be acknowledged and
    /// gone by the time the caller reads them, which it then finds missing). One round trip when the stream is as it
    /// was: what was appended since the last question, read beside the stream's summary.
    func entries(of orderName: String, in stream: String, redis: any RedisRouter) async throws -> [StreamEntryID] {
        // A stream made again while this read: read again (what was read of the old one is not merged).
        for _ in 0..<5 {
            let known = streams.withLockedValue { $0[stream] } ?? Indexed()
            async let summary = redis.send(["XINFO", "STREAM", stream], routingKey: stream)
            async let appended = read(stream, after: known.through, redis: redis)
            let info = try await summary
            let read = try await appended
            if let message = info.errorMessage {
                guard message.contains("no such key") else { throw RedisError(.server, "XINFO STREAM \(stream): \(message)") }
                // No stream: nothing of any order is pending in it.
                drop(stream, generation: known.generation)
                return []
            }
            let fields = Self.fields(of: info)
            let added = fields["entries-added"]?.int ?? 0
            let last = fields["last-generated-id"]?.text.flatMap(StreamEntryID.init) ?? .zero
            // Made again since (Redis lost it): fewer entries ever added, or its ids below what was read.
            if added < known.added || last < known.through {
                drop(stream, generation: known.generation)
                continue
            }
            let first = fields["first-entry"]?.array?.first?.text.flatMap(StreamEntryID.init)
            let length = Int(fields["length"]?.int ?? 0)
            if let ids = merge(read, into: stream, generation: known.generation, added: added, first: first, length: length, orderName: orderName) {
                return ids
            }
        }
        throw RedisError(.server, "outbox stream \(stream) kept being made again while it was read")
    }

    /// Forgets what was read of `stream` (of its generation `generation`: not again if another question did).
    private func drop(_ stream: String, generation: Int) {
        streams.withLockedValue { streams in
            let current = streams[stream]?.generation ?? 0
            if current == generation { streams[stream] = Indexed(generation: generation + 1) }
        }
    }

    /// Adds the entries read after what the index has of the stream (another question may have merged some of them
    /// first), drops acknowledged ones once the index holds twice what the stream does, and returns the ids of
    /// `orderName`'s entries still in the stream; nil when the stream was found made again meanwhile.
    private func merge(
        _ read: [(id: String, event: OutboxEvent?)], into stream: String, generation: Int, added: Int64,
        first: StreamEntryID?, length: Int, orderName: String
    ) -> [StreamEntryID]? {
        streams.withLockedValue { streams in
            var indexed = streams[stream] ?? Indexed()
            guard indexed.generation == generation else { return nil }
            for entry in read {
                guard let id = StreamEntryID(entry.id), id > indexed.through else { continue }
                indexed.through = id
                guard let order = entry.event?.orderName else { continue }
                indexed.byOrder[order, default: []].append(id)
                indexed.count += 1
            }
            indexed.added = max(indexed.added, added)
            // Acknowledged entries are deleted: those before the stream's first are gone.
            guard let first else {
                indexed.byOrder = [:]
                indexed.count = 0
                streams[stream] = indexed
                return []
            }
            if indexed.count > max(1000, 2 * length) {
                indexed.byOrder = indexed.byOrder.compactMapValues { ids in
                    let kept = ids.filter { $0 >= first }
                    return kept.isEmpty ? nil : kept
                }
                indexed.count = indexed.byOrder.values.reduce(0) { $0 + $1.count }
            }
            streams[stream] = indexed
            return (indexed.byOrder[orderName] ?? []).filter { $0 >= first }
        }
    }

    /// The entries of `stream` after `start`, in pages.
    private func read(_ stream: String, after start: StreamEntryID, redis: any RedisRouter) async throws
        -> [(id: String, event: OutboxEvent?)]
    {
        let page = 1000
        var from = start == .zero ? "-" : "(\(start)"
        var entries: [(id: String, event: OutboxEvent?)] = []
        while true {
            let reply = try await redis.send(["XRANGE", stream, from, "+", "COUNT", String(page)], routingKey: stream)
            if let message = reply.errorMessage { throw RedisError(.server, "XRANGE \(stream): \(message)") }
            let read = OutboxEvent.entries(stream: stream, reply)
            entriesRead.withLockedValue { $0 += read.count }
            entries += read
            guard read.count == page, let last = read.last else { return entries }
            from = "(" + last.id
        }
    }

    /// XINFO STREAM's reply as a map of its fields.
    private static func fields(of reply: RedisValue) -> [String: RedisValue] {
        let items = reply.array ?? []
        var fields: [String: RedisValue] = [:]
        var index = 0
        while index + 1 < items.count {
            if let name = items[index].text { fields[name] = items[index + 1] }
            index += 2
        }
        return fields
    }
}
