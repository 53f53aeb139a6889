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

/// What an outbox entry is looked up by: the order it names, or a stock item one of its lines moves.
enum OutboxSubject: Hashable, Sendable {
    case order(String)
    case item(StockItemID)

    /// What `event` is looked up by: its order (by its Redis name) and each item its lines move.
    static func subjects(of event: OutboxEvent) -> Set<OutboxSubject> {
        Set(event.lines.map { .item(StockItemID(bizId: event.bizId, skuId: $0.skuId)) } + [.order(event.orderName)])
    }
}

/// Which entries of each outbox stream name which order, and which move which item, as this instance has read them so
/// far. Before the journal
/// is asked about an order Redis does not know (the day after a Redis data loss every reserve of a new order asks), the
/// order's events still in the outbox are applied; finding them by reading the whole stream each time cost every such
/// reserve the whole backlog (n reserves behind a backlog of n entries read n² entries, and the service crawled while
/// the worker lagged). Here each question reads only what was appended since the one before, one question per stream
/// at a time (the first read of a backlog is made once, not by every question waiting), and the caller then reads the
/// order's entries by id (`EngineStores.pendingEvents(of:in:)`), so only entries still in the stream are applied.
/// An item's rebuild finds the events of its lines still in the streams the same way (`ItemRebuilder`).
/// A stream's index not asked about for `idleLimit` is dropped at the next question (of any stream).
final class OutboxIndex: Sendable {
    struct Indexed {
        /// Every entry up to this id has been read (entries come in id order).
        var through = StreamEntryID.zero
        /// What XINFO STREAM said of the stream when last read: fewer entries ever added (`entries-added`), or a lower
        /// `max-deleted-entry-id`, means the stream was made again (Redis lost it); so do ids below `through`.
        var added: Int64 = 0
        var maxDeleted = StreamEntryID.zero
        /// Entry ids by the order they name and by the items their lines move.
        var bySubject: [OutboxSubject: [StreamEntryID]] = [:]
        /// Entries held (each under its order and its items): about, after a prune.
        var entries = 0
        /// Ids held, all subjects together.
        var ids = 0
        var lastAsked = ContinuousClock.now

        /// Adds the entries read after what is held (in id order).
        mutating func merge(_ read: [(id: String, event: OutboxEvent?)], added: Int64, maxDeleted: StreamEntryID) {
            for entry in read {
                guard let id = StreamEntryID(entry.id), id > through else { continue }
                through = id
                guard let event = entry.event else { continue }
                let subjects = OutboxSubject.subjects(of: event)
                for subject in subjects { bySubject[subject, default: []].append(id) }
                ids += subjects.count
                entries += 1
            }
            self.added = max(self.added, added)
            self.maxDeleted = max(self.maxDeleted, maxDeleted)
        }

        /// Drops the ids of entries no longer in the stream: below `first` (acknowledged entries are deleted), or up
        /// to `last` when the stream was empty. Only once it holds twice the entries the stream does (or the stream was
        /// empty): the pass costs the whole index.
        mutating func prune(keeping kept: (StreamEntryID) -> Bool, length: Int) {
            guard length == 0 || entries > max(1000, 2 * length) else { return }
            bySubject = bySubject.compactMapValues { ids in
                let left = ids.filter(kept)
                return left.isEmpty ? nil : left
            }
            let before = max(ids, 1)
            ids = bySubject.values.reduce(0) { $0 + $1.count }
            entries = entries * ids / before
        }
    }

    /// What the index holds of a stream not asked about this long is dropped.
    static let idleLimit = Duration.seconds(300)

    private let streams = NIOLockedValueBox<[String: Indexed]>([:])
    /// One question per stream at a time.
    private let gate = StreamGate()
    /// Outbox entries this instance read outside the worker so far (the index's reads, then an order's or an item's
    /// entries by id), for tests.
    let entriesRead = NIOLockedValueBox(0)

