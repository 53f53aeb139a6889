import RedisClient

extension KeyLayout {
    /// The keys the order scripts (reserve, confirm, rollback, undo_reserve) start with: the order's hash (on a
    /// cluster, one part's), its shard's outbox and its shard's expiry index.
    func orderKeys(_ orderId: String, shard: Int) -> [String] {
        [order(orderId, shard: shard), outbox(shard: shard), expiryIndex(shard: shard)]
    }
}

/// lua/reserve.lua: holds stock for one order (on a cluster one part of it), every item or none.
struct ReserveCall: ScriptCall {
    static let name = ScriptName.reserve

    /// What the caller knows of the order's past (ARGV[12]).
    enum JournalState: String, Sendable {
        /// Nothing: an order Redis does not know may be one it lost (the generation marker decides).
        case unknown = ""
        /// The journal was asked (or, on a cluster, the directory is the guard): an order Redis does not know is new.
        case asked = "1"
        /// The order was also restored, because its hash had vanished while a hold of it was in Redis.
        case restored = "2"
    }

    /// A hold made now.
    struct Held: Sendable, Equatable {
        var expiresAtMilliseconds: Int64?
        /// Per line what was asked and held, with the codes held.
        var lines: [ReservationLine]
        /// The outbox entry of the hold.
        var eventId: String
        /// The held items' epochs, in the order of the event's items.
        var epochs: [String]
        /// The outbox entry of the confirm of a dispense ("" for a plain hold).
        var confirmEventId: String
    }

    /// `lines` holds the item's quantity limit and use, per `position` (1-based) of an item over a per-user limit.
    struct UserLimitLine: Sendable, Equatable {
        var position: Int
        var limit: Int64
        var used: Int64
    }

    enum Reply: Sendable, Equatable {
        case held(Held)
        /// The same request was answered before: what was decided then.
        case replay(status: ReservationStatus, expiresAtMilliseconds: Int64?, lines: [ReservationLine])
        /// The same orderId with another body.
        case conflict
        /// Cancelled or expired first (no hanging reservation).
        case closed(ReservationStatus)
        /// Redis may have lost the order: ask the journal (`markerMissing`: the shard's generation marker is gone).
        case askJournal(markerMissing: Bool)
        /// The order's hash is gone while a hold of it is not: restore it from the journal, then run again.
        case vanished
        /// Items (1-based positions) not whole in Redis.
        case missing([Int])
        /// Items with a per-user limit, in a request without a userId.
        case userRequired([Int])
        case userLimit([UserLimitLine])
        /// Available units per item, in request order.
        case short([Int64])
        /// The item's code pool does not hand out codes (`offline`, `expired`, `empty`).
        case poolUnavailable(position: Int, reason: String)
        /// A code asked for by name is not in the pool.
        case codeUnavailable(position: Int, code: String)
    }

    let keys: [String]
    let arguments: [String]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `shortage`: the mode the script applies (`partial_part` for a part of a partial order of several parts).
    init(
        _ command: ReserveCommand, shard: Int, fingerprint: String, shortage: String, journal: JournalState,
        dispense: Bool, failpoint: String, retentionSeconds: Int, itemTTLSeconds: Int, layout: KeyLayout
    ) {
        let orderId = command.orderName
        // KEYS: order, outbox, expiry index; per item its hash, reserve key, rollback key; then every item's usage
        // hash, then every item's code set; then the shard's generation marker.
        var keys = layout.orderKeys(orderId, shard: shard)
        keys.reserveCapacity(4 + 5 * command.items.count)
        var arguments = [
            orderId, fingerprint, command.bizId, command.userId ?? "", shortage, InventoryEngine.redisTime,
            String(command.ttlSeconds), String(retentionSeconds), failpoint, String(itemTTLSeconds), dispense.scriptFlag,
            journal.rawValue,
        ]
        arguments.reserveCapacity(12 + 3 * command.items.count)
        for item in command.items {
            let id = StockItemID(bizId: command.bizId, skuId: item.skuId)
            keys.append(layout.item(id))
            keys.append(layout.reserveKey(id, orderId: orderId))
            keys.append(layout.rollbackKey(id, orderId: orderId))
            arguments.append(String(item.skuId))
            arguments.append(String(item.quantity))
            arguments.append(item.codes.joined(separator: "|"))
        }
        for item in command.items { keys.append(layout.userUsage(StockItemID(bizId: command.bizId, skuId: item.skuId))) }
        for item in command.items { keys.append(layout.codes(StockItemID(bizId: command.bizId, skuId: item.skuId))) }
        keys.append(layout.generation(shard: shard))
        self.keys = keys
        self.arguments = arguments
        drainMark = layout.drainMark(shard: shard)
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok":
            return .held(
                Held(
                    expiresAtMilliseconds: reply.int(1),
                    lines: ReservationLine.parse(reply.text(2), codes: reply.text(5)), eventId: reply.text(3),
                    epochs: reply.text(4).split(separator: ",", omittingEmptySubsequences: false).map(String.init),
                    confirmEventId: reply.text(6)
                )
            )
        case "replay":
            return .replay(
                status: reply.status(1) ?? .reserved, expiresAtMilliseconds: reply.int(2),
                lines: ReservationLine.parse(reply.text(3), codes: reply.text(4))
            )
        case "conflict": return .conflict
        case "cancelled": return .closed(reply.status(1) ?? .cancelled)
        case "ask": return .askJournal(markerMissing: reply.text(1) == "marker")
        case "vanished": return .vanished
        case "missing": return .missing(reply.positions(1))
        case "nouser": return .userRequired(reply.positions(1))
        case "userlimit":
            // 'i:limit:used,...'
            return .userLimit(
                reply.text(1).split(separator: ",").compactMap { entry in
                    let parts = entry.split(separator: ":").compactMap { Int64($0) }
                    guard parts.count == 3 else { return nil }
                    return UserLimitLine(position: Int(parts[0]), limit: parts[1], used: parts[2])
                }
            )
        case "short": return .short(reply.text(1).split(separator: ",").map { Int64($0) ?? 0 })
        case "pool": return .poolUnavailable(position: Int(reply.int(1) ?? 0), reason: reply.fields[safe: 2]?.text ?? "offline")
        case "code": return .codeUnavailable(position: Int(reply.int(1) ?? 0), code: reply.text(2))
        default: throw unexpected(value)
        }
    }
}

