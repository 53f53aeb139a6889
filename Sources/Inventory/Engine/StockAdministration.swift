import Foundation
import Logging
import MySQLClient
import RedisClient

/// Stock administration: reads, PUT and adjustments, each with its Redis and MySQL halves (the reconciler's fence
/// between them, settling a change whose COMMIT got no answer, reversal through the `Compensator`).
struct StockAdministration: Sendable, EngineCollaborator {
    let stores: EngineStores
    let rebuilder: ItemRebuilder
    let stockRepository: StockRepository
    let compensator: Compensator

    /// The item's stock (rebuilt from MySQL first if Redis does not have it).
    func stock(_ id: StockItemID) async throws -> StockLevel {
        if let level = try await readStock(id) { return level }
        guard try await rebuilder.ensureItem(id), let level = try await readStock(id) else { throw InventoryError.notFound }
        return level
    }

    func readStock(_ id: StockItemID) async throws -> StockLevel? {
        let fields = try await stores.run(
            ReadFieldsCall(
                keys.item(id),
                fields: [
                    "stock_num", "used_stock_num", "is_sell_out", "is_infinite", "danger_num", "backorder_limit", "user_limit",
                    "user_window",
                ],
                shard: keys.itemShard(id), layout: keys
            )
        )
        guard let available = fields[safe: 0]?.int else { return nil }
        let level = StockLevel(
            item: id,
            available: available,
            reserved: fields[safe: 1]?.int ?? 0,
            soldOut: fields[safe: 2]?.text == "1",
            infinite: fields[safe: 3]?.text == "1",
            dangerNum: fields[safe: 4]?.int ?? 0,
            backorderLimit: fields[safe: 5]?.int ?? 0,
            userLimit: fields[safe: 6]?.int ?? 0,
            userWindowSeconds: fields[safe: 7]?.int ?? 0
        )
        noteLowStock(level)
        return level
    }

    /// Low-stock items get gauges, and a warning the first time they are seen low; an item seen recovered loses
    /// them (and its place in the bounded table).
    func noteLowStock(_ level: StockLevel) {
        guard InventoryEngine.isWatched(level) else {
            InventoryMetrics.recovered(level.item)
            return
        }
        if InventoryMetrics.lowStock(level.item, available: level.available, reserved: level.reserved) {
            stores.logger.warning(
                "low stock",
                metadata: [
                    "item": "\(level.item)", "available": "\(level.available)", "reserved": "\(level.reserved)",
                    "dangerNum": "\(level.dangerNum)",
                ]
            )
        }
    }

