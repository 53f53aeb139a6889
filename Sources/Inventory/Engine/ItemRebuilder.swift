import Foundation
import Logging
import Metrics
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// The one init path: an item missing from Redis (cold, expired, evicted, or Redis lost its data) rebuilt from MySQL
/// under the init lock, after the outbox events still pending for it; and the one place a script that answers
/// `missing` has its items rebuilt and runs again (`run(onItems:)`).
final class ItemRebuilder: Sendable, EngineCollaborator {
    let stores: EngineStores
    let stockRepository: StockRepository
    let counters = NIOLockedValueBox(EngineCounters())
    /// Rebuilds in progress in this process, so concurrent callers share one instead of polling Redis.
    let rebuilding = NIOLockedValueBox<[StockItemID: Task<Bool, any Error>]>([:])

    init(stores: EngineStores, stockRepository: StockRepository) {
        self.stores = stores
        self.stockRepository = stockRepository
    }

    /// Runs a call of a script that changes items (lib/items.lua): when it answers `missing`, the items it names are
    /// rebuilt from MySQL through the one init path, and it runs again.
    func run<Call: ItemScriptCall>(onItems call: Call) async throws -> Call.Reply {
        let script = stores.scripts[Call.name]
        for _ in 0..<3 {
            let reply = try await stores.runScript(script, keys: call.keys, arguments: call.arguments, drainMark: call.drainMark)
            let fields = ScriptReply(reply)
            guard fields.tag == "missing" else { return try Call.decode(reply) }
            for position in fields.positions(1) {
                guard let id = call.items[safe: position - 1] else {
                    throw InventoryError.unavailable("\(script.name) named item \(position) of \(call.items.count) missing")
                }
                if try await !ensureItem(id) {
                    throw InventoryError.unavailable("stock item \(id) is in neither Redis nor MySQL")
                }
            }
        }
        throw InventoryError.unavailable("the items of \(script.name) kept vanishing from Redis; retry")
    }

