import Logging
import RedisClient

/// Redis Cluster: an order kept in parts has a directory, in the order's own shard, that decides its state first
/// (the parts follow); a reserve of several parts that stopped half-way is given up from it.
extension InventoryEngine {
    /// Redis Cluster: decides the order's next state in its directory (the parts follow). Returns the state the
    /// directory has now (`to` when this caller or an earlier one decided it, else the state that came first) and
    /// whether this caller changed it. With `recording`, an order without a directory is recorded in state `to` (a
    /// cancel of an unknown order).
    /// `from` names directory states: the reservation statuses, and `reserving` (a reserve of several parts under
    /// way, which no transition but a cancel may leave: 503 for the others until it is done).
    /// With `tombstone`, a directory recorded cancelled writes its cancel event (the order's tombstone in MySQL) in
    /// the same step; `event` is its outbox entry ("" otherwise).
    func decide(
        _ orderId: String, _ to: ReservationStatus, from: [String], recording: Bool = false, tombstone: Bool = false
    ) async throws -> (state: ReservationStatus, changed: Bool, event: String) {
        let call = DirTransitionCall(
            orderId: orderId, to: to.rawValue, from: from, recordingSeconds: recording ? configuration.retentionSeconds : nil,
            tombstone: tombstone, layout: keys
        )
        switch try await run(call) {
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

    /// Redis Cluster: a cancel recorded in the directory of an order no part of which is known wrote its outbox event
    /// in the same step (dir_transition.lua): it becomes the order's tombstone in MySQL (as rollback.lua's on a
    /// single Redis), which keeps refusing a late reserve after Redis lost the directory. Sync mode commits it
    /// before the answer.
    func recordTombstone(_ orderId: String, event id: String) async throws {
        let shard = keys.shard(of: orderId)
        guard configuration.durability == .sync else { return }
        guard let event = try await outboxEvent(shard: shard, eventId: id) else {
            if try await hasTombstone(orderId) { return }
            throw InventoryError.outcomeUnknown("the cancel is made in Redis but not yet recorded in MySQL")
        }
        _ = try await commitFromOutbox(event, what: "cancel")
    }

    /// Redis Cluster: takes back what the parts of a cancelled order hold, and fences the parts that hold nothing
    /// (each is recorded cancelled, so a part reserve still under way is refused). Safe to run again.
    func releaseParts(_ orderId: String) async throws {
        let fields = try await redisCall {
            try await self.redis.command("HMGET", self.keys.directory(orderId), "shards", "biz")
        }.array ?? []
        let bizId = fields[safe: 1]?.text ?? ""
        for shard in (fields[safe: 0]?.text ?? "").split(separator: ",").compactMap({ Int($0) }) {
            let part = try await readPart(orderId, shard: shard)
            if let part, part.status != .reserved { continue }
            _ = try await run(
                onItems: RollbackCall(
                    orderId: orderId, shard: shard, bizId: bizId, lines: part?.lines ?? [], linesText: part?.linesText ?? "",
                    reason: .cancelled, retentionSeconds: configuration.retentionSeconds, layout: keys
                )
            )
        }
    }

    /// Redis Cluster: reserves of several parts still under way past their deadline in one shard (their callers
    /// stopped half-way), at most `limit`: their Redis names (`OrderRef.name`).
    public func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int) async throws -> [String] {
        let reply = try await redisCall {
            try await self.redis.command(
                "ZRANGEBYSCORE", self.keys.pendingIndex(shard: shard), "-inf", String(nowMilliseconds), "LIMIT", "0",
                String(limit)
            )
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    /// Redis Cluster: gives up on a reserve of several parts that did not finish in time: the order is cancelled
    /// (its caller, if it comes back, is told so) and its parts are taken back. Returns whether it was given up now.
    /// `orderId`: the order's Redis name, as `abandonedReserves` lists it.
    @discardableResult
    public func abandon(named orderId: String) async throws -> Bool {
        let decided = try await decide(orderId, .cancelled, from: ["reserving"])
        if decided.state == .cancelled {
            try await releaseParts(orderId)
            if decided.changed {
                logger.warning("a reserve of several parts did not finish in time; its parts are taken back", metadata: ["orderId": "\(orderId)"])
            }
            return decided.changed
        }
        // Reserved or decided since: nothing under way any more.
        _ = try? await redisCall { try await self.redis.command("ZREM", self.keys.pendingIndex(forOrder: orderId), orderId) }
        return false
    }
}
