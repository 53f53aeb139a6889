import Logging
import RedisClient

/// Redis Cluster: an order is kept in parts, one per shard its items are in, under a directory in the order's own
/// shard that decides its state first (the parts follow); a reserve of several parts that stopped half-way is
/// given up from it. The reserve of several parts is in `ClusterPlacement+Reserve.swift`.
struct ClusterPlacement: OrderPlacement {
    typealias StoredOrder = InventoryEngine.StoredOrder

    var decidesInDirectory: Bool { true }
    var leavesReservesUnderWay: Bool { true }

    func recordCancel(_ orderId: String, shard: Int, reservations: Reservations) async throws {
        _ = try await decide(orderId, .cancelled, from: ["reserved", "reserving"], recording: true, reservations: reservations)
    }

    func startConfirm(_ orderId: String, order: StoredOrder, reservations: Reservations) async throws -> TransitionOutcome? {
        // The deadline is checked here, against Redis's clock, before the directory decides: its parts then follow
        // the directory (confirm.lua checks it itself on a single Redis).
        if order.directoryState == .reserved, try await deadlinePassed(order, reservations: reservations) == true {
            return try await reservations.expireLate(orderId)
        }
        let decided = try await decide(orderId, .confirmed, from: ["reserved"], reservations: reservations).state
        if decided == .cancelled || decided == .expired { throw InventoryError.orderClosed(decided) }
        return nil
    }

    func startRollback(
        _ orderId: String, order: StoredOrder?, reason: ReservationStatus, reservations: Reservations
    ) async throws -> RollbackStart {
        guard let order else {
            // Nothing to read: an order never reserved, or a reserve under way (its directory open, its parts not
            // all held yet). The directory is the guard: recorded (or turned) cancelled, a reserve arriving later,
            // or still under way, finds the order cancelled; parts held already are taken back, and the parts not
            // held yet are fenced.
            guard reason == .cancelled else { throw InventoryError.notFound }
            let recorded = try await decide(
                orderId, .cancelled, from: ["reserved", "reserving"], recording: true, tombstone: true, reservations: reservations
            )
            // Decided otherwise (confirmed, expired) while its parts are gone and the journal has no row (Redis lost
            // them before the worker wrote it): the directory is the answer, as for an order that can be read.
            // Reading again would not bring the parts back.
            guard recorded.state == .cancelled else { throw InventoryError.invalidState(recorded.state) }
            if !recorded.event.isEmpty { try await recordTombstone(orderId, event: recorded.event, reservations: reservations) }
            try await releaseParts(orderId, reservations: reservations)
            return .answer(
                TransitionOutcome(reservation: reservations.emptyReservation(orderId, status: .cancelled), replayed: !recorded.changed)
            )
        }
        if reason == .expired, try await deadlinePassed(order, reservations: reservations) == false {
            throw InventoryError.invalidState(.reserved)
        }
        let decided = try await decide(orderId, reason, from: ["reserved"], reservations: reservations).state
        if decided == .expired && reason == .cancelled {
            // A cancel of an order that expired answers the expiry's replay, as rollback.lua does on one Redis; the
            // parts follow the directory, should the expiry have stopped before moving them.
            return .move(transition: .expired, decidedBefore: true)
        }
        if decided != reason { throw InventoryError.invalidState(decided) }
        return .move(transition: reason, decidedBefore: false)
    }