    /// Sets on-hand stock (available + reserved) and the item's settings in Redis and MySQL.
    func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel {
        let itemKey = keys.item(id)
        let call = SetStockCall(id, settings, itemTTLSeconds: configuration.itemTTLSeconds, layout: keys)
        var reply = try await runWhenNoneUnderWay(id) { try await self.stores.run(call) }
        if reply == .missing || reply == .stale {
            // Not in Redis: it comes from MySQL through the one rebuild path, a new item with a row of 0 made first.
            // Two PUTs creating an item then meet in Redis, each moving it by its own delta, and MySQL gets both
            // deltas (a delta taken from an unlocked read of MySQL could miss the other's).
            let created: Bool
            do { created = try await stockRepository.ensureRow(bizId: id.bizId, skuId: id.skuId) } catch { throw stores.mapMySQL(error) }
            // An item with a half nobody closed is dropped for the rebuild once MySQL has answered (a MySQL found down
            // here leaves the item, and its reserves, as they were; one that goes down before the rebuild below leaves
            // the item to be rebuilt on its next use).
            if reply == .stale { _ = try await stores.redisCall { try await self.stores.redis.command("DEL", itemKey) } }
            // A new item is made, not rebuilt: it does not count as one (the metric tells of Redis losing items), nor
            // does one dropped for a stale half.
            _ = try await rebuilder.ensureMadeItem(id, countsAsRebuild: !created && reply != .stale)
            reply = try await runWhenNoneUnderWay(id) { try await self.rebuilder.run(onItems: call) }
        }
        let delta: Int64
        let token: String
        let before: String
        switch reply {
        case .changed(let moved, let itemMark, let settingsBefore):
            delta = moved
            token = itemMark
            before = settingsBefore
        case .belowReserved(let reserved):
            throw InventoryError.belowReserved(reserved: reserved)
        case .oneTimeCodes:
            throw CodePoolAdministration.oneTimeStock
        case .missing, .stale:
            throw InventoryError.unavailable("stock item \(id) kept vanishing from Redis; retry")
        case .busy:
            throw InventoryError.unavailable("another stock change of item \(id) is under way; retry")
        }
        let outcome: StockChangeOutcome
        do {
            var change = StockChange(
                bizId: id.bizId, skuId: id.skuId, delta: delta, reason: "set", source: "set:\(UUID().uuidString)",
                infinite: settings.infinite, dangerNum: settings.dangerNum, backorderLimit: settings.backorderLimit,
                userLimit: settings.userLimit, userWindowSeconds: settings.userWindowSeconds
            )
            // The delta was taken from the item as this half found it: not committed once the item is another.
            change.itemMark = token.lastIndex(of: "@").map { String(token[..<$0]) }
            outcome = try await stockRepository.apply(change, fences: stores.batchFences, drainMark: keys.drainMark(item: id))
        } catch {
            // The settings the change made go back with its delta: a 503 leaves the item as it was. A PUT that made the
            // item infinite or finite is never kept (it may sell without limit while MySQL's stays finite, which the
            // reconciler does not compare): its reversal drops the item, and the rebuild reads MySQL's outcome.
            if !Self.flipsInfinite(before), keepsRedisHalf(after: error, delta: delta, itemKey: itemKey) {
                // Kept, in the item it was made in only (unsettle.lua drops an item rebuilt since).
                _ = try? await stores.run(UnsettleCall(itemKey: itemKey, token: token))
            } else {
                // An addition reversed whose COMMIT got no answer: MySQL may have it all the same, so the next PUT must not
                // take its delta from the item: the reversal puts the half on the item's stale list in the same step
                // (lib/fence.lua), also when it runs later as a stored task. Before, a retry of the PUT added the delta
                // to MySQL a second time.
                let reversed = await compensator.undoStock(
                    itemKey: itemKey, delta: delta, adjustmentKey: nil, fingerprint: "", token: token, settings: before,
                    givenUp: (error as? MySQLError)?.code == .commitOutcomeUnknown
                )
                if !reversed { throw Self.halfKept(error) }
            }
            throw stores.mapMySQL(error)
        }
        await closeFence(AdminDoneCall(itemKey: itemKey, token: token, version: outcome.version, delta: delta, settings: before))
        return try await level(id)
    }

    /// How long a PUT waits for another stock change's half of the item (lua/lib/fence.lua) before it answers 503: as
    /// long as a change may wait for a MySQL connection (`MySQLConfiguration.acquireTimeoutSeconds`), so a burst of
    /// PUTs queued behind a busy pool still each get their turn.
    static let putWaitsForHalves = Duration.seconds(10)