/// lua/undo_reserve.lua: takes back a hold whose journal row must not exist (a sync reserve whose commit failed, a
/// duplicate hold the worker found, a cluster part taken back).
struct UndoReserveCall: ItemScriptCall {
    static let name = ScriptName.undoReserve

    enum Reply: Sendable, Equatable {
        /// Taken back now (the order hash is deleted; an undo event removes the journal row).
        case undone
        /// The order went on with the hold before it could be taken back; the item hands back a hold too many.
        case settled
        /// The order is another reservation now, or this was done before: nothing touched.
        case gone
    }

    let keys: [String]
    let arguments: [String]
    let items: [StockItemID]
    /// Its shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `lines`: the lines the reserve event held ('sku:quantity[:epoch]', the epoch its item had when the line was
    /// held; lines of quantity 0 hold nothing), all of one part (its shard follows from any of them);
    /// `earlierEventId`: the reserve event whose journal row this hold duplicates ("" for none); `earlier`: what that
    /// row holds, by SKU (handed back, in place of this hold, when the order went on with this one).
    init(
        orderId: String, bizId: String, eventId: String, lines: String, earlierEventId: String,
        earlier: [UInt64: HeldLine] = [:], retentionSeconds: Int, layout: KeyLayout
    ) {
        let firstSku = lines.split(separator: ",").first.flatMap { UInt64($0.split(separator: ":").first ?? "") } ?? 0
        let shard = layout.partShard(orderId: orderId, item: StockItemID(bizId: bizId, skuId: firstSku))
        // With no earlier event, this event's own marker stands in its place.
        let marker = layout.undoneMarker(orderId: orderId, eventId: eventId, shard: shard)
        var keys = layout.orderKeys(orderId, shard: shard) + [
            marker, earlierEventId.isEmpty ? marker : layout.undoneMarker(orderId: orderId, eventId: earlierEventId, shard: shard),
        ]
        var quantities: [String] = []
        var madeIn: [String] = []
        var items: [StockItemID] = []
        for line in lines.split(separator: ",") {
            let parts = line.split(separator: ":")
            guard let sku = UInt64(parts.first ?? "") else { continue }
            let id = StockItemID(bizId: bizId, skuId: sku)
            items.append(id)
            keys.append(layout.item(id))
            keys.append(layout.reserveKey(id, orderId: orderId))
            quantities.append(parts.count > 1 ? String(parts[1]) : "0")
            madeIn.append(parts.count > 2 ? String(parts[2]) : "")
        }
        keys += items.map { layout.userUsage($0) } + items.map { layout.codes($0) }
        self.keys = keys
        self.arguments = [orderId, eventId, InventoryEngine.redisTime, String(retentionSeconds)] + quantities
            + items.map { String(earlier[$0.skuId]?.quantity ?? 0) }
            + items.map { (earlier[$0.skuId]?.codes ?? []).joined(separator: "|") }
            + items.map { earlier[$0.skuId]?.reservedAt.map(String.init) ?? "" } + madeIn + [earlierEventId]
        self.items = items
        drainMark = layout.drainMark(shard: shard)
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        switch ScriptReply(value).tag {
        case "ok": return .undone
        case "settled": return .settled
        case "gone": return .gone
        default: throw unexpected(value)
        }
    }
}