    /// Makes sure the item is in Redis, rebuilding it from MySQL when it is missing: one caller across all
    /// instances takes the init lock and rebuilds, the others wait (bounded) and then see the rebuilt item.
    /// Returns false when MySQL has no such item either.
    /// `countsAsRebuild` false: the item is new (its MySQL row was just made), not lost by Redis; it is not counted
    /// in `stats.itemRebuilds` and the rebuild metric.
    /// `madeInMySQL`: the caller has just made (or seen) the item's MySQL row, so a negative entry another lookup may
    /// still write (it read MySQL before the row existed) is not believed.
    func ensureItem(_ id: StockItemID, countsAsRebuild: Bool = true, madeInMySQL: Bool = false) async throws -> Bool {
        let (task, owner) = rebuilding.withLockedValue { running -> (Task<Bool, any Error>, Bool) in
            if let task = running[id] { return (task, false) }
            // Shared by every caller waiting for this item: none of their task-local state (an order's owner check)
            // is its.
            let task = Task {
                try await InventoryEngine.OwnerCheck.$active.withValue(false) {
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
        var deadline = ContinuousClock.now + .milliseconds(configuration.initWaitMilliseconds)
        var pause = 2
        var lost = 0
        while true {
            switch try await stores.run(InitLockCall(id, caller: caller, lockMilliseconds: configuration.initLockMilliseconds, layout: keys)) {
            case .ready:
                return true
            case .locked:
                // MySQL said "no such item" a moment ago (any instance): unknown without asking it again. Only the
                // caller that would read MySQL looks: an item in Redis is ready whatever an entry says.
                if believeAbsent,
                    try await stores.redisCall({ try await self.stores.redis.send(["EXISTS", self.keys.absent(id)], routingKey: self.keys.absent(id)) })
                        .int == 1
                {
                    _ = try await stores.redisCall { try await self.stores.redis.command("DEL", itemKey) }
                    return false
                }
                switch try await rebuildLocked(id, itemKey: itemKey, caller: caller, counting: counting) {
                case .written: return true
                case .absent: return false
                case .lost:
                    // Its lock was taken over, the item appeared, or a part of it vanished: look again (ready, another
                    // caller's rebuild to wait for, or this one starts over), never "ready" before the item is. The
                    // lock was taken over only after this rebuild went a whole lock lifetime without a part: the wait
                    // for the taker's rebuild is a wait of its own.
                    lost += 1
                    guard lost < 3 else {
                        throw InventoryError.unavailable("the rebuild of stock item \(id) kept being interrupted; retry")
                    }
                    deadline = ContinuousClock.now + .milliseconds(configuration.initWaitMilliseconds)
                    pause = 2
                }
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
        _ = try await stores.redisCall { try await self.stores.redis.send(["SET", made, "1", "PX", lifetime], routingKey: made) }
        let absent = keys.absent(id)
        _ = try await stores.redisCall { try await self.stores.redis.send(["DEL", absent], routingKey: absent) }
        for _ in 0..<3 {
            if try await ensureItem(id, countsAsRebuild: countsAsRebuild, madeInMySQL: true) { return true }
        }
        return false
    }

    enum Rebuilt { case written, lost, absent }

    func rebuildLocked(_ id: StockItemID, itemKey: String, caller: String, counting: Bool) async throws -> Rebuilt {
        // The per-user window the rebuilt usage counts is Redis's current one, as reserve.lua computes it.
        let now = try await stores.redisNow(routingKey: itemKey)
        let epoch = InventoryEngine.newEpoch(bornAt: now)
        let pending = try await pendingEvents(touching: id)
        var drainedEpochs = Set(pending.flatMap { $0.lines.filter { $0.skuId == id.skuId }.map(\.epoch) })
        drainedEpochs.remove("")
        let outcome: (written: Bool, row: StockRow, liveReserved: Int64)?
        do {
            outcome = try await stockRepository.withInitSnapshot(
                bizId: id.bizId, skuId: id.skuId, nowMilliseconds: now, pending: pending, fences: stores.batchFences
            ) { snapshot in
                guard let snapshot else { return nil }
                let written = try await self.write(
                    id, snapshot: snapshot, caller: caller, epoch: epoch, drainedEpochs: drainedEpochs, now: now
                )
                return (written, snapshot.row, snapshot.liveReserved)
            }
        } catch let error as InventoryError {
            throw error
        } catch is RedisWentBack {
            // Forgotten (the item's lock with the rest): tried again by the caller's retry.
            throw InventoryError.unavailable("Redis went back in time and was forgotten while this item was rebuilt; retry")
        } catch {
            _ = try? await stores.redisCall { try await self.stores.redis.command("DEL", itemKey) }
            // The rebuilt item is dropped again whatever MySQL's COMMIT did (the transaction only read): nothing changed.
            // A deadlock (its pending events' rows against another transaction's) rolled the read back: the rebuild
            // starts over, as after a lost lock (MySQL: "try restarting transaction").
            if (error as? MySQLError)?.code == .deadlock { return .lost }
            let mapped = stores.mapMySQL(error)
            if case .outcomeUnknown(let detail) = mapped { throw InventoryError.unavailable(detail) }
            throw mapped
        }
        guard let outcome else {
            // Nothing to rebuild: drop the lock-only hash so the item stays plainly absent, and remember for a
            // moment that MySQL has no such item (a flood of requests for unknown items costs one lookup each, not
            // one per request; creating the item deletes the entry).
            _ = try await stores.redisCall { try await self.stores.redis.command("DEL", itemKey) }
            _ = try? await stores.run(AbsentCall(id, milliseconds: configuration.absentMilliseconds, layout: keys))
            return .absent
        }
        guard outcome.written else { return .lost }
        if counting {
            counters.withLockedValue { $0.itemRebuilds += 1 }
            InventoryMetrics.itemRebuilds.increment()
            stores.logger.notice(
                "stock item rebuilt from MySQL",
                metadata: [
                    "item": "\(id)", "stock": "\(outcome.row.stock)", "liveReserved": "\(outcome.liveReserved)",
                    "epoch": "\(epoch)",
                ]
            )
        }
        return .written
    }

    /// Writes the rebuilt item from its snapshot in parts of at most `rebuildChunk` records, each part a short script
    /// under the init lock, which it renews: the holds re-stamped (RestampHoldsCall), the code set and the usage hash
    /// filled (FillPartCall), then the item with the last part of each (InitItemCall), which absorbs the epochs every
    /// hold's reserve key named. False when a part or the item was lost (nothing more is written).
    func write(
        _ id: StockItemID, snapshot: StockRepository.InitSnapshot, caller: String, epoch: String, drainedEpochs: Set<String>,
        now: Int64
    ) async throws -> Bool {
        let chunk = max(configuration.rebuildChunk, 1)
        let lock = configuration.initLockMilliseconds
        var before = RebuildParts()
        var epochs = drainedEpochs
        while snapshot.liveHolds.count - before.holds > chunk {
            let part = snapshot.liveHolds[before.holds..<(before.holds + chunk)]
            let call = RestampHoldsCall(
                id, caller: caller, epoch: epoch, holds: part, now: now, retentionSeconds: configuration.retentionSeconds,
                lockMilliseconds: lock, layout: keys
            )
            guard case .restamped(let previous) = try await stores.run(call) else { return false }
            epochs.formUnion(previous)
            before.holds += chunk
        }
        // The code set and the usage hash: all parts but the last through FillPartCall.
        func fill<Member>(_ members: [Member], _ written: inout Int, _ part: (ArraySlice<Member>, Int) -> FillPartCall) async throws -> Bool {
            while members.count - written > chunk {
                guard try await stores.run(part(members[written..<(written + chunk)], written)) else { return false }
                written += chunk
            }
            return true
        }
        let ttl = configuration.itemTTLSeconds
        guard
            try await fill(snapshot.codes, &before.codes, {
                FillPartCall(id, caller: caller, lockMilliseconds: lock, codes: $0, before: $1, itemTTLSeconds: ttl, layout: self.keys)
            }),
            try await fill(snapshot.usage, &before.users, {
                FillPartCall(
                    id, caller: caller, lockMilliseconds: lock, usage: $0, window: snapshot.userWindow, before: $1, itemTTLSeconds: ttl,
                    layout: self.keys
                )
            })
        else { return false }
        return try await stores.run(
            InitItemCall(
                id, caller: caller, snapshot: snapshot, epoch: epoch, drainedEpochs: epochs, outboxes: keys.outboxes(holding: id),
                now: now, itemTTLSeconds: configuration.itemTTLSeconds, retentionSeconds: configuration.retentionSeconds,
                layout: keys, before: before
            )
        )
    }

    /// The outbox events not yet acknowledged (acknowledged ones are deleted: they are in the journal) that have a
    /// line of `id`, in stream order, a reserve and its undo reduced as the worker reduces them. On a single Redis an
    /// item's events may be in any shard's stream (an order's shard decides); on a cluster only in the item's shard.
    func pendingEvents(touching id: StockItemID) async throws -> [OutboxEvent] {
        let streams = keys.outboxes(holding: id)
        var found: [OutboxEvent] = []
        for stream in streams {
            found += try await stores.pendingEvents(of: .item(id), in: stream)
        }
        return WriteBackWorker.cancellingUndone(found)
    }
}
