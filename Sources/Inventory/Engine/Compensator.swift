import Foundation
import Logging
import MySQLClient
import RedisClient

/// Compensation, the design's three levels: a Redis change whose MySQL half failed is reversed at once; a reversal
/// that fails is stored in MySQL and retried (`retryCompensations`, run by `EngineLoop.compensations`); what still fails
/// is the reconciler's.
struct Compensator: Sendable, EngineCollaborator {
    let stores: EngineStores
    let rebuilder: ItemRebuilder
    let repository: CompensationRepository
    let journal: JournalRepository

    /// First level of compensation: reverse a Redis stock change whose MySQL half failed. When that fails too,
    /// it becomes a durable retry task (second level); the reconciler is the third.
    /// `token`: the change's half's ('mark@ms', lua/lib/fence.lua: an item rebuilt or repaired since its mark never
    /// counted it); `half`: an adjustment's half's name when `token` is not it (a retry took the half over); `source`:
    /// an adjustment's ledger source (its row decides when the adjustment's key cannot).
    /// Returns whether the change was reversed now (false: a retry task, or the reconciler, will).
    @discardableResult
    func undoStock(
        itemKey: String, delta: Int64, adjustmentKey: String?, fingerprint: String, token: String, settings: String = "",
        surplus: Bool = false, half: String = "", source: String = "", givenUp: Bool = false
    ) async -> Bool {
        // An adjustment's half is reversed once whoever reverses it (the attempt that made it, a retry that took it
        // over): the marker is the half's, beside its key. Same hash tag as the item: "prefix:{biz:sku}:adj:<id>" →
        // "…:adj:<id>:undo:<half>", or "prefix:{biz:sku}:item" → "prefix:{biz:sku}:undo:<id>" for a PUT.
        let name = half.isEmpty ? token : half
        let marker =
            if let adjustmentKey, name.contains("@") {
                adjustmentKey + ":undo:" + name
            } else {
                String(itemKey.dropLast("item".count)) + "undo:" + UUID().uuidString
            }
        return await compensate(
            .undoStock(
                itemKey: itemKey, adjustmentKey: adjustmentKey ?? itemKey, delta: delta, fingerprint: fingerprint,
                marker: marker, token: token, settings: settings, surplus: surplus, half: half, source: source,
                givenUp: givenUp
            )
        )
    }

    /// Takes back a hold made by the reserve event `eventId` (sync mode's failed commit, a duplicate the worker found
    /// in the journal); a take-back that cannot run now becomes a retry task. `orderId`: the business's own id.
    func undoReserve(
        orderId: String, bizId: String, lines: [ReservationLine], eventId: String, earlierEventId: String = "",
        epochs: [UInt64: String] = [:], routine: Bool = false
    ) async {
        await compensate(
            .undoReserve(
                orderId: orderId, bizId: bizId, eventId: eventId, lines: lines, earlierEventId: earlierEventId, epochs: epochs
            ),
            routine: routine
        )
    }

    /// Runs a reversal now; a failure is stored in MySQL for the retrier, and only if that fails too is it left
    /// to the reconciler.
    /// `routine`: an expected step (a cluster order's parts taken back after another part was short), logged at
    /// debug level instead of as a warning.
    /// Returns whether the change was reversed now: the caller's answer must not say "nothing was changed" otherwise.
    @discardableResult
    func compensate(_ task: CompensationTask, storingFailure: Bool = true, routine: Bool = false) async -> Bool {
        do {
            let outcome = try await runCompensation(task)
            stores.logger.log(
                level: routine ? .debug : .warning, "reversal ran", metadata: ["compensation": "\(task)", "outcome": "\(outcome)"]
            )
            return true
        } catch {
            guard storingFailure else {
                stores.logger.error(
                    "reversal failed; not stored, the write-back worker records the change from the outbox",
                    metadata: ["compensation": "\(task)", "error": "\(error)"]
                )
                return false
            }
            do {
                try await repository.store(task, keyPrefix: keys.prefix, error: "\(error)")
                stores.logger.error(
                    "reversal failed; stored as a retry task", metadata: ["compensation": "\(task)", "error": "\(error)"]
                )
            } catch let storeError {
                stores.logger.critical(
                    "reversal failed and could not be stored; the reconciler must repair it",
                    metadata: ["compensation": "\(task)", "error": "\(error)", "storeError": "\(storeError)"]
                )
            }
            return false
        }
    }

