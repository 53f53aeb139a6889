import RedisClient

/// lua/ack.lua: the write-back worker has committed these outbox entries: acknowledged and deleted in one step.
struct AckCall: ScriptCall {
    static let name = ScriptName.ack

    let keys: [String]
    let arguments: [String]

    init(stream: String, group: String, ids: [String]) {
        keys = [stream]
        arguments = [group] + ids
    }

    /// How many entries were deleted.
    static func decode(_ value: RedisValue) throws -> Int64 {
        guard let deleted = value.int else { throw unexpected(value) }
        return deleted
    }
}

/// lua/applied.lua: a confirm or refund line the worker committed is no longer counted as in flight, once per line.
struct AppliedCall: ScriptCall {
    static let name = ScriptName.applied

    let keys: [String]
    let arguments: [String]

    /// `epoch`: the item's when the line was made (an item rebuilt since has nothing to correct).
    init(_ id: StockItemID, orderId: String, kind: OutboxEvent.Kind, quantity: Int64, epoch: String, retentionSeconds: Int, layout: KeyLayout) {
        keys = [layout.item(id), layout.appliedMarker(id, orderId: orderId, kind: kind.rawValue)]
        arguments = [
            kind == .refund ? "refund_unapplied" : "confirmed_unapplied", String(quantity), String(retentionSeconds), epoch,
        ]
    }

    /// Whether the counter moved now (false: the line was counted before).
    static func decode(_ value: RedisValue) throws -> Bool {
        guard let moved = value.int else { throw unexpected(value) }
        return moved == 1
    }
}

/// lua/epochs.lua: each item's epoch and the earlier epochs it absorbed, for the write-back worker's fence. On a
/// cluster the items must share a slot.
struct EpochsCall: ScriptCall {
    static let name = ScriptName.epochs

    /// Per item, in key order: its epoch, or nil for an item that is not whole.
    typealias Reply = [ItemEpoch?]

    let keys: [String]
    var arguments: [String] { [] }

    init(_ items: some Collection<StockItemID>, layout: KeyLayout) {
        keys = items.map { layout.item($0) }
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        guard let values = value.array else { throw unexpected(value) }
        return values.map { value in
            // {epoch, absorbed (',e1,e2,')}, or nil
            guard let pair = value.array, let epoch = pair.first?.text else { return nil }
            return ItemEpoch(epoch, absorbed: Set((pair[safe: 1]?.text ?? "").split(separator: ",").map(String.init)))
        }
    }
}

/// lua/drain_mark.lua: raises the drain marks of a MySQL transaction's shards in Redis before it commits, and checks
/// others of the same Redis, unless a mark is below MySQL's: Redis went back in time there. On a cluster the marks of
/// one call must share a slot.
struct DrainMarkCall: ScriptCall {
    static let name = ScriptName.drainMark

    enum Reply: Sendable, Equatable {
        /// The raised marks' new values, in the order given (what MySQL records).
        case raised([Int64])
        /// The positions (0-based: the raised marks first, then the checked ones) of the marks below MySQL's; none
        /// was raised.
        case behind([Int])
    }

    let keys: [String]
    let arguments: [String]

    /// `raise`: the transaction's marks and MySQL's values of them (locked); `check`: others, read without a lock;
    /// `sequence`: a single Redis's drain sequence (`KeyLayout.drainSequence`), kept at or above every mark.
    init(raise: [(mark: String, seq: Int64)], check: [(mark: String, seq: Int64)] = [], sequence: String? = nil) {
        keys = (raise + check).map(\.mark) + (sequence.map { [$0] } ?? [])
        arguments = [String(raise.count), (sequence != nil).scriptFlag] + (raise + check).map { String($0.seq) }
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        guard let parts = value.array, let tag = parts.first?.text else { throw unexpected(value) }
        let numbers = try parts.dropFirst().map { part in
            guard let number = part.int else { throw unexpected(value) }
            return number
        }
        switch tag {
        case "raised": return .raised(numbers)
        case "behind":
            guard numbers.allSatisfy({ $0 >= 1 }) else { throw unexpected(value) }
            return .behind(numbers.map { Int($0) - 1 })
        default: throw unexpected(value)
        }
    }
}

/// lua/lease.lua: takes, renews or gives back a lease one owner holds at a time (the expiry sweeper's per shard, the
/// write-back worker's per outbox stream, the reconciler's).
struct LeaseCall: ScriptCall {
    static let name = ScriptName.lease

    let keys: [String]
    let arguments: [String]

    /// Takes or renews the lease for `milliseconds` (at least 1: a lifetime never means a give-back).
    init(key: String, owner: String, milliseconds: Int) {
        self.init(key: key, owner: owner, lifetime: String(max(1, milliseconds)))
    }

    private init(key: String, owner: String, lifetime: String) {
        keys = [key]
        arguments = [owner, lifetime]
    }