    /// Runs a PUT's Redis half (set_stock.lua), again while another stock change's half of the item is under way: a
    /// PUT turns the on-hand stock asked for into a delta from what the item counts, and that half, should MySQL
    /// refuse it and Redis take it back, would leave the item short of what this PUT answered. Such a half normally
    /// lands within milliseconds; one left by a caller that stopped between the halves holds for a fence's lifetime
    /// (a minute), and the PUT answers 503 meanwhile.
    func runWhenNoneUnderWay(
        _ id: StockItemID, _ attempt: () async throws -> SetStockCall.Reply
    ) async throws -> SetStockCall.Reply {
        let deadline = ContinuousClock.now + Self.putWaitsForHalves
        var pause = Duration.milliseconds(5)
        while true {
            let reply = try await attempt()
            guard reply == .busy else { return reply }
            guard ContinuousClock.now < deadline else {
                throw InventoryError.unavailable(
                    "another stock change of item \(id) is under way (its MySQL half may be to come); retry in a minute"
                )
            }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .milliseconds(200))
        }
    }

    /// Adds or removes on-hand stock once per adjustment id, in Redis and MySQL.
    func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        // MySQL's ledger is the authority on what was applied: Redis's key of the adjustment may be gone (retention
        // over, data lost), and a replay must not move Redis even for a moment (a reserve could sell those units).
        let recorded: (delta: Int64, reason: String, half: String?)?
        do {
            recorded = try await stockRepository.ledgerEntry(source: Self.adjustmentSource(id, adjustment))
        } catch {
            throw stores.mapMySQL(error)
        }
        if let recorded {
            guard recorded.delta == adjustment.delta, recorded.reason == (adjustment.reason ?? "adjustment") else {
                throw InventoryError.idempotencyConflict
            }
            // The adjustment is made: whatever fails from here on must not answer that nothing was (`level`).
            guard try await made({ try await self.rebuilder.ensureItem(id) }) else { throw InventoryError.madeUnread("no such item") }
            // Remembered in Redis again, so the next replay is answered there (a cache: the ledger answers replays);
            // a Redis half an earlier attempt kept without knowing MySQL's outcome is settled (MySQL had it), or
            // reversed (MySQL had another attempt's half).
            let adjustmentKey = keys.adjustmentKey(id, adjustmentId: adjustment.adjustmentId)
            await settleAdjustmentKey(
                itemKey: keys.item(id), adjustmentKey: adjustmentKey, adjustment, ledgerHalf: LedgerHalf(recorded.half)
            )
            _ = try? await stores.redisCall {
                try await self.stores.redis.command(
                    "SET", adjustmentKey, adjustment.fingerprint, "NX", "EX", String(self.configuration.retentionSeconds)
                )
            }
            return AdjustmentOutcome(level: try await level(id), replayed: true)
        }
        do {
            return try await adjustStockOnce(id, adjustment)
        } catch InventoryError.notFound {
            guard try await rebuilder.ensureItem(id) else { throw InventoryError.notFound }
            return try await adjustStockOnce(id, adjustment)
        }
    }

    func adjustStockOnce(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        let itemKey = keys.item(id)
        let adjustmentKey = keys.adjustmentKey(id, adjustmentId: adjustment.adjustmentId)
        let source = Self.adjustmentSource(id, adjustment)
        // The MySQL half commits within this of the Redis half's making (or taking over), or not at all.
        let deadline = ContinuousClock.now + configuration.adjustmentCommitDeadline
        switch try await stores.run(AdjustStockCall(id, adjustment, retentionSeconds: configuration.retentionSeconds, layout: keys)) {
        case .applied(let token):
            // The half is named by its token until a retry takes it over (lua/lib/fence.lua).
            let outcome: StockChangeOutcome
            do {
                outcome = try await stockRepository.apply(
                    Self.mysqlHalf(id, adjustment, half: token, deadline: deadline), fences: stores.batchFences,
                    drainMark: keys.drainMark(item: id)
                )
            } catch {
                try await halfFailed(error, adjustment, itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, source: source)
            }
            if case .duplicate(let recorded) = outcome {
                // MySQL's ledger is the authority: it had this adjustment already, so this is a replay. From this very
                // half, a retry having taken it over (it closes it), or from another attempt's (Redis forgot the key
                // between the two: retention over, eviction, data lost): the half made now is then a surplus,
                // reversed, and its key with it (a replay reads the ledger first), whatever a retry writes into the
                // key meanwhile. (A conflicting body cannot be told from the ledger, which keeps the source only: a
                // replay after the key is gone is taken as the same adjustment.) A row that could not be read is left
                // to the key and a locking read of the ledger (lua/undo_stock.lua): this attempt still owning the half,
                // the row is another's.
                if recorded != .named(token) {
                    await compensator.undoStock(
                        itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey,
                        fingerprint: adjustment.fingerprint, token: token, surplus: recorded != .unknown, source: source
                    )
                }
                return AdjustmentOutcome(level: try await level(id), replayed: true)
            }
            await closeFence(close(adjustment, itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, outcome))
            return AdjustmentOutcome(level: try await level(id), replayed: false)
        case .replay:
            return AdjustmentOutcome(level: try await level(id), replayed: true)
        case .unsettled(let token, let half):
            // An earlier attempt's Redis half is still in the item (it kept it without learning whether MySQL had it,
            // or it died more than a fence's lifetime ago), and the ledger (read just before) does not have it: the
            // MySQL half is made now, once whatever races it (the ledger's source), under the half's name.
            let outcome: StockChangeOutcome
            do {
                outcome = try await stockRepository.apply(
                    Self.mysqlHalf(id, adjustment, half: half.isEmpty ? nil : half, deadline: deadline),
                    fences: stores.batchFences, drainMark: keys.drainMark(item: id)
                )
            } catch {
                // The half is this retry's now (it took it over): reversed or kept as its own would be.
                try await halfFailed(
                    error, adjustment, itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, half: half, source: source
                )
            }
            if case .duplicate(let recorded) = outcome, !half.isEmpty, recorded != .named(half) {
                guard recorded != .unknown else {
                    // Whose row it is cannot be read: a removal is kept as one whose COMMIT got no answer (a replay
                    // settles or reverses it by the ledger's row), an addition goes (Redis never has more to sell than
                    // MySQL may have).
                    if adjustment.delta < 0 {
                        _ = try? await stores.run(
                            UnsettleCall(itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, fingerprint: adjustment.fingerprint)
                        )
                    } else {
                        await compensator.undoStock(
                            itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey,
                            fingerprint: adjustment.fingerprint, token: token, half: half, source: source
                        )
                    }
                    throw InventoryError.outcomeUnknown("MySQL has this adjustment, from a row that could not be read; retry")
                }
                // MySQL has another attempt's half (this one's key had vanished when that attempt made it; a row that
                // names no half is not this named one's): the half taken over is a surplus, reversed by this retry,
                // its owner (the attempt that made it leaves it).
                await compensator.undoStock(
                    itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey, fingerprint: adjustment.fingerprint,
                    token: token, surplus: true, half: half, source: source
                )
                return AdjustmentOutcome(level: try await level(id), replayed: true)
            }
            await closeFence(close(adjustment, itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, outcome))
            return AdjustmentOutcome(level: try await level(id), replayed: true)
        case .busy:
            throw InventoryError.unavailable(
                "an earlier attempt of this adjustment is still under way (its MySQL half may be to come); retry in a minute"
            )
        case .conflict:
            throw InventoryError.idempotencyConflict
        case .missing:
            throw InventoryError.notFound
        case .belowReserved(let reserved):
            throw InventoryError.belowReserved(reserved: reserved)
        case .oneTimeCodes:
            throw CodePoolAdministration.oneTimeStock
        }
    }

    /// An adjustment's MySQL half failed: a removal whose COMMIT got no answer keeps its Redis half, and its key says
    /// so (a retry must not take it for a finished adjustment: it completes the MySQL half, or applies it afresh
    /// should a repair take the half out first); anything else is reversed, its key with it. Throws the answer.
    func halfFailed(
        _ error: any Error, _ adjustment: StockAdjustment, itemKey: String, adjustmentKey: String, token: String,
        half: String = "", source: String
    ) async throws -> Never {
        if keepsRedisHalf(after: error, delta: adjustment.delta, itemKey: itemKey) {
            _ = try? await stores.run(
                UnsettleCall(itemKey: itemKey, adjustmentKey: adjustmentKey, token: token, fingerprint: adjustment.fingerprint)
            )
        } else if await !compensator.undoStock(
            itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey, fingerprint: adjustment.fingerprint,
            token: token, half: half, source: source
        ) {
            throw Self.halfKept(error)
        }
        throw stores.mapMySQL(error)
    }

    /// Whether a stock change whose MySQL half failed keeps its Redis half instead of being reversed: only when
    /// MySQL may have it (its COMMIT got no answer and the ledger could not be read: `StockRepository.settle`) and
    /// it removed units. Either way Redis is then left with no more to sell than MySQL may have: a removal stays,
    /// an addition goes. The fence stays open and lapses, and the reconciler then brings Redis to MySQL's count.
    func keepsRedisHalf(after error: any Error, delta: Int64, itemKey: String) -> Bool {
        guard let error = error as? MySQLError, error.code == .commitOutcomeUnknown else { return false }
        stores.logger.warning(
            "stock change's MySQL outcome unknown",
            metadata: [
                "item": "\(itemKey)", "delta": "\(delta)", "redisHalf": delta < 0 ? "kept" : "reversed",
                "error": "\(error)",
            ]
        )
        return delta < 0
    }

    /// A stock change's MySQL half is done: its item is no longer fenced from the reconciler's repair
    /// (lua/lib/fence.lua), an adjustment's key says it is done. A fence left open (Redis did not answer) lapses after
    /// a minute. Returns the script's answer (nil when Redis did not give one).
    @discardableResult
    func closeFence(_ call: AdminDoneCall) async -> AdminDoneCall.Reply? {
        do {
            return try await stores.run(call)
        } catch {
            stores.logger.warning("stock change's fence not closed; it lapses", metadata: ["item": "\(call.keys[0])", "error": "\(error)"])
            return nil
        }
    }

    /// A stock change whose MySQL half failed and whose Redis half could not be reversed either (a retry task, or
    /// the reconciler, reverses it later): the answer must not say "nothing was changed".
    static func halfKept(_ error: any Error) -> InventoryError {
        .outcomeUnknown("MySQL: \(error); the change is still in Redis until a retry task reverses it")
    }

    /// An adjustment MySQL now has (from the half `ledgerHalf`): its key, if an earlier attempt left it pending or
    /// unsettled, says done (with that attempt's half), and the fence that attempt's Redis half opened is closed (while
    /// the item still has its mark); a half of another name than MySQL's (or a named one beside a row that names none)
    /// is a surplus, reversed.
    func settleAdjustmentKey(itemKey: String, adjustmentKey: String, _ adjustment: StockAdjustment, ledgerHalf: LedgerHalf) async {
        let recorded: String? =
            switch ledgerHalf {
            case .named(let half): half
            case .unnamed: "-"
            case .unknown: nil
            }
        let call = AdminDoneCall(
            itemKey: itemKey, token: "*", adjustmentKey: adjustmentKey, fingerprint: adjustment.fingerprint, ledgerHalf: recorded
        )
        if case .surplus(let token, let half) = await closeFence(call) {
            await compensator.undoStock(
                itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey, fingerprint: adjustment.fingerprint,
                token: token, surplus: true, half: half
            )
        }
    }

    /// The item's stock level once a change was made in both stores: a failure to read it (the close dropped the item
    /// and its rebuild failed, Redis went away) must not answer as if nothing was changed.
    func level(_ id: StockItemID) async throws -> StockLevel {
        try await made { try await stock(id) }
    }

    /// Runs `step` of a change already made in both stores: its failure is answered as `madeUnread`, never as if
    /// nothing was changed (nor as no such item: the item was dropped or vanished meanwhile).
    func made<T>(_ step: () async throws -> T) async throws -> T {
        do {
            return try await step()
        } catch let error as InventoryError {
            switch error {
            case .unavailable(let detail), .outcomeUnknown(let detail): throw InventoryError.madeUnread(detail)
            case .notFound: throw InventoryError.madeUnread("the item is gone from Redis")
            default: throw error
            }
        }
    }

    /// Whether a PUT's changed settings ('field=old>new,...', set_stock.lua) made the item infinite or finite.
    static func flipsInfinite(_ settings: String) -> Bool {
        for setting in settings.split(separator: ",") where setting.hasPrefix("is_infinite=") {
            let values = setting.dropFirst("is_infinite=".count).split(separator: ">", omittingEmptySubsequences: false)
            return values.count == 2 && values[0] != values[1]
        }
        return false
    }

    /// An adjustment's MySQL half: its delta and reason, once per ledger source, and the name of the Redis half it
    /// belongs to (lua/lib/fence.lua; nil when not known); not committed after `deadline`.
    static func mysqlHalf(
        _ id: StockItemID, _ adjustment: StockAdjustment, half: String?, deadline: ContinuousClock.Instant? = nil
    ) -> StockChange {
        var change = StockChange(
            bizId: id.bizId, skuId: id.skuId, delta: adjustment.delta, reason: adjustment.reason ?? "adjustment",
            source: adjustmentSource(id, adjustment), infinite: nil, dangerNum: nil, backorderLimit: nil, half: half
        )
        change.deadline = deadline
        return change
    }

    /// The close of an adjustment's half whose MySQL half is done (`outcome`'s version: lua/admin_done.lua).
    func close(
        _ adjustment: StockAdjustment, itemKey: String, adjustmentKey: String, token: String, _ outcome: StockChangeOutcome
    ) -> AdminDoneCall {
        AdminDoneCall(
            itemKey: itemKey, token: token, adjustmentKey: adjustmentKey, fingerprint: adjustment.fingerprint,
            version: outcome.version, delta: adjustment.delta
        )
    }

    /// The ledger source of an adjustment: unique per item and adjustment id.
    static func adjustmentSource(_ id: StockItemID, _ adjustment: StockAdjustment) -> String {
        "adj:\(id.bizId):\(id.skuId):\(adjustment.adjustmentId)"
    }
}