    /// What MySQL's ledger says of an adjustment, for lua/undo_stock.lua: "none" (no row), the name of the half it
    /// has, or "?" (not known: no source, in a task stored before it was kept, or a row that names no half). The read
    /// waits for a transaction writing the row (StockRepository.lockedLedgerHalf); a ledger that cannot be read throws
    /// (the reversal is retried once MySQL answers).
    func ledgerHalf(source: String) async throws -> String {
        guard !source.isEmpty else { return "?" }
        guard let row = try await rebuilder.stockRepository.lockedLedgerHalf(source: source) else { return "none" }
        return row ?? "?"
    }

    /// Runs one reversal; safe to run again (undo_stock has a marker, undo_reserve checks the order's event).
    /// Returns what it did (the script's answer), for the log.
    @discardableResult
    func runCompensation(_ task: CompensationTask) async throws -> String {
        switch task {
        case .undoStock(
            let itemKey, let adjustmentKey, let delta, let fingerprint, let marker, let token, let settings, let surplus,
            let half, let source, let givenUp
        ):
            func undo(ledgerHalf: String) async throws -> UndoStockCall.Reply {
                try await stores.run(
                    UndoStockCall(
                        itemKey: itemKey, adjustmentKey: adjustmentKey, marker: marker, delta: delta, fingerprint: fingerprint,
                        token: token, settings: settings, surplus: surplus, half: half, ledgerHalf: ledgerHalf,
                        givenUp: givenUp, retentionSeconds: configuration.retentionSeconds
                    )
                )
            }
            // A retry's reversal of a removal it took over asks the ledger first (a locking read: it waits for the
            // transaction of the attempt it took the half from, which may be committing it); an addition goes
            // without asking (Redis never has more to sell than MySQL may have).
            let takenOverRemoval = !half.isEmpty && half != token && delta < 0 && !surplus && !source.isEmpty
            var reply = try await undo(ledgerHalf: takenOverRemoval ? try await ledgerHalf(source: source) : "")
            if reply == .check {
                // The adjustment's key cannot tell whether MySQL has the half (it vanished, or names another half):
                // MySQL's ledger says.
                reply = try await undo(ledgerHalf: try await ledgerHalf(source: source))
            }
            return "\(reply)"
        case .undoReserve(let orderId, let bizId, let eventId, let lines, let earlierEventId):
            // The task keeps the business's own id; the script names the order as Redis does.
            // The earlier hold (its journal row's quantities and codes), which the item hands back if the order went on
            // with this one.
            let earlier: [UInt64: HeldLine]
            do {
                earlier = earlierEventId.isEmpty
                    ? [:] : try await journal.hold(orderId: orderId, bizId: bizId, reserveEvent: earlierEventId)
            } catch {
                throw stores.mapMySQL(error)
            }
            let call = UndoReserveCall(
                orderId: OrderRef(bizId: bizId, orderId: orderId).name, bizId: bizId, eventId: eventId, lines: lines,
                earlierEventId: earlierEventId, earlier: earlier, retentionSeconds: configuration.retentionSeconds,
                layout: keys
            )
            let reply = try await rebuilder.run(onItems: call)
            if reply == .settled {
                stores.logger.warning(
                    "a duplicate hold was confirmed or cancelled before it was taken back; its item counts it no more",
                    metadata: ["orderId": "\(orderId)", "event": "\(eventId)"]
                )
            }
            return "\(reply)"
        }
    }

    /// Runs stored retry tasks, oldest first; returns how many succeeded now.
    func retryCompensations(limit: Int = 100) async throws -> Int {
        var done = 0
        for (id, task) in try await repository.pending(keyPrefix: keys.prefix, limit: limit) {
            do {
                let outcome = try await runCompensation(task)
                try await repository.markDone(id)
                stores.logger.notice("retry task succeeded", metadata: ["compensation": "\(task)", "outcome": "\(outcome)"])
                done += 1
            } catch {
                try? await repository.recordFailure(id, error: "\(error)")
            }
        }
        return done
    }
}