    /// The ids of the entries of `subject` still in `stream` as of now, in stream order (some may be acknowledged and
    /// gone by the time the caller reads them, which it then finds missing). One round trip when the stream is as it
    /// was: what was appended since the last question, read beside the stream's summary.
    func entries(of subject: OutboxSubject, in stream: String, redis: any RedisRouter) async throws -> [StreamEntryID] {
        await gate.enter(stream)
        defer { Task { await gate.leave(stream) } }
        dropIdle(besides: stream)
        // Marked asked before anything is read, in the same step as the snapshot: a question on another stream now
        // never drops this one while its read is under way. (Scalars only: a copy of the ids kept across the reads
        // would make the merge below copy them all.)
        let known = streams.withLockedValue { streams -> (through: StreamEntryID, added: Int64, maxDeleted: StreamEntryID) in
            streams[stream]?.lastAsked = .now
            guard let indexed = streams[stream] else { return (.zero, 0, .zero) }
            return (indexed.through, indexed.added, indexed.maxDeleted)
        }
        async let summary = redis.send(["XINFO", "STREAM", stream], routingKey: stream)
        async let appended = read(stream, after: known.through, redis: redis)
        let info = try await summary
        var read = try await appended
        // Whether `read` is the whole stream.
        var whole = known.through == .zero
        if let message = info.errorMessage {
            guard message.contains("no such key") else { throw RedisError(.server, "XINFO STREAM \(stream): \(message)") }
            // No stream: nothing of any order is pending in it.
            streams.withLockedValue { $0[stream] = nil }
            return []
        }
        let fields = Self.fields(of: info)
        let added = fields["entries-added"]?.int ?? 0
        let last = fields["last-generated-id"]?.text.flatMap(StreamEntryID.init) ?? .zero
        let maxDeleted = fields["max-deleted-entry-id"]?.text.flatMap(StreamEntryID.init) ?? .zero
        let first = fields["first-entry"]?.array?.first?.text.flatMap(StreamEntryID.init)
        let length = Int(fields["length"]?.int ?? 0)
        if added < known.added || last < known.through || maxDeleted < known.maxDeleted {
            // Made again since (Redis lost it): what was read of the old one goes, the new one is read from its start.
            streams.withLockedValue { $0[stream] = nil }
            read = try await self.read(stream, after: .zero, redis: redis)
            whole = true
        }
        // Still in the stream: from its first entry on; when it was empty, what came after its last id (the read may
        // have run after the summary and found entries appended since).
        let kept: @Sendable (StreamEntryID) -> Bool = { id in first.map { id >= $0 } ?? (id > last) }
        // Dropped meanwhile (it cannot be while this question holds the stream's gate and has marked it asked; should it
        // be all the same): what was read after `known.through` is not the whole stream, which is read again.
        if !whole, streams.withLockedValue({ $0[stream] == nil }) {
            read = try await self.read(stream, after: .zero, redis: redis)
        }
        return streams.withLockedValue { streams in
            // In place: the dictionary's value is not copied.
            streams[stream, default: Indexed()].merge(read, added: added, maxDeleted: maxDeleted)
            streams[stream]?.prune(keeping: kept, length: length)
            streams[stream]?.lastAsked = .now
            return (streams[stream]?.bySubject[subject] ?? []).filter(kept)
        }
    }

    /// Drops what is held of the streams other than `stream` not asked about for `idleLimit`.
    private func dropIdle(besides stream: String) {
        let now = ContinuousClock.now
        streams.withLockedValue { streams in
            for (name, indexed) in streams where name != stream && now - indexed.lastAsked > Self.idleLimit {
                streams[name] = nil
            }
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

/// One holder per name at a time, the others waiting in line (`OutboxIndex`: one question per stream).
actor StreamGate {
    private var held: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func enter(_ name: String) async {
        guard held.contains(name) else {
            held.insert(name)
            return
        }
        await withCheckedContinuation { waiting[name, default: []].append($0) }
    }

    /// Hands the name to the next in line, or frees it.
    func leave(_ name: String) {
        if var line = waiting[name], !line.isEmpty {
            let next = line.removeFirst()
            waiting[name] = line.isEmpty ? nil : line
            next.resume()
        } else {
            held.remove(name)
        }
    }
}