    /// Gives the lease back, if `owner` holds it (lifetime '0').
    static func giveBack(key: String, owner: String) -> LeaseCall { LeaseCall(key: key, owner: owner, lifetime: "0") }

    /// Whether the owner holds the lease now.
    static func decode(_ value: RedisValue) throws -> Bool {
        guard let held = value.int else { throw unexpected(value) }
        return held == 1
    }
}

/// lua/raise_to.lua: a drain mark (or the drain sequence) raised to MySQL's value when lower or missing (also when
/// Redis is full).
struct RaiseToCall: ScriptCall {
    static let name = ScriptName.raiseTo

    let keys: [String]
    let arguments: [String]

    init(key: String, value: Int64) {
        keys = [key]
        arguments = [String(value)]
    }

    /// The key's value afterwards.
    static func decode(_ value: RedisValue) throws -> Int64 {
        guard let after = value.int else { throw unexpected(value) }
        return after
    }
}

/// lua/outbox_group.lua: the write-back worker's consumer group on an outbox stream, made when missing (also when Redis
/// is full).
struct OutboxGroupCall: ScriptCall {
    static let name = ScriptName.outboxGroup

    let keys: [String]
    let arguments: [String]

    init(stream: String, group: String) {
        keys = [stream]
        arguments = [group]
    }

    /// Whether the group was made now (false: it was there).
    static func decode(_ value: RedisValue) throws -> Bool {
        guard let made = value.int, made == 0 || made == 1 else { throw unexpected(value) }
        return made == 1
    }
}

/// lua/outbox_read.lua: the write-back worker's read of the outbox streams whose leases name it, each lease checked in
/// the same step as its stream's read (also when Redis is full).
struct OutboxReadCall: ScriptCall {
    static let name = ScriptName.outboxRead

    /// What became of one stream.
    enum Stream: Sendable, Equatable {
        /// Read (the lease is this worker's): XREADGROUP's entries of the stream (`[[id, [field, value, ...]], ...]`),
        /// and when there are none the id of its last entry, to wait for newer ones from.
        case read(entries: RedisValue, last: String)
        /// Not read: the lease is not this worker's (run out, or another's).
        case lost
        /// Not read: the stream or its group is missing.
        case noGroup
    }

    let keys: [String]
    let arguments: [String]

    /// Up to `count` entries of each stream: new ones, or (`pending`) the ones `consumer` read and never acknowledged.
    init(streams: [String], owner: String, group: String, consumer: String, count: Int, pending: Bool) {
        keys = streams.flatMap { [KeyLayout.streamLease($0), $0] }
        arguments = [owner, group, consumer, String(max(1, count)), pending ? "0" : ">"]
    }

    /// One element per stream, in the order of `streams`.
    static func decode(_ value: RedisValue) throws -> [Stream] {
        try (value.array ?? []).map { element -> Stream in
            guard let parts = element.array, let kind = parts.first?.text else { throw unexpected(value) }
            switch (kind, parts.count) {
            case ("read", 3):
                guard let last = parts[2].text, parts[1].array != nil else { throw unexpected(value) }
                return .read(entries: parts[1], last: last)
            case ("lost", 1): return .lost
            case ("nogroup", 1): return .noGroup
            default: throw unexpected(value)
            }
        }
    }
}

/// lua/outbox_claim.lua: one page of the worker's claim of entries another consumer left unacknowledged, in a stream
/// whose lease names the worker, checked in the same step (also when Redis is full).
struct OutboxClaimCall: ScriptCall {
    static let name = ScriptName.outboxClaim

    enum Reply: Sendable, Equatable {
        /// Claimed `entries` entries; `next` is the cursor of the next page ("0-0": none).
        case claimed(next: String, entries: Int)
        /// Nothing claimed: the lease is not this worker's.
        case lost
        /// Nothing claimed: the stream or its group is missing (nothing is pending).
        case noGroup
    }

    let keys: [String]
    let arguments: [String]

    init(stream: String, owner: String, group: String, consumer: String, idle: Int, cursor: String, count: Int) {
        keys = [KeyLayout.streamLease(stream), stream]
        arguments = [owner, group, consumer, String(max(0, idle)), cursor, String(max(1, count))]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        guard let parts = value.array, let kind = parts.first?.text else { throw unexpected(value) }
        switch (kind, parts.count) {
        case ("claimed", 3):
            guard let next = parts[1].text, let entries = parts[2].int else { throw unexpected(value) }
            return .claimed(next: next, entries: Int(entries))
        case ("lost", 1): return .lost
        case ("nogroup", 1): return .noGroup
        default: throw unexpected(value)
        }
    }
}

/// lua/outbox_entries.lua: the entries of these ids still in an outbox stream, read in one step.
struct OutboxEntriesCall: ScriptCall {
    static let name = ScriptName.outboxEntries

    let keys: [String]
    let arguments: [String]

    init(stream: String, ids: [StreamEntryID]) {
        keys = [stream]
        arguments = ids.map(\.description)
    }

