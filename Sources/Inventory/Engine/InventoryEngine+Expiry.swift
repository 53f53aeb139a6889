import Logging
import RedisClient

/// Expiry: the sweeper's reads (its lease, the due holds of a shard, the journal's holds past their time) and giving
/// up a reserve of several parts (a hold expired now is `Reservations.expire`).
extension InventoryEngine {
    /// Takes or renews the lease of sweeping one shard for `owner`; true when `owner` holds it (lua/lease.lua).
    public func sweepLease(shard: Int, owner: String, milliseconds: Int) async throws -> Bool {
        try await run(LeaseCall(key: keys.sweepLease(shard: shard), owner: owner, milliseconds: milliseconds))
    }

    /// Orders whose hold expired by `nowMilliseconds`, oldest first, at most `limit` of one shard's index: their
    /// Redis names (`OrderRef.name`).
    public func expiredOrders(shard: Int, nowMilliseconds: Int64, limit: Int) async throws -> [String] {
        let reply = try await redisCall {
            try await self.redis.command(
                "ZRANGEBYSCORE", self.keys.expiryIndexes[shard], "-inf", String(nowMilliseconds), "LIMIT", "0",
                String(limit)
            )
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    /// Orders the journal still holds RESERVED although their hold ended more than `graceMilliseconds` ago, by Redis's
    /// clock (the deadlines are Redis's: an instance whose clock is behind would not see them due), from the journal
    /// lines after row `afterRow`: their Redis names (`OrderRef.name`), and the row to go on after when the page was
    /// full (`JournalRepository.heldPast`).
    public func staleJournalHolds(
        graceMilliseconds: Int64, limit: Int, bizId: String? = nil, afterRow: Int64 = 0
    ) async throws -> (orders: [String], lastRow: Int64?) {
        let now = try await redisNow()
        do {
            let page = try await journal.heldPast(milliseconds: now - graceMilliseconds, bizId: bizId, limit: limit, afterRow: afterRow)
            return (page.orders.map(\.name), page.lastRow)
        } catch {
            throw mapMySQL(error)
        }
    }

    /// Reserves still under way past their deadline in one shard (their callers stopped half-way; only on a Redis
    /// Cluster, where an order of several parts is held in several steps), at most `limit`: their Redis names
    /// (`OrderRef.name`).
    public func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int) async throws -> [String] {
        try await placement.abandonedReserves(shard: shard, nowMilliseconds: nowMilliseconds, limit: limit, reservations: reservations)
    }

    /// Gives up on a reserve of several parts that did not finish in time: the order is cancelled (its caller, if
    /// it comes back, is told so) and its parts are taken back. Returns whether it was given up now.
    /// `orderId`: the order's Redis name, as `abandonedReserves` lists it.
    @discardableResult
    public func abandon(named orderId: String) async throws -> Bool {
        try await placement.abandon(named: orderId, reservations: reservations)
    }
}
