import RedisClient

/// lua/confirm.lua: payment succeeded; an order's held stock (on a cluster, one part's) is sold.
struct ConfirmCall: ItemScriptCall {
    static let name = ScriptName.confirm

    enum Reply: Sendable, Equatable {
        /// Confirmed now; `eventId` is the outbox entry.
        case confirmed(eventId: String)
        /// Confirmed before (or refunded since).
        case replay(ReservationStatus)
        /// Cancelled or expired first.
        case closed(ReservationStatus)
        /// The hold's deadline has passed and the sweeper has not got there yet: nothing is sold.
        case expired
        /// The caller's view of the order is out of date: read it again.
        case stale
        /// A hold Redis lost with its item, which cannot sell its units again: nothing is changed.
        case lost
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `lines`/`linesText`: the order's (part's) lines as the caller read them. `deadlineChecked`: the caller checked
    /// the hold's deadline itself (a cluster part: the directory decided).
    init(
        orderId: String, shard: Int, bizId: String, lines: [ReservationLine], linesText: String, deadlineChecked: Bool,
        layout: KeyLayout
    ) {
        items = lines.map { StockItemID(bizId: bizId, skuId: $0.skuId) }
        drainMark = layout.drainMark(shard: shard)
        // KEYS: order, outbox, expiry index; per item its hash and reserve key.
        var keys = layout.orderKeys(orderId, shard: shard)
        for id in items {
            keys.append(layout.item(id))
            keys.append(layout.reserveKey(id, orderId: orderId))
        }
        self.keys = keys
        arguments = [orderId, InventoryEngine.redisTime, linesText, deadlineChecked.scriptFlag]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .confirmed(eventId: reply.text(2))
        case "replay": return .replay(reply.status(1) ?? .confirmed)
        case "cancelled": return .closed(reply.status(1) ?? .cancelled)
        case "expired": return .expired
        case "stale": return .stale
        case "lost": return .lost
        default: throw unexpected(value)
        }
    }
}

/// lua/rollback.lua: gives an order's held stock (on a cluster, one part's) back: a cancel, or an expiry.
struct RollbackCall: ItemScriptCall {
    static let name = ScriptName.rollback

    enum Reply: Sendable, Equatable {
        /// Released now; `eventId` is the outbox entry.
        case released(eventId: String)
        /// Cancelled or expired before (nil when the script named no state it knows).
        case replay(ReservationStatus?)
        /// The caller found no order and Redis has none: recorded cancelled (a tombstone, `eventId` its event).
        case recordedEmpty(eventId: String)
        /// An expiry of an order that no longer exists.
        case gone
        /// Confirmed or refunded orders are not rolled back.
        case confirmed(ReservationStatus)
        /// An expiry before the hold's deadline.
        case notExpired
        /// The caller's view of the order is out of date: read it again.
        case stale
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `lines`/`linesText`: the order's (part's) lines as the caller read them, none when it found no order.
    /// `expiryDecided`: a cluster part follows its directory's expiry whatever its own deadline says.
    /// `knownOrder`: a part of an order its directory knows, recorded cancelled to fence a part reserve still on its
    /// way (bounded by the directory's parts, so also when Redis is full, lib/full.lua).
    init(
        orderId: String, shard: Int, bizId: String, lines: [ReservationLine], linesText: String,
        reason: ReservationStatus, failpoint: String = "", expiryDecided: Bool = false, knownOrder: Bool = false,
        retentionSeconds: Int, layout: KeyLayout
    ) {
        items = lines.map { StockItemID(bizId: bizId, skuId: $0.skuId) }
        drainMark = layout.drainMark(shard: shard)
        // KEYS: order, outbox, expiry index; per item its hash, reserve key, rollback key; then every item's usage
        // hash, then every item's code set.
        var keys = layout.orderKeys(orderId, shard: shard)
        for id in items {
            keys.append(layout.item(id))
            keys.append(layout.reserveKey(id, orderId: orderId))
            keys.append(layout.rollbackKey(id, orderId: orderId))
        }
        self.keys = keys + items.map { layout.userUsage($0) } + items.map { layout.codes($0) }
        arguments = [
            orderId, reason.rawValue, InventoryEngine.redisTime, String(retentionSeconds), failpoint, linesText,
            expiryDecided.scriptFlag, knownOrder.scriptFlag,
        ]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .released(eventId: reply.text(3))
        case "replay": return .replay(reply.status(1))
        case "empty": return .recordedEmpty(eventId: reply.text(1))
        case "gone": return .gone
        case "confirmed": return .confirmed(reply.status(1) ?? .confirmed)
        case "notexpired": return .notExpired
        case "stale": return .stale
        default: throw unexpected(value)
        }
    }
}

/// lua/refund.lua: a confirmed order (on a cluster, one part) is refunded; its stock is available again.
struct RefundCall: ItemScriptCall {
    static let name = ScriptName.refund

    enum Reply: Sendable, Equatable {
        case refunded
        case replay
        /// Only a confirmed order can be refunded: the state it is in (nil when the script named none it knows).
        case state(ReservationStatus?)
        /// The caller's view of the order is out of date: read it again.
        case stale
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    init(orderId: String, shard: Int, bizId: String, lines: [ReservationLine], linesText: String, layout: KeyLayout) {
        items = lines.map { StockItemID(bizId: bizId, skuId: $0.skuId) }
        drainMark = layout.drainMark(shard: shard)
        // KEYS: order, outbox; every item's hash, then every item's code set.
        keys = [layout.order(orderId, shard: shard), layout.outbox(shard: shard)] + items.map { layout.item($0) }
            + items.map { layout.codes($0) }
        arguments = [orderId, InventoryEngine.redisTime, linesText]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .refunded
        case "replay": return .replay
        case "state": return .state(reply.status(1))
        case "stale": return .stale
        default: throw unexpected(value)
        }
    }
}