    /// The entries still there (`[[id, [field, value, ...]], ...]`, as XRANGE gives them), in the order asked for.
    static func decode(_ value: RedisValue) throws -> RedisValue {
        guard let parts = value.array, parts.first?.text == "entries" else { throw unexpected(value) }
        return .array(Array(parts.dropFirst()))
    }
}

/// lua/snapshot.lua: one atomic look at a page of items' counters and the outbox lines in flight touching them.
struct SnapshotCall: ScriptCall {
    static let name = ScriptName.snapshot

    /// An item's counters as Redis has them.
    struct Item: Sendable, Equatable {
        var counters: ReconcileDifference.Counters
        var infinite: Bool
        /// A stock change's MySQL half is still to come (lib/fence.lua).
        var fenced: Bool
    }

    /// One line of an outbox entry not yet acknowledged.
    struct Line: Sendable, Equatable {
        var kind: OutboxEvent.Kind
        /// The business's own id of the order (the entry names it as Redis does, `OrderRef.name`).
        var orderId: String
        var item: StockItemID
        var quantity: Int64
        var entryId: String
        var reserveEvent: String
        /// The line's applied marker is set (applied.lua ran for it).
        var marked: Bool
        /// Made in an earlier epoch of the item that its rebuild absorbed (applied to MySQL before counting it): a
        /// worker may commit it again, but no `*_unapplied` counter holds it.
        var absorbed: Bool
        /// A reserve whose hold was taken back (its undone marker is '1' or 'handed', lua/undo_reserve.lua): the
        /// take-back settled what the hold counts, with an undo entry or by handing the earlier hold back.
        var takenBack: Bool = false
    }

    struct Reply: Sendable, Equatable {
        /// Per item, in key order; nil for an item not in Redis.
        var items: [Item?]
        var lines: [Line]
    }

    let keys: [String]
    let arguments: [String]

    /// `streams`: every outbox on a single Redis; on a cluster the one of the items' shard.
    init(_ items: [StockItemID], streams: [String], layout: KeyLayout) {
        keys = items.map { layout.item($0) } + streams
        arguments = [String(items.count), layout.prefix] + items.map { "\($0.bizId):\($0.skuId)" }
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        guard let parts = value.array else { throw unexpected(value) }
        let items = (parts[safe: 0]?.array ?? []).map { value -> Item? in
            // {exists, stock_num, used_stock_num, confirmed_unapplied, refund_unapplied, is_infinite, fenced}
            guard let fields = value.array, fields.first?.int == 1 else { return nil }
            return Item(
                counters: .init(
                    stockNum: fields[safe: 1]?.int ?? 0, usedStockNum: fields[safe: 2]?.int ?? 0,
                    confirmedUnapplied: fields[safe: 3]?.int ?? 0, refundUnapplied: fields[safe: 4]?.int ?? 0
                ),
                infinite: fields[safe: 5]?.text == "1", fenced: fields[safe: 6]?.int == 1
            )
        }
        let lines = (parts[safe: 1]?.array ?? []).compactMap { value -> Line? in
            // {type, orderId, bizId, skuId, quantity, entryId, reserveEvent, appliedMarkerSet, absorbed, takenBack}
            guard let fields = value.array, let kind = OutboxEvent.Kind(rawValue: fields[safe: 0]?.text ?? ""),
                let sku = UInt64(fields[safe: 3]?.text ?? "")
            else { return nil }
            return Line(
                kind: kind, orderId: KeyLayout.ownId(fields[safe: 1]?.text ?? ""), item: StockItemID(bizId: fields[safe: 2]?.text ?? "", skuId: sku),
                quantity: fields[safe: 4]?.int ?? 0, entryId: fields[safe: 5]?.text ?? "",
                reserveEvent: fields[safe: 6]?.text ?? "", marked: fields[safe: 7]?.int == 1,
                absorbed: fields[safe: 8]?.int == 1, takenBack: fields[safe: 9]?.int == 1
            )
        }
        return Reply(items: items, lines: lines)
    }
}

/// lua/duplicate_held.lua: the units of an ended order's duplicate hold its item counts now (the reconciler's read).
struct DuplicateHeldCall: ScriptCall {
    static let name = ScriptName.duplicateHeld

    let keys: [String]
    let arguments: [String]

    init(_ item: StockItemID, _ duplicate: StockRepository.DuplicateHold, layout: KeyLayout) {
        keys = [
            layout.item(item), layout.reserveKey(item, orderId: OrderRef(bizId: item.bizId, orderId: duplicate.orderId).name),
            duplicate.recordKey(item, keys: layout),
        ]
        arguments = [duplicate.reserveEvent, String(duplicate.quantity), String(item.skuId)]
    }

    static func decode(_ value: RedisValue) throws -> Int64 {
        guard let units = value.int else { throw unexpected(value) }
        return units
    }
}
