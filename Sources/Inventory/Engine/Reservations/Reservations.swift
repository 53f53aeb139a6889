import Logging
import MySQLClient
import RedisClient

/// Reservations: an order held whole or not at all, confirmed, cancelled, expired or refunded. The flows of the
/// engine's order operations, over its other collaborators: where an order lives and what decides its state
/// (`placement`, chosen once from the topology), reading and restoring orders (`orders`), the init path
/// (`rebuilder`), sync mode's commits (`syncJournal`) and take-backs (`compensator`). Holds are here; confirm, cancel,
/// expiry and refund in `Reservations+Transitions.swift`, over the one skeleton of `TransitionSkeleton.swift`.
struct Reservations: Sendable, EngineCollaborator {
    let stores: EngineStores
    let rebuilder: ItemRebuilder
    let orders: OrderReader
    let syncJournal: SyncJournal
    let compensator: Compensator
    let journal: JournalRepository
    let placement: any OrderPlacement

    typealias StoredOrder = InventoryEngine.StoredOrder

    /// Holds stock for every item of an order, or for none. `failpoint`: where a test stops it, as a crash would
    /// (`after_first_part`, the scripts' own; "" otherwise).
    func reserve(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        do {
            let outcome = try await reserveRebuildingItems(command, failpoint: failpoint)
            if case .created = outcome { InventoryMetrics.reservation(.created) } else { InventoryMetrics.reservation(.replayed) }
            return outcome
        } catch {
            InventoryMetrics.reservation(for: error)
            throw error
        }
    }

    func reserveRebuildingItems(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        do {
            return try await reserveOnce(command, failpoint: failpoint)
        } catch InventoryError.unknownItems(let skus) {
            // Missing from Redis is not missing: a cold, evicted or lost item is rebuilt from MySQL, then the
            // reserve runs again. Items MySQL does not know either are unknown.
            var unknown: [UInt64] = []
            for sku in skus where try await !rebuilder.ensureItem(StockItemID(bizId: command.bizId, skuId: sku)) {
                unknown.append(sku)
            }
            if !unknown.isEmpty { throw InventoryError.unknownItems(unknown) }
            do {
                return try await reserveOnce(command, failpoint: failpoint)
            } catch InventoryError.unknownItems {
                // Rebuilt just now, and gone again (a forget of a Redis that went back deletes keys while traffic
                // runs): MySQL has every item, so not "unknown" (404) but a retry.
                throw InventoryError.unavailable("stock items of order \(command.orderId) vanished from Redis again after their rebuild; retry")
            }
        }
    }

    func reserveOnce(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        var journalChecked = false
        for _ in 0..<3 {
            do {
                return try await placement.reserve(command, journalChecked: journalChecked, failpoint: failpoint, reservations: self)
            } catch let ask as AskJournal {
                journalChecked = try await askJournal(ask, command: command)
            }
        }
        throw InventoryError.unavailable("order \(command.orderId) kept changing while the journal was asked about it; retry")
    }

    /// A reserve script's answer that Redis may have lost the order (lua/reserve.lua, generation marker).
    struct AskJournal: Error {
        /// The shard whose marker answered.
        let shard: Int
        /// The marker itself is missing (else: younger than a retention period).
        let markerMissing: Bool
    }

    /// Redis may have forgotten the order a reserve names: the generation marker of its shard is missing or young.
    /// A missing marker is made: 0 (trust Redis) on the shard's first start, else (Redis lost data) a retention
    /// period from now. Then the journal is asked: an order it has is restored into Redis (the reserve then answers
    /// it as a replay, or as closed), a cancel recorded before any reserve is recorded again; only an order the
    /// journal does not know is held. Returns whether the reserve may skip the question (true: asked, nothing known).
    func askJournal(_ ask: AskJournal, command: ReserveCommand) async throws -> Bool {
        do {
            if ask.markerMissing {
                try await makeGeneration(shard: ask.shard)
                return false
            }
            // The journal is asked after what the outbox still has of the order is in it.
            try await orders.applyPendingEvents(ofOrder: command.orderName)
            if try await !journal.rows(orderId: command.orderId, bizId: command.bizId).isEmpty {
                _ = try await orders.restoreOrder(command.orderName, outboxApplied: true)
                return false
            }
            if try await journal.hasTombstone(orderId: command.orderId, bizId: command.bizId, keyPrefix: keys.prefix) {
                // Recorded cancelled in Redis again (not through `cancel`, which would first look the order up in
                // the journal again): the reserve, run again, finds it closed.
                try await placement.recordCancel(command.orderName, shard: ask.shard, reservations: self)
                return false
            }
            return true
        } catch let error as InventoryError {
            throw error
        } catch {
            throw stores.mapMySQL(error)
        }
    }

