import Foundation
import Logging
import Metrics
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// The one init path: an item missing from Redis rebuilt from MySQL under the init lock, after the outbox events still pending for it.
extension InventoryEngine {
    /// Counters of this engine.
    public var stats: EngineCounters { counters.withLockedValue { $0 } }

    /// Makes sure the item is in Redis, rebuilding it from MySQL when it is missing: one caller across all
    /// instances takes the init lock and rebuilds, the others wait (bounded) and then see the rebuilt item.
    /// Returns false when MySQL has no such item either.
    /// `countsAsRebuild` false: the item is new (its MySQL row was just made), not lost by Redis; it is not counted
    /// in `stats.itemRebuilds` and the rebuild metric.
    /// `madeInMySQL`: the caller has just made (or seen) the item's MySQL row, so a negative entry another lookup may
    /// still write (it read MySQL before the row existed) is not believed.
    public func ensureItem(_ id: StockItemID, countsAsRebuild: Bool = true, madeInMySQL: Bool = false) async throws -> Bool {
        let (task, owner) = rebuilding.withLockedValue { running -> (Task<Bool, any Error>, Bool) in
            if let task = running[id] { return (task, false) }
            // Shared by every caller waiting for this item: none of their task-local state (an order's owner check)
            // is its.
            let task = Task {
                try await OwnerCheck.$active.withValue(false) {
                    try await self.rebuild(id, counting: countsAsRebuild, believeAbsent: !madeInMySQL)
                }
            }
            running[id] = task
            return (task, true)
        }
        if owner {
            defer { _ = rebuilding.withLockedValue { $0.removeValue(forKey: id) } }
            return try await task.value
        }
        return try await task.value
    }

    func rebuild(_ id: StockItemID, counting: Bool, believeAbsent: Bool = true) async throws -> Bool {
        let caller = UUID().uuidString
        let itemKey = keys.item(id)
        let deadline = ContinuousClock.now + .milliseconds(configuration.initWaitMilliseconds)
        var pause = 2
        while true {
            switch try await run(InitLockCall(id, caller: caller, lockMilliseconds: configuration.initLockMilliseconds, layout: keys)) {
            case .ready:
                return true
            case .locked:
                // MySQL said "no such item" a moment ago (any instance): unknown without asking it again. Only the
                // caller that would read MySQL looks: an item in Redis is ready whatever an entry says.
                if believeAbsent,
                    try await redisCall({ try await self.redis.send(["EXISTS", self.keys.absent(id)], routingKey: self.keys.absent(id)) })
                        .int == 1
                {
                    _ = try await redisCall { try await self.redis.command("DEL", itemKey) }
                    return false
                }
                return try await rebuildLocked(id, itemKey: itemKey, caller: caller, counting: counting)
            case .wait:
                guard ContinuousClock.now < deadline else {
                    throw InventoryError.unavailable("stock item \(id) is being rebuilt by another caller; retry")
                }
                try await Task.sleep(for: .milliseconds(pause))
                pause = min(pause * 2, 50)
            }
        }
    }

    /// Rebuilds the item while holding its MySQL stock row locked, from the read until Redis has the result: a
    /// write-back batch touching the item either commits before the read (and is counted) or waits and then sees
    /// the new epoch (and leaves out its lines of the old one; see `JournalRepository.apply(_:epochs:)`).
    ///
    /// The item's outbox events still in the streams are applied to the journal first, in the same transaction:
    /// the item vanished alone (its TTL ran out, Redis evicted it, it was deleted) while the rest of Redis kept
    /// them, and the rebuilt item must count them. Their epochs are recorded as absorbed (init_item.lua), so their
    /// lines are not stale when the worker or a sync commit brings them again (applying them twice changes nothing).
    /// Only events Redis itself lost (a whole data loss) stay out, as stale lines of an epoch nothing absorbed.
    /// The item's MySQL row exists now (a PUT or a pool made it): the negative entry goes, a lookup that read MySQL
    /// before the row existed writes none after (lua/absent.lua), and the item is brought into Redis without
    /// believing an entry (a shared rebuild of a believing lookup may answer false, so this asks again).
    func ensureMadeItem(_ id: StockItemID, countsAsRebuild: Bool) async throws -> Bool {
        // First the "made" marker (a lookup that read MySQL before the row existed then writes no entry), then the
        // entry goes.
        let made = keys.made(id)
        let lifetime = String(max(10 * configuration.absentMilliseconds, 10_000))
        _ = try await redisCall { try await self.redis.send(["SET", made, "1", "PX", lifetime], routingKey: made) }
        let absent = keys.absent(id)
        _ = try await redisCall { try await self.redis.send(["DEL", absent], routingKey: absent) }
        for _ in 0..<3 {
            if try await ensureItem(id, countsAsRebuild: countsAsRebuild, madeInMySQL: true) { return true }
        }
        return false
    }

