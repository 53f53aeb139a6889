import RedisClient

/// lua/set_stock.lua: sets an item's on-hand stock and its settings (the Redis half of a PUT).
struct SetStockCall: ItemScriptCall {
    static let name = ScriptName.setStock

    enum Reply: Sendable, Equatable {
        /// On-hand moved by `delta` (what MySQL must add too); `token` is the half's ('mark@ms',
        /// lua/lib/fence.lua), which its undo and the close of its fence name; `before` the settings this
        /// changed ('field=old>new,...'), which an undo puts back.
        case changed(delta: Int64, token: String, before: String)
        /// The item is not whole in Redis: rebuild it (a new item gets its MySQL row first), then run again.
        case missing
        /// On-hand may not go below what live reservations hold.
        case belowReserved(reserved: Int64)
        /// A one-time code pool's stock is its codes.
        case oneTimeCodes
        /// Another stock change's half of the item is under way: nothing changed; run again once it is done.
        case busy
        /// The item has a half nobody closed, which MySQL may lack (lua/lib/fence.lua): nothing changed; drop the
        /// item, rebuild it from MySQL, then run again.
        case stale
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    init(_ id: StockItemID, _ settings: StockSettings, itemTTLSeconds: Int, layout: KeyLayout) {
        items = [id]
        drainMark = layout.drainMark(item: id)
        keys = [layout.item(id), layout.userUsage(id), layout.codes(id)]
        arguments = [
            String(settings.stock), settings.infinite.map { $0 ? "1" : "0" } ?? "",
            settings.dangerNum.map(String.init) ?? "", settings.backorderLimit.map(String.init) ?? "",
            String(itemTTLSeconds), "", settings.userLimit.map(String.init) ?? "",
            settings.userWindowSeconds.map(String.init) ?? "",
        ]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .changed(delta: reply.int(1) ?? 0, token: reply.text(2), before: reply.text(3))
        case "missing": return .missing
        case "below_reserved": return .belowReserved(reserved: reply.int(1) ?? 0)
        case "codes": return .oneTimeCodes
        case "busy": return .busy
        case "stale": return .stale
        default: throw unexpected(value)
        }
    }
}

/// lua/adjust_stock.lua: adds or removes on-hand stock once per adjustment id (the Redis half).
struct AdjustStockCall: ScriptCall {
    static let name = ScriptName.adjustStock

    enum Reply: Sendable, Equatable {
        /// Applied now; `token` is its half's ('mark@ms', lua/lib/fence.lua), which an undo of it and the close of its
        /// fence name.
        case applied(token: String)
        /// Applied before with the same body.
        case replay
        /// The adjustment id was used with another body.
        case conflict
        /// The item is not in Redis.
        case missing
        /// Removing that much would leave less on hand than is reserved.
        case belowReserved(reserved: Int64)
        /// A one-time code pool's stock is its codes.
        case oneTimeCodes
        /// An earlier attempt's Redis half is still in the item and MySQL's outcome of it is not known (that attempt
        /// ended without learning it, or died): complete the MySQL half; the half is this retry's from now on, by
        /// `token`, and keeps its name `half` (lua/lib/fence.lua; "" when its key is from before halves had names).
        case unsettled(token: String, half: String)
        /// An earlier attempt's Redis half is recent and its MySQL half may still be under way: retry later.
        case busy
    }

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    init(_ id: StockItemID, _ adjustment: StockAdjustment, retentionSeconds: Int, layout: KeyLayout) {
        drainMark = layout.drainMark(item: id)
        keys = [layout.item(id), layout.adjustmentKey(id, adjustmentId: adjustment.adjustmentId)]
        arguments = [String(adjustment.delta), adjustment.fingerprint, String(retentionSeconds), InventoryEngine.redisTime]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .applied(token: reply.text(3))
        case "replay": return .replay
        case "conflict": return .conflict
        case "missing": return .missing
        case "below_reserved": return .belowReserved(reserved: reply.int(2) ?? 0)
        case "codes": return .oneTimeCodes
        case "unsettled": return .unsettled(token: reply.text(3), half: reply.text(4))
        case "busy": return .busy
        default: throw unexpected(value)
        }
    }
}

/// lua/undo_stock.lua: reverses a stock change whose MySQL half failed, exactly once.
struct UndoStockCall: ScriptCall {
    static let name = ScriptName.undoStock

    enum Reply: Sendable, Equatable {
        /// Reversed now.
        case reversed
        /// This reversal ran before.
        case done
        /// The item is gone or was rebuilt since the change (MySQL never had it): nothing to reverse.
        case rebuilt
        /// Nothing written: the adjustment's key cannot tell whether MySQL has the half; ask again with what MySQL's
        /// ledger says (`ledgerHalf`).
        case check
    }

    let keys: [String]
    let arguments: [String]