    /// Holds one part of an order (on a single Redis the whole order) with one script; `eventId` is the outbox
    /// entry of a hold made now ("" for a replay).
    /// `journalChecked`: the journal was asked about the order (or, on a cluster, its directory is the guard), so an
    /// order Redis does not know is new.
    /// `holdsChecked`: the order was restored from the journal (and its outbox) just now, because its hash had
    /// vanished while a hold of it was still in Redis (reserve.lua's 'vanished'), or because sync mode's commit found
    /// it in the journal: what Redis has now is all there is.
    /// `partOfSeveral`: a part of an order of several parts in partial mode, which may hold nothing (the caller
    /// refuses the order when no part held anything).
    func reservePart(
        _ command: ReserveCommand, shard: Int, fingerprint: String, journalChecked: Bool, failpoint: String,
        holdsChecked: Bool = false, partOfSeveral: Bool = false
    ) async throws -> (outcome: ReserveOutcome, eventId: String) {
        let orderId = command.orderName
        let call = ReserveCall(
            command, shard: shard, fingerprint: fingerprint,
            shortage: partOfSeveral && command.shortage == .partial ? "partial_part" : command.shortage.rawValue,
            journal: holdsChecked ? .restored : journalChecked ? .asked : .unknown,
            // Sync mode commits the hold first and then confirms it (see below): a dispense in one script would
            // leave nothing a failed commit could take back.
            dispense: command.dispense && configuration.durability == .async, failpoint: failpoint,
            retentionSeconds: configuration.retentionSeconds, itemTTLSeconds: configuration.itemTTLSeconds, layout: keys
        )
        // Positions in the script's answers are 1-based, in request order.
        func sku(_ position: Int) -> UInt64 { command.items[safe: position - 1]?.skuId ?? 0 }
        switch try await stores.run(call) {
        case .askJournal(let markerMissing):
            throw AskJournal(shard: shard, markerMissing: markerMissing)
        case .vanished:
            // The order's hash is gone while a hold of it is not: it comes back from the journal (after what the
            // outbox still has of it), and the reserve runs again against it.
            _ = try await orders.restoreOrder(orderId)
            return try await reservePart(
                command, shard: shard, fingerprint: fingerprint, journalChecked: true, failpoint: failpoint,
                holdsChecked: true, partOfSeveral: partOfSeveral
            )
        case .held(let held):
            let reservation = Reservation(
                orderId: command.orderId, bizId: command.bizId, status: held.confirmEventId.isEmpty ? .reserved : .confirmed,
                lines: held.lines, expiresAtMilliseconds: held.expiresAtMilliseconds, persisted: false
            )
            guard configuration.durability == .sync else { return (.created(reservation), held.eventId) }
            do {
                try await syncJournal.commitJournal(
                    command, fingerprint: fingerprint, reservation: reservation, eventId: held.eventId, epochs: held.epochs,
                    shard: shard
                )
            } catch is InventoryEngine.JournalHasOrder {
                return try await answerFromJournal(
                    command, shard: shard, fingerprint: fingerprint, failpoint: failpoint, holdsChecked: holdsChecked,
                    partOfSeveral: partOfSeveral
                )
            }
            if command.dispense {
                return (.created(try await confirm(named: orderId).reservation.with(persisted: true)), held.eventId)
            }
            return (.created(reservation.with(persisted: true)), held.eventId)
        case .replay(let status, let expiresAt, let lines):
            if configuration.durability == .sync && status == .reserved {
                do {
                    try await syncJournal.ensureRecorded(command.order, shard: shard)
                } catch is InventoryEngine.JournalHasOrder {
                    return try await answerFromJournal(
                        command, shard: shard, fingerprint: fingerprint, failpoint: failpoint, holdsChecked: holdsChecked,
                        partOfSeveral: partOfSeveral
                    )
                }
                if command.dispense {
                    return (.replayed(try await confirm(named: orderId).reservation.with(persisted: true)), "")
                }
            }
            let reservation = Reservation(
                orderId: command.orderId, bizId: command.bizId, status: status, lines: lines, expiresAtMilliseconds: expiresAt,
                persisted: nil
            )
            return (.replayed(reservation), "")
        case .conflict:
            throw InventoryError.idempotencyConflict
        case .closed(let status):
            throw InventoryError.orderClosed(status)
        case .missing(let positions):
            throw InventoryError.unknownItems(positions.compactMap { command.items[safe: $0 - 1]?.skuId })
        case .short(let available):
            var shortages: [InventoryError.Shortage] = []
            for (index, item) in command.items.enumerated() {
                let have = available[safe: index] ?? 0
                if have < item.quantity || command.shortage == .partial {
                    shortages.append(.init(skuId: item.skuId, requested: item.quantity, available: have))
                }
            }
            throw InventoryError.insufficientStock(shortages)
        case .userLimit(let lines):
            throw InventoryError.userLimitExceeded(
                lines.compactMap { line in
                    guard let item = command.items[safe: line.position - 1] else { return nil }
                    return .init(skuId: item.skuId, requested: item.quantity, limit: line.limit, used: line.used)
                }
            )
        case .poolUnavailable(let position, let reason):
            throw InventoryError.poolUnavailable(skuId: sku(position), reason: reason)
        case .codeUnavailable(let position, let code):
            throw InventoryError.codeUnavailable(skuId: sku(position), code: code)
        case .userRequired(let positions):
            throw InventoryError.userRequired(positions.compactMap { command.items[safe: $0 - 1]?.skuId })
        }
    }

