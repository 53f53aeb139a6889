import MySQLClient

// MARK: - The lines a batch plan is made of (JournalBatchPlan.swift)

/// (order, biz, sku): the journal's unique key.
struct LineKey: Hashable, Sendable, Comparable {
    let orderId: String
    let bizId: String
    let skuId: UInt64

    static func < (lhs: LineKey, rhs: LineKey) -> Bool {
        (lhs.orderId, lhs.bizId, lhs.skuId) < (rhs.orderId, rhs.bizId, rhs.skuId)
    }

    var binds: [MySQLValue] {
        var binds: [MySQLValue] = []
        appendBinds(to: &binds)
        return binds
    }

    func appendBinds(to binds: inout [MySQLValue]) {
        binds.append(.string(orderId))
        binds.append(.string(bizId))
        binds.append(skuValue(skuId))
    }
}

struct ReserveLine: Sendable {
    let key: LineKey
    let userId: String?
    /// The request's fingerprint, stored as its SHA-1 (nil: not known).
    let requestFingerprint: String?
    let quantity: Int64
    /// Unix milliseconds.
    let expiresAt: Int64
    let eventId: String
    let codes: [String]
    /// A confirm, cancel, expiry or refund of the line comes before this reserve in the batch: the line's earlier
    /// order had ended by the time this reserve was made.
    let endedBefore: Bool
    /// The reserve's Redis time (Unix ms): its outbox entry id's milliseconds, or the event's `at` where that is later
    /// (a Redis that takes an entry's id from the script's start can give it a millisecond before the `now` the
    /// script counted the per-user window by); nil when neither is known.
    let reservedAt: Int64?
}

struct UndoLine: Sendable {
    let key: LineKey
    let reserveEventId: String
    /// The undo's own outbox entry id.
    let eventId: String
}

struct StatusChange: Sendable {
    let from: String
    let to: String
    let keys: [LineKey]
}

struct LedgerLine: Sendable {
    let item: StockItemID
    let delta: Int64
    let reason: String
    let source: String
}

/// A confirm, cancel, expiry or refund of one order line.
struct TransitionLine: Sendable {
    let key: LineKey
    let kind: OutboxEvent.Kind
    /// The transition's outbox entry id: after its order's reserve events in the same stream.
    let eventId: String
    let quantity: Int64
}

/// One order line and one of its reserve events: an undone reserve, or a duplicate hold.
struct LineEvent: Hashable, Sendable, Comparable {
    let key: LineKey
    let eventId: String

    static func < (lhs: LineEvent, rhs: LineEvent) -> Bool { (lhs.key, lhs.eventId) < (rhs.key, rhs.eventId) }

    func appendBinds(to binds: inout [MySQLValue]) {
        key.appendBinds(to: &binds)
        binds.append(.string(eventId))
    }
}

/// A duplicate hold (`reserve_duplicates` row) that moves from one status to another; `endedBy`: the event that
/// ends it (its cancel, expiry, refund or undo), nil for a confirm.
struct DuplicateMove: Sendable {
    let line: LineEvent
    let from: String
    let to: String
    let endedBy: String?
}

/// An adopt line: the journal row of `earlierEvent` holds `quantity` and `codes` from now on
/// (JournalBatchPlan+Duplicates.swift).
struct AdoptLine: Sendable {
    let key: LineKey
    let earlierEvent: String
    let quantity: Int64
    let codes: [String]
}