    /// `adjustmentKey`: the key of the adjustment reversed (the item key when none); `marker`: this reversal's (the
    /// half's, so that its owner and a retry that took it over reverse it once); `surplus`: MySQL had the adjustment
    /// from another attempt; `half`: the half's name when `token` is not it (a retry took the half over;
    /// lua/lib/fence.lua); `ledgerHalf`: what MySQL's ledger says of the adjustment, after a `check` ("none": no row,
    /// "?": not known, else the name of the half it has; "": not asked); `givenUp`: the half goes onto the item's stale
    /// list as given up instead of closing (a PUT whose COMMIT got no answer).
    init(
        itemKey: String, adjustmentKey: String, marker: String, delta: Int64, fingerprint: String, token: String,
        settings: String, surplus: Bool = false, half: String = "", ledgerHalf: String = "", givenUp: Bool = false,
        retentionSeconds: Int
    ) {
        keys = [itemKey, adjustmentKey, marker]
        arguments = [
            String(delta), fingerprint, String(retentionSeconds), token, settings, surplus ? "1" : "", half, ledgerHalf,
            givenUp ? "1" : "",
        ]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        switch ScriptReply(value).tag {
        case "ok": return .reversed
        case "done": return .done
        case "rebuilt": return .rebuilt
        case "check": return .check
        default: throw unexpected(value)
        }
    }
}

/// lua/admin_done.lua: a stock change's MySQL half is done: the fence its Redis half opened is closed (while the item
/// has the mark the half was made in), and an adjustment's key says so.
struct AdminDoneCall: ScriptCall {
    static let name = ScriptName.adminDone

    enum Reply: Sendable, Equatable {
        /// Closed (or left to an attempt still under way, with "*").
        case closed
        /// The item was written from MySQL since the half, and dropped to be rebuilt with the change.
        case dropped
        /// The item is gone: no fence to close.
        case missing
        /// With "*": the key names another half than MySQL's ledger has: nothing was written; the half (its owner's
        /// `token`, its name `half`) is a surplus for the caller to reverse.
        case surplus(token: String, half: String)
    }

    let keys: [String]
    let arguments: [String]

    /// `token`: the Redis half's ('mark@ms', lua/lib/fence.lua: the item's mark when it was made and the time its
    /// fence was opened); "*" for the one the adjustment key names (an earlier attempt's half), with `ledgerHalf` the
    /// name of the half MySQL's ledger has ("-": its row names none; nil when not known). `adjustmentKey` and `fingerprint`: the adjustment's
    /// (nil for a PUT). `version`: the stock row's version the MySQL half made (nil when not known), `delta` and
    /// `settings` ('field=old>new,...') what the change made: an item written from MySQL since the half, from a read
    /// before its commit, gets the change, or is dropped to be rebuilt with it.
    init(
        itemKey: String, token: String, adjustmentKey: String? = nil, fingerprint: String = "", version: Int64? = nil,
        delta: Int64 = 0, settings: String = "", ledgerHalf: String? = nil
    ) {
        keys = [itemKey, adjustmentKey ?? itemKey]
        arguments = [token, fingerprint, version.map(String.init) ?? "", String(delta), settings, ledgerHalf ?? ""]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .closed
        case "dropped": return .dropped
        case "missing": return .missing
        case "surplus": return .surplus(token: reply.text(1), half: reply.text(2))
        default: throw unexpected(value)
        }
    }
}

/// lua/unsettle.lua: a stock change that kept its Redis half without learning MySQL's outcome: an adjustment says so
/// in its key, while the key is still its pending one; an item written from MySQL since the half is dropped.
struct UnsettleCall: ScriptCall {
    static let name = ScriptName.unsettle

    let keys: [String]
    let arguments: [String]

    /// `adjustmentKey` and `fingerprint`: the adjustment's (nil and "" for a PUT).
    init(itemKey: String, adjustmentKey: String? = nil, token: String, fingerprint: String = "") {
        keys = [itemKey, adjustmentKey ?? itemKey]
        arguments = [token, fingerprint]
    }

    /// Whether the key was marked (false: it is not this attempt's pending key any more).
    static func decode(_ value: RedisValue) throws -> Bool {
        switch ScriptReply(value).tag {
        case "ok": return true
        case "gone": return false
        default: throw unexpected(value)
        }
    }
}

/// lua/fix_item.lua: the reconciler's repair of one item's counters, only if they are still what it judged.
struct FixItemCall: ScriptCall {
    static let name = ScriptName.fixItem

    enum Reply: Sendable, Equatable {
        case fixed
        /// The item changed since it was read: judge again.
        case moved
        case missing
        /// A stock change's MySQL half is still to come: in flight, judged next time.
        case fenced
    }

    let keys: [String]
    let arguments: [String]

    /// `version`: the version of MySQL's stock row `target` was judged from (held locked until the repair is done).
    init(itemKey: String, read: ReconcileDifference.Counters, target: ReconcileDifference.Counters, version: Int64) {
        keys = [itemKey]
        arguments = read.arguments + target.arguments + [String(version)]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        switch ScriptReply(value).tag {
        case "ok": return .fixed
        case "moved": return .moved
        case "missing": return .missing
        case "fenced": return .fenced
        default: throw unexpected(value)
        }
    }
}