    /// Whether the hold's deadline has passed. A part's `expires_at` comes from its own node's clock (reserve.lua),
    /// and its entry in that node's expiry index falls due by the same clock: each part's deadline is compared with
    /// its own node's clock, and the order is due once any part is. The directory's node may keep another time
    /// (ClusterClockTests): compared with it, a paid order was refused as expired early when that clock was ahead,
    /// and a hold the sweeper found due was not expired while it was behind. One TIME per part, side by side. Nil when
    /// no part has a deadline (not checked: as before, when the order's was nil).
    func deadlinePassed(_ order: StoredOrder, reservations: Reservations) async throws -> Bool? {
        let deadlines = order.pieces.compactMap { part in
            part.expiresAt.map { (deadline: $0, node: reservations.keys.order(order.orderId, shard: part.shard)) }
        }
        guard !deadlines.isEmpty else { return nil }
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            for (deadline, node) in deadlines {
                group.addTask { try await deadline <= reservations.stores.redisNow(routingKey: node) }
            }
            for try await due in group where due {
                group.cancelAll()
                return true
            }
            return false
        }
    }

    func startRefund(_ orderId: String, reservations: Reservations) async throws {
        let decided = try await decide(orderId, .refunded, from: ["confirmed"], reservations: reservations).state
        if decided != .refunded { throw InventoryError.invalidState(decided) }
    }

    func moveLeftBehind(_ orderId: String, decided state: ReservationStatus, reservations: Reservations) async throws {
        switch state {
        case .confirmed: _ = try await reservations.confirm(named: orderId)
        case .cancelled: _ = try await reservations.cancel(named: orderId)
        // (The refund confirms a part the confirm left behind first.)
        case .refunded: _ = try await reservations.refund(named: orderId)
        default: break
        }
    }

    /// Decides the order's next state in its directory (the parts follow). Returns the state the directory has now
    /// (`to` when this caller or an earlier one decided it, else the state that came first) and whether this caller
    /// changed it. With `recording`, an order without a directory is recorded in state `to` (a cancel of an unknown
    /// order).
    /// `from` names directory states: the reservation statuses, and `reserving` (a reserve of several parts under
    /// way, which no transition but a cancel may leave: 503 for the others until it is done).
    /// With `tombstone`, a directory recorded cancelled writes its cancel event (the order's tombstone in MySQL) in
    /// the same step; `event` is its outbox entry ("" otherwise).
    func decide(
        _ orderId: String, _ to: ReservationStatus, from: [String], recording: Bool = false, tombstone: Bool = false,
        reservations: Reservations
    ) async throws -> (state: ReservationStatus, changed: Bool, event: String) {
        let call = DirTransitionCall(
            orderId: orderId, to: to.rawValue, from: from,
            recordingSeconds: recording ? reservations.configuration.retentionSeconds : nil, tombstone: tombstone,
            layout: reservations.keys
        )
        switch try await reservations.stores.run(call) {
        case .changed: return (to, true, "")
        case .created(let event): return (to, true, event)
        case .same: return (to, false, "")
        case .state(let state):
            guard let status = ReservationStatus(rawValue: state) else {
                throw InventoryError.unavailable("order \(orderId) is still being reserved; retry")
            }
            return (status, false, "")
        case .absent: throw InventoryError.notFound
        }
    }

    /// A cancel recorded in the directory of an order no part of which is known wrote its outbox event in the same
    /// step (dir_transition.lua): it becomes the order's tombstone in MySQL (as rollback.lua's on a single Redis),
    /// which keeps refusing a late reserve after Redis lost the directory. Sync mode commits it before the answer.
    func recordTombstone(_ orderId: String, event id: String, reservations: Reservations) async throws {
        guard reservations.configuration.durability == .sync else { return }
        guard let event = try await reservations.syncJournal.outboxEvent(shard: reservations.keys.shard(of: orderId), eventId: id) else {
            if try await reservations.hasTombstone(orderId) { return }
            throw InventoryError.outcomeUnknown("the cancel is made in Redis but not yet recorded in MySQL")
        }
        _ = try await reservations.syncJournal.commitFromOutbox(event, what: "cancel")
    }

    /// Takes back what the parts of a cancelled order hold, and fences the parts that hold nothing (each is
    /// recorded cancelled, so a part reserve still under way is refused). Safe to run again.
    func releaseParts(_ orderId: String, reservations: Reservations) async throws {
        let fields = try await reservations.stores.run(directoryFields(orderId, ["shards", "biz"], keys: reservations.keys))
        let bizId = fields[safe: 1]?.text ?? ""
        for shard in (fields[safe: 0]?.text ?? "").split(separator: ",").compactMap({ Int($0) }) {
            let part = try await reservations.orders.readPart(orderId, shard: shard)
            if let part, part.status != .reserved { continue }
            _ = try await reservations.rebuilder.run(
                onItems: RollbackCall(
                    orderId: orderId, shard: shard, bizId: bizId, lines: part?.lines ?? [], linesText: part?.linesText ?? "",
                    reason: .cancelled, knownOrder: true, retentionSeconds: reservations.configuration.retentionSeconds,
                    layout: reservations.keys
                )
            )
        }
    }

    func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int, reservations: Reservations) async throws -> [String] {
        let reply = try await reservations.stores.redisCall {
            try await reservations.stores.redis.command(
                "ZRANGEBYSCORE", reservations.keys.pendingIndex(shard: shard), "-inf", String(nowMilliseconds), "LIMIT", "0",
                String(limit)
            )
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    /// The order is cancelled (its caller, if it comes back, is told so) and its parts are taken back.
    func abandon(named orderId: String, reservations: Reservations) async throws -> Bool {
        let decided = try await decide(orderId, .cancelled, from: ["reserving"], reservations: reservations)
        if decided.state == .cancelled {
            try await releaseParts(orderId, reservations: reservations)
            if decided.changed {
                reservations.stores.logger.warning(
                    "a reserve of several parts did not finish in time; its parts are taken back",
                    metadata: ["orderId": "\(orderId)"]
                )
            }
            return decided.changed
        }
        // Reserved or decided since: nothing under way any more.
        _ = try? await reservations.stores.redisCall {
            try await reservations.stores.redis.command("ZREM", reservations.keys.pendingIndex(forOrder: orderId), orderId)
        }
        return false
    }

    func ownerKey(bareOrderId: String, keys: KeyLayout) -> String { keys.directory(bareOrderId) }

    func readOrder(_ orderId: String, reader: OrderReader) async throws -> StoredOrder? {
        let keys = reader.keys
        let fields = try await reader.stores.run(directoryFields(orderId, ["state", "shards", "biz"], keys: keys))
        guard let stateText = fields[safe: 0]?.text, let state = ReservationStatus(rawValue: stateText) else { return nil }
        try InventoryEngine.checkOwner(orderId, storedBiz: fields[safe: 2]?.text ?? "")
        let shards = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
        // The parts are read all at once (one round trip, not one per part), kept in the directory's order.
        let read: [StoredOrder?]
        if shards.count == 1 {
            read = [try await reader.readPart(orderId, shard: shards[0])]
        } else {
            read = try await withThrowingTaskGroup(of: (Int, StoredOrder?).self) { group in
                for (index, shard) in shards.enumerated() {
                    group.addTask { (index, try await reader.readPart(orderId, shard: shard)) }
                }
                var parts = [StoredOrder?](repeating: nil, count: shards.count)
                for try await (index, part) in group { parts[index] = part }
                return parts
            }
        }
        // A part not there: a reserve still under way or one that stopped half-way (nothing to answer from yet),
        // or a part Redis lost (restored from the journal by the caller).
        let parts = read.compactMap { $0 }
        guard parts.count == shards.count else { return nil }
        return StoredOrder.merged(orderId: orderId, bizId: fields[safe: 2]?.text ?? "", state: state, parts: parts)
    }

    /// The directory, if it is missing too, and the parts that held nothing (they have no journal row).
    func restoreRest(
        _ orderId: String, shards: [Int], from row: JournalRow, status: String, request: String, reader: OrderReader
    ) async throws {
        _ = try await reader.stores.run(
            DirTransitionCall(
                orderId: orderId, to: status, from: [], recordingSeconds: reader.configuration.retentionSeconds,
                shards: shards, bizId: row.bizId, request: request, layout: reader.keys
            )
        )
        try await restoreEmptyParts(orderId, restored: Set(shards), from: row, status: status, request: request, reader: reader)
    }

    /// A part of a partial order that held nothing has no journal row, so a restore from the journal does not bring
    /// it back, and the directory, which still names it, would never find the order whole. Such a part is written
    /// anew with no lines (it holds nothing, as before): the order answers again, and a retry of the same request
    /// finds the part and holds nothing more on it. Not for an order still `reserving` (a part missing then is one
    /// being held now).
    func restoreEmptyParts(
        _ orderId: String, restored: Set<Int>, from row: JournalRow, status: String, request: String, reader: OrderReader
    ) async throws {
        let keys = reader.keys
        let directory = try await reader.stores.run(directoryFields(orderId, ["state", "shards"], keys: keys))
        guard let state = directory[safe: 0]?.text, state != "reserving" else { return }
        let shards = (directory[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
        for shard in shards where !restored.contains(shard) {
            let call = RestoreOrderCall(
                orderId: orderId, shard: shard, bizId: row.bizId, userId: row.userId, status: status, lines: [], codes: [],
                expiresAtMilliseconds: row.expiresAtMilliseconds, request: request,
                retentionSeconds: reader.configuration.retentionSeconds, layout: keys
            )
            if try await reader.stores.run(call) {
                reader.stores.logger.notice(
                    "an order's part that held nothing restored empty", metadata: ["orderId": "\(orderId)", "shard": "\(shard)"]
                )
            }
        }
    }
}

extension ClusterPlacement {
    /// A read of the order's directory's `fields` (the directory's shard's drain mark checked first).
    func directoryFields(_ orderId: String, _ fields: [String], keys: KeyLayout) -> ReadFieldsCall {
        ReadFieldsCall(keys.directory(orderId), fields: fields, shard: keys.shard(of: orderId), layout: keys)
    }
}
