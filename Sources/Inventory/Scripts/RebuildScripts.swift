import RedisClient

/// lua/init_lock.lua: decides who rebuilds a stock item that is missing from Redis (or not whole).
struct InitLockCall: ScriptCall {
    static let name = ScriptName.initLock

    enum Reply: Sendable, Equatable {
        /// The item is there and whole: use it.
        case ready
        /// This caller holds the init lock and rebuilds the item from MySQL.
        case locked
        /// Another caller holds an unexpired lock: wait, then look again.
        case wait
    }

    let keys: [String]
    let arguments: [String]

    init(_ id: StockItemID, caller: String, lockMilliseconds: Int64, layout: KeyLayout) {
        keys = [layout.item(id), layout.codes(id), layout.userUsage(id)]
        arguments = [caller, InventoryEngine.redisTime, String(lockMilliseconds)]
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        switch ScriptReply(value).tag {
        case "ready": return .ready
        case "locked": return .locked
        case "wait": return .wait
        default: throw unexpected(value)
        }
    }
}

/// lua/init_item.lua: writes a stock item rebuilt from MySQL, if this caller still holds its init lock.
struct InitItemCall: ScriptCall {
    static let name = ScriptName.initItem

    let keys: [String]
    let arguments: [String]

    /// `snapshot`: what MySQL has of the item (read under its row lock); `epoch`: the item's new epoch;
    /// `drainedEpochs`: the epochs of its outbox events applied to the journal before the read, and those the reserve
    /// keys re-stamped by RestampHoldsCall named before; `outboxes`: the streams its events go to. `now`: Redis's
    /// clock, for the reserve keys written anew. `before`: how many of the snapshot's holds, codes and user counts the
    /// parts before this call wrote (RestampHoldsCall, FillPartCall); this call takes the rest of each.
    init(
        _ id: StockItemID, caller: String, snapshot: StockRepository.InitSnapshot, epoch: String, drainedEpochs: Set<String>,
        outboxes: [String], now: Int64, itemTTLSeconds: Int, retentionSeconds: Int, layout: KeyLayout,
        before: RebuildParts = RebuildParts()
    ) {
        let row = snapshot.row
        let codes = snapshot.codes[before.codes...]
        let usage = snapshot.usage[before.users...]
        var arguments = [
            caller, String(row.infinite ? row.stock : row.stock - snapshot.liveReserved), String(snapshot.liveReserved),
            row.infinite ? "1" : "0", String(row.dangerNum), String(row.backorderLimit), String(itemTTLSeconds), epoch,
            String(row.userLimit), String(row.userWindowSeconds), String(snapshot.userWindow),
        ]
        arguments += snapshot.pool?.scriptArguments ?? ["", "", "0", ""]
        arguments.append(drainedEpochs.sorted().joined(separator: ","))
        arguments += [String(before.codes), String(before.users), String(codes.count)]
        arguments += codes
        // The holds this rebuild counts keep counting (RestampHoldsCall took the parts before).
        let records = HoldRecords(
            id, holds: snapshot.liveHolds[before.holds...], now: now, retentionSeconds: retentionSeconds, layout: layout
        )
        arguments += records.arguments
        // The ended orders' duplicate holds: each counted by the script only if it still stands in Redis and its
        // epoch is one this rebuild absorbs (a hold of another epoch is not in the rebuilt item, lib/items.lua).
        let duplicates = DuplicateRecords(id, duplicates: snapshot.duplicateHolds, now: now, retentionSeconds: retentionSeconds, layout: layout)
        arguments += duplicates.arguments
        usage.appendArguments(to: &arguments)
        arguments.append(String(snapshot.version))
        keys = [layout.item(id), layout.userUsage(id), layout.codes(id)] + records.keys + duplicates.keys + outboxes
        self.arguments = arguments
    }

    /// Whether the item was written (false: the lock was taken over or the item appeared meanwhile, the caller's
    /// numbers may be stale; or a part of the set or hash was lost: nothing was written).
    static func decode(_ value: RedisValue) throws -> Bool { try written(value) }
}

/// lua/restamp_holds.lua: one part of a rebuild's holds (all but the last, which goes with InitItemCall)
/// re-stamped with the item's new epoch, if the caller still holds the item's init lock.
struct RestampHoldsCall: ScriptCall {
    static let name = ScriptName.restampHolds

    enum Reply: Sendable, Equatable {
        /// Re-stamped; the epochs the holds' reserve keys named before (for the item to absorb).
        case restamped(previousEpochs: [String])
        /// The lock was taken over or the item appeared meanwhile: nothing was written.
        case lost
    }

    let keys: [String]
    let arguments: [String]