    func rebuildLocked(_ id: StockItemID, itemKey: String, caller: String, counting: Bool) async throws -> Bool {
        // The per-user window the rebuilt usage counts is Redis's current one, as reserve.lua computes it.
        let now = try await redisNow(routingKey: itemKey)
        let epoch = Self.newEpoch(bornAt: now)
        let pending = try await pendingEvents(touching: id)
        var drainedEpochs = Set(pending.flatMap { $0.lines.filter { $0.skuId == id.skuId }.map(\.epoch) })
        drainedEpochs.remove("")
        let outcome: (written: Bool, row: StockRow, liveReserved: Int64)?
        do {
            outcome = try await stockRepository.withInitSnapshot(
                bizId: id.bizId, skuId: id.skuId, nowMilliseconds: now, pending: pending
            ) { snapshot in
                guard let snapshot else { return nil }
                let written = try await self.run(
                    InitItemCall(
                        id, caller: caller, snapshot: snapshot, epoch: epoch, drainedEpochs: drainedEpochs,
                        outboxes: self.keys.outboxes(holding: id), now: now, itemTTLSeconds: self.configuration.itemTTLSeconds,
                        retentionSeconds: self.configuration.retentionSeconds, layout: self.keys
                    )
                )
                return (written, snapshot.row, snapshot.liveReserved)
            }
        } catch let error as InventoryError {
            throw error
        } catch {
            _ = try? await redisCall { try await self.redis.command("DEL", itemKey) }
            throw mapMySQL(error)
        }
        guard let outcome else {
            // Nothing to rebuild: drop the lock-only hash so the item stays plainly absent, and remember for a
            // moment that MySQL has no such item (a flood of requests for unknown items costs one lookup each, not
            // one per request; creating the item deletes the entry).
            _ = try await redisCall { try await self.redis.command("DEL", itemKey) }
            _ = try? await run(AbsentCall(id, milliseconds: configuration.absentMilliseconds, layout: keys))
            return false
        }
        if outcome.written && counting {
            counters.withLockedValue { $0.itemRebuilds += 1 }
            InventoryMetrics.itemRebuilds.increment()
            logger.notice(
                "stock item rebuilt from MySQL",
                metadata: [
                    "item": "\(id)", "stock": "\(outcome.row.stock)", "liveReserved": "\(outcome.liveReserved)",
                    "epoch": "\(epoch)",
                ]
            )
        }
        return true
    }

    /// The outbox events not yet acknowledged (acknowledged ones are deleted: they are in the journal) that have a
    /// line of `id`, in stream order, a reserve and its undo reduced as the worker reduces them. On a single Redis an
    /// item's events may be in any shard's stream (an order's shard decides); on a cluster only in the item's shard.
    func pendingEvents(touching id: StockItemID) async throws -> [OutboxEvent] {
        let streams = keys.outboxes(holding: id)
        var found: [OutboxEvent] = []
        for stream in streams {
            found += try await pendingEvents(in: stream) { event in
                event.bizId == id.bizId && event.lines.contains(where: { $0.skuId == id.skuId })
            }
        }
        return WriteBackWorker.cancellingUndone(found)
    }

    /// The events of `stream` not yet acknowledged that `wanted` keeps, in stream order (read in pages).
    func pendingEvents(in stream: String, _ wanted: (OutboxEvent) -> Bool) async throws -> [OutboxEvent] {
        let page = 1000
        var found: [OutboxEvent] = []
        var start = "-"
        while true {
            let reply = try await redisCall {
                try await self.redis.send(["XRANGE", stream, start, "+", "COUNT", String(page)], routingKey: stream)
            }
            if case .error(let message) = reply { throw InventoryError.unavailable("Redis: \(message)") }
            let entries = OutboxEvent.entries(stream: stream, reply)
            for case let event? in entries.map(\.event) where wanted(event) { found.append(event) }
            guard entries.count == page, let last = entries.last else { break }
            start = "(" + last.id
        }
        return found
    }
}