    /// Sync mode: a hold of the order was taken back because the journal had the order (Redis forgot it): the reserve
    /// runs again against the order restored from the journal, which keeps the request that made it, so another body
    /// under its id is a conflict, as for any order Redis knows (not a replay of the journal's). The part must be the
    /// journal's order now (a restored hash names no reserve event): a hold still there is this one's, not taken back
    /// yet (a retry task will), or another attempt's made meanwhile, and neither answers for the journal's order.
    func answerFromJournal(
        _ command: ReserveCommand, shard: Int, fingerprint: String, failpoint: String, holdsChecked: Bool,
        partOfSeveral: Bool
    ) async throws -> (outcome: ReserveOutcome, eventId: String) {
        let orderId = command.orderName
        guard !holdsChecked, try await orders.restoreOrder(orderId), try await orders.heldEvent(orderId, shard: shard).isEmpty
        else {
            throw InventoryError.unavailable(
                "order \(command.orderId) is in the journal, and a hold of it is still being taken back; retry"
            )
        }
        return try await reservePart(
            command, shard: shard, fingerprint: fingerprint, journalChecked: true, failpoint: failpoint, holdsChecked: true,
            partOfSeveral: partOfSeveral
        )
    }

    /// Makes the shard's generation marker if it is missing: 0 (trust Redis) on the shard's first start, else (Redis
    /// lost data) a retention period from now, during which a reserve of an order Redis does not know asks the
    /// journal first.
    func makeGeneration(shard: Int) async throws {
        let marker = keys.generation(shard: shard)
        if try await stores.redisCall({ try await self.stores.redis.command("EXISTS", marker) }).int == 1 { return }
        let first: Bool
        do { first = try await journal.recordGeneration(keyPrefix: keys.prefix, shard: shard) } catch { throw stores.mapMySQL(error) }
        let until = first ? 0 : try await stores.redisNow(routingKey: marker) + Int64(configuration.retentionSeconds) * 1000
        // The shard's first start wins over an instance that raced it and took the row for a loss (it read the
        // marker missing just before the first instance made it): no false window of journal questions.
        let made = try await stores.redisCall {
            first
                ? try await self.stores.redis.command("SET", marker, "0")
                : try await self.stores.redis.command("SET", marker, String(until), "NX")
        }
        if !first && made.text == "OK" {
            stores.logger.error(
                "Redis lost data: for one retention period a reserve of an order Redis does not know asks the journal first",
                metadata: ["shard": "\(shard)", "marker": "\(marker)"]
            )
        }
    }
}