    /// `lockMilliseconds`: the init lock's lifetime, which the part renews.
    init(
        _ id: StockItemID, caller: String, epoch: String, holds: ArraySlice<StockRepository.LiveHold>, now: Int64,
        retentionSeconds: Int, lockMilliseconds: Int64, layout: KeyLayout
    ) {
        let records = HoldRecords(id, holds: holds, now: now, retentionSeconds: retentionSeconds, layout: layout)
        keys = [layout.item(id)] + records.keys
        arguments = [caller, epoch, String(lockMilliseconds)] + records.arguments
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .restamped(previousEpochs: reply.text(1).split(separator: ",").map(String.init))
        case "lost": return .lost
        default: throw unexpected(value)
        }
    }
}

/// How many of a rebuild's holds, codes and user counts its parts have written so far (lua/lib/parts.lua).
struct RebuildParts: Sendable, Equatable {
    var holds = 0
    var codes = 0
    var users = 0
}

/// lua/fill_part.lua: one part of a rebuilt item's code set or usage hash (all but the last, which goes with
/// InitItemCall), if the caller still holds the item's init lock.
struct FillPartCall: ScriptCall {
    static let name = ScriptName.fillPart

    let keys: [String]
    let arguments: [String]

    /// `codes`: this part of the pool's usable codes; `before`: how many the parts before it wrote; `itemTTLSeconds`:
    /// the item's TTL (0: none), which the set gets.
    init(
        _ id: StockItemID, caller: String, lockMilliseconds: Int64, codes: ArraySlice<String>, before: Int, itemTTLSeconds: Int,
        layout: KeyLayout
    ) {
        keys = [layout.item(id), layout.codes(id)]
        arguments = [caller, String(lockMilliseconds), "codes", String(before), "", String(itemTTLSeconds)] + codes
    }

    /// `usage`: this part of the users' counts in `window`; `before`: how many the parts before it wrote;
    /// `itemTTLSeconds`: the item's TTL (0: none), which the hash gets.
    init(
        _ id: StockItemID, caller: String, lockMilliseconds: Int64, usage: ArraySlice<UserUsage>, window: Int64, before: Int,
        itemTTLSeconds: Int, layout: KeyLayout
    ) {
        keys = [layout.item(id), layout.userUsage(id)]
        var arguments = [caller, String(lockMilliseconds), "users", String(before), String(window), String(itemTTLSeconds)]
        usage.appendArguments(to: &arguments)
        self.arguments = arguments
    }

    /// Whether the part was written (false: the lock was taken over, the item appeared, or the key lost members
    /// since the part before; nothing was written).
    static func decode(_ value: RedisValue) throws -> Bool { try written(value) }
}

extension ScriptCall {
    /// A rebuild script's `{'ok'}` (written) or `{'lost'}` (nothing written: lib/parts.lua).
    static func written(_ value: RedisValue) throws -> Bool {
        switch ScriptReply(value).tag {
        case "ok": return true
        case "lost": return false
        default: throw unexpected(value)
        }
    }
}

extension ArraySlice<UserUsage> {
    /// The users' counts as a rebuild's scripts take them (lua/lib/parts.lua: fillMembers): pairs of userId and units.
    func appendArguments(to arguments: inout [String]) {
        arguments.reserveCapacity(arguments.count + 2 * count)
        for entry in self {
            arguments.append(entry.userId)
            arguments.append(String(entry.units))
        }
    }
}

/// The keys and arguments of a rebuild's holds (lua/lib/restamp.lua), for init_item.lua and restamp_holds.lua alike:
/// per hold its reserve key, its order hash (on a cluster the order's part on the item's shard) and the order under
/// its bare orderId (where an order of another business than `default` made before orders were scoped is still
/// kept); the count, then per hold its quantity and how long (s) its reserve key lives if the rebuild writes it anew
/// (it vanished alone): the hold's time left plus the retention, as reserve.lua gives it.
struct HoldRecords {
    var keys: [String] = []
    var arguments: [String] = []

    init(_ id: StockItemID, holds: ArraySlice<StockRepository.LiveHold>, now: Int64, retentionSeconds: Int, layout: KeyLayout) {
        var orders: [String] = []
        var bare: [String] = []
        keys.reserveCapacity(3 * holds.count)
        orders.reserveCapacity(holds.count)
        bare.reserveCapacity(holds.count)
        arguments.reserveCapacity(1 + 2 * holds.count)
        arguments.append(String(holds.count))
        for hold in holds {
            keys.append(layout.reserveKey(id, orderId: hold.orderId))
            let name = OrderRef(bizId: id.bizId, orderId: hold.orderId).name
            orders.append(layout.orderPart(name, item: id))
            bare.append(layout.orderPart(hold.orderId, item: id))
            arguments.append(String(hold.quantity))
            arguments.append(String(max(hold.expiresAtMilliseconds - now, 0) / 1000 + Int64(retentionSeconds)))
        }
        keys += orders + bare
    }
}

/// The keys and arguments of a rebuild's duplicate holds of ended orders (lua/init_item.lua): per hold its reserve key
/// and its order's record (on a cluster the order's part on the item's shard); the count, then per hold its quantity,
/// its reserve event and how long (s) its reserve key lives if it must be written anew (its deadline is its order's
/// in Redis: a retention period).
struct DuplicateRecords {
    var keys: [String] = []
    var arguments: [String] = []

    init(_ id: StockItemID, duplicates: [StockRepository.DuplicateHold], now: Int64, retentionSeconds: Int, layout: KeyLayout) {
        arguments.append(String(duplicates.count))
        keys = duplicates.map { layout.reserveKey(id, orderId: OrderRef(bizId: id.bizId, orderId: $0.orderId).name) }
            + duplicates.map { $0.recordKey(id, keys: layout) }
        for duplicate in duplicates {
            arguments += [String(duplicate.quantity), duplicate.reserveEvent, String(retentionSeconds)]
        }
    }
}

/// lua/restore_order.lua: brings back an order (on a cluster one part) Redis lost, from its journal rows.
struct RestoreOrderCall: ItemScriptCall {
    static let name = ScriptName.restoreOrder

    /// One journal line: its item and quantity.
    struct Line: Sendable {
        var skuId: UInt64
        var quantity: Int64
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]

    /// `status`: the journal's, lowercase; `codes`: the codes each line holds (empty when no line's item has a
    /// pool); `request`: '#' and the SHA-1 the journal has of the request ("" when none).
    init(
        orderId: String, shard: Int, bizId: String, userId: String?, status: String, lines: [Line], codes: [[String]],
        expiresAtMilliseconds: Int64, request: String, retentionSeconds: Int, layout: KeyLayout
    ) {
        let ids = lines.map { StockItemID(bizId: bizId, skuId: $0.skuId) }
        items = ids
        // KEYS: order, expiry index; per line its reserve key and rollback key; then every line's item hash.
        var keys = [layout.order(orderId, shard: shard), layout.expiryIndex(shard: shard)]
        for id in ids {
            keys.append(layout.reserveKey(id, orderId: orderId))
            keys.append(layout.rollbackKey(id, orderId: orderId))
        }
        self.keys = keys + ids.map { layout.item($0) }
        arguments = [
            orderId, bizId, userId ?? "", status,
            lines.map { "\($0.skuId):\($0.quantity):\($0.quantity)" }.joined(separator: ","), String(expiresAtMilliseconds),
            InventoryEngine.redisTime, String(retentionSeconds),
        ] + lines.map { String($0.quantity) } + [codes.map { $0.joined(separator: "|") }.joined(separator: ","), request]
    }

    /// Whether the order was restored now (false: it is in Redis, nothing was touched).
    static func decode(_ value: RedisValue) throws -> Bool {
        switch ScriptReply(value).tag {
        case "ok": return true
        case "exists": return false
        default: throw unexpected(value)
        }
    }
}

/// lua/part_ending.lua: the last entry id of a part's shard's outbox, read with the part's absence.
struct PartEndingCall: ScriptCall {
    static let name = ScriptName.partEnding

    let keys: [String]
    let arguments: [String] = []

    /// `orderId`: the order's Redis name.
    init(orderId: String, shard: Int, layout: KeyLayout) {
        keys = [layout.order(orderId, shard: shard), layout.outbox(shard: shard)]
    }

    /// The stream's last entry id while the part is absent; nil when the part is in Redis.
    static func decode(_ value: RedisValue) throws -> String? {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "present": return nil
        case "absent" where StreamPosition(reply.text(1)) != nil: return reply.text(1)
        default: throw unexpected(value)
        }
    }
}

/// lua/absent.lua: the negative entry of an item MySQL does not have, unless the item was made since.
struct AbsentCall: ScriptCall {
    static let name = ScriptName.absent

    let keys: [String]
    let arguments: [String]

    init(_ id: StockItemID, milliseconds: Int64, layout: KeyLayout) {
        keys = [layout.absent(id), layout.made(id)]
        arguments = [String(milliseconds)]
    }

    /// Whether the entry was written (false: the item was made meanwhile).
    static func decode(_ value: RedisValue) throws -> Bool {
        guard let written = value.int else { throw unexpected(value) }
        return written == 1
    }
}
