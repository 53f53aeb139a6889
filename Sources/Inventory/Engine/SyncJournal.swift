import Logging
import MySQLClient
import RedisClient

/// Sync mode's journal, from the engine's side: a reserve, confirm or cancel answers only once MySQL has it (through
/// the group committer), a hold the journal cannot record is taken back, and a replay waits for its row.
struct SyncJournal: Sendable, EngineCollaborator {
    let stores: EngineStores
    let committer: JournalCommitter
    let journal: JournalRepository
    let compensator: Compensator
    let orders: OrderReader

    /// Sync mode: the reserve answers only once its journal rows are committed. When that fails the hold is
    /// taken back, so that a 503 holds nothing and the client may retry the same orderId.
    /// `fingerprint`: the whole order's request (a part's command names only the part's items).
    func commitJournal(
        _ command: ReserveCommand, fingerprint: String, reservation: Reservation, eventId: String, epochs: [String],
        shard: Int
    ) async throws {
        let held = reservation.lines.filter { $0.reserved > 0 }
        let event = OutboxEvent(
            id: eventId, stream: keys.outbox(shard: shard), kind: .reserve, orderId: command.orderId,
            bizId: command.bizId, userId: command.userId,
            lines: held.enumerated().map { index, line in
                .init(skuId: line.skuId, quantity: line.reserved, epoch: epochs[safe: index] ?? "", codes: line.codes)
            },
            expiresAtMilliseconds: reservation.expiresAtMilliseconds, atMilliseconds: configuration.clock(),
            reserveEventId: nil, requestFingerprint: fingerprint
        )
        let result: JournalBatchResult
        do {
            result = try await committer.commit(event)
        } catch let error as JournalCommitOutcomeUnknown {
            // The commit may have happened: taking the hold back now could leave an undo that later deletes a
            // row a retry's replay relied on. The hold stays; the worker records it from the outbox (or finds it
            // recorded), a retry's replay answers once the journal has it, and unconfirmed it expires.
            stores.logger.warning(
                "journal commit outcome unknown; the hold is left to the write-back worker",
                metadata: ["orderId": "\(command.orderId)", "event": "\(eventId)", "error": "\(error)"]
            )
            throw stores.mapMySQL(error)
        } catch {
            // Taken back now, or, when Redis cannot do that either, left to the outbox: not a retry task, since
            // the client was told 503 and a replay answered 200 meanwhile must not be undone later. The worker
            // records such a hold like any async reserve, and it expires if nobody confirms it.
            let takenBack = await compensator.compensate(
                .undoReserve(orderId: command.orderId, bizId: command.bizId, eventId: eventId, lines: reservation.lines),
                storingFailure: false
            )
            guard takenBack else {
                throw InventoryError.outcomeUnknown("MySQL: \(error); the hold could not be taken back: the worker records it")
            }
            throw stores.mapMySQL(error)
        }
        if result.staleLines.contains(where: { $0.eventId == eventId }) {
            try await takeBackStale(command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId)
        }
        // This event's own (on a cluster another part of the order may be in the same group commit).
        guard let duplicate = result.duplicates.first(where: { $0.eventId == eventId && $0.orderId == command.orderId && $0.bizId == command.bizId })
        else { return }
        // The journal has this order from an earlier reserve: this second hold is taken back. If that earlier
        // hold was itself taken back (its sync commit failed, but the worker wrote its row from the outbox), the
        // row is about to be removed: the client retries. Otherwise Redis lost the order, and the answer is what
        // the journal holds.
        // (The earlier event is named only while its order was live when this hold was made: an order that had
        // ended is counted by no item, see WriteBackWorker.settleRedis.)
        await compensator.undoReserve(
            orderId: command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId,
            earlierEventId: duplicate.earlierHold,
            epochs: event.lineEpochs
        )
        if await orders.wasTakenBack(orderId: command.orderId, eventId: duplicate.existingReserveEvent, shard: shard) {
            throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
        }
        let status = ReservationStatus(rawValue: duplicate.existingStatus.lowercased()) ?? .cancelled
        if status == .cancelled || status == .expired { throw InventoryError.orderClosed(status) }
        throw InventoryEngine.JournalHasOrder()
    }

    /// Sync mode, a replay of a held order: answers only once the journal has it, committing its reserve event
    /// from the outbox if the worker has not yet (a retry after a 503 whose hold could not be taken back). Throws
    /// `JournalHasOrder` when that hold duplicates the journal's order (taken back now).
    func ensureRecorded(_ order: OrderRef, shard: Int) async throws {
        let (orderId, bizId) = (order.orderId, order.bizId)
        let eventId = try await stores.redisCall {
            try await self.stores.redis.command("HGET", self.keys.order(order.name, shard: shard), "event")
        }.text ?? ""
        if await holdRecorded(order, eventId: eventId, shard: shard) == true { return }
        guard let event = try await outboxEvent(shard: shard, eventId: eventId), event.kind == .reserve else {
            // A worker deletes an entry only after committing it: a row now means it was recorded meanwhile.
            // Otherwise Redis lost the event (its outbox went), and no one will ever record this hold: it is
            // taken back, so that the retry holds afresh instead of being answered 503 for good.
            let recordedNow = await holdRecorded(order, eventId: eventId, shard: shard)
            if recordedNow == true { return }
            if recordedNow == false, !eventId.isEmpty, let part = try await orders.readPart(order.name, shard: shard),
                part.status == .reserved
            {
                try await takeBackStale(orderId, bizId: bizId, lines: part.lines, eventId: eventId)
            }
            throw InventoryError.outcomeUnknown("the reservation is held in Redis but not yet recorded in MySQL")
        }
        let result: JournalBatchResult
        do { result = try await committer.commit(event) } catch { throw stores.mapMySQL(error) }
        if result.staleLines.contains(where: { $0.eventId == event.id }) {
            try await takeBackStale(
                orderId, bizId: bizId,
                lines: event.lines.map { ReservationLine(skuId: $0.skuId, requested: $0.quantity, reserved: $0.quantity) },
                eventId: event.id
            )
        }
        guard let duplicate = result.duplicates.first(where: { $0.orderId == orderId && $0.bizId == bizId && $0.eventId == event.id })
        else { return }
        // The journal's row of the order is an earlier attempt's that was taken back in Redis and is about to be
        // removed: this hold is not recorded yet (a later retry commits it once that row is gone).
        if await orders.wasTakenBack(orderId: orderId, eventId: duplicate.existingReserveEvent, shard: shard) {
            throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
        }
        // Otherwise the journal has the order (Redis had lost it) and this hold, whose first answer's take-back did not
        // run, duplicates it: taken back now, and the order is answered from the journal, as at the first commit.
        await compensator.undoReserve(
            orderId: orderId, bizId: bizId,
            lines: event.lines.map { ReservationLine(skuId: $0.skuId, requested: $0.quantity, reserved: $0.quantity) },
            eventId: event.id, earlierEventId: duplicate.earlierHold,
            epochs: event.lineEpochs
        )
        throw InventoryEngine.JournalHasOrder()
    }

    /// Whether the journal records the hold of reserve event `eventId` (nil: MySQL or Redis cannot tell). A restored
    /// order ('' event) came from the journal: any row. Otherwise every line the part holds needs a row of this event:
    /// a row of an earlier attempt of the order may be one an undo is about to remove, and a line the journal met as a
    /// duplicate of the earlier order's row is not this hold's (a partial retry has rows of its own beside it).
    func holdRecorded(_ order: OrderRef, eventId: String, shard: Int) async -> Bool? {
        do {
            if eventId.isEmpty { return try await journal.isPersisted(orderId: order.orderId, bizId: order.bizId) }
            let own = Set(
                try await journal.rows(orderId: order.orderId, bizId: order.bizId).filter { $0.reserveEvent == eventId }.map(\.skuId)
            )
            guard !own.isEmpty else { return false }
            guard let part = try await orders.readPart(order.name, shard: shard) else { return true }
            return part.lines.filter { $0.reserved > 0 }.allSatisfy { own.contains($0.skuId) }
        } catch {
            return nil
        }
    }

    /// Sync mode: a hold's journal commit left (some of) its lines out, because Redis rebuilt their items since the
    /// hold was made and they no longer count it. The order is taken back (lines still counted give their units back,
    /// the journal rows committed for them go too), so that the client's retry holds afresh instead of replaying an
    /// order that can never be recorded. Throws 503 (retry). `orderId`: the business's own id.
    func takeBackStale(_ orderId: String, bizId: String, lines: [ReservationLine], eventId: String) async throws -> Never {
        stores.logger.warning(
            "a hold's items were rebuilt before its journal commit; the order is taken back for the client's retry",
            metadata: ["orderId": "\(orderId)", "event": "\(eventId)"]
        )
        await compensator.undoReserve(orderId: orderId, bizId: bizId, lines: lines, eventId: eventId, routine: true)
        throw InventoryError.unavailable("Redis lost its data while this reservation was being recorded; retry")
    }

    /// Sync mode, a confirm or cancel just made in Redis: answers only once the journal has it, by committing its
    /// outbox entry (the worker applies it again later, which changes nothing). It is not taken back when the
    /// commit fails: the client gets 503, the worker records it from the outbox, and a retry's replay answers 200
    /// once the journal has it.
    func recordTransition(orderId: String, part: InventoryEngine.StoredOrder, eventId: String, journalStatus: String) async throws {
        guard let event = try await outboxEvent(shard: part.shard, eventId: eventId) else {
            // A worker deletes an entry only after committing it: gone means recorded, unless Redis lost it.
            if try await isRecorded(orderId: orderId, part: part, journalStatus: journalStatus) { return }
            throw InventoryError.outcomeUnknown("the change is made in Redis but not yet recorded in MySQL")
        }
        _ = try await commitFromOutbox(event, what: "change")
    }

    /// The order's outbox entry `eventId`, nil when there is none (or no id).
    func outboxEvent(shard: Int, eventId: String) async throws -> OutboxEvent? {
        guard !eventId.isEmpty else { return nil }
        let stream = keys.outbox(shard: shard)
        let reply = try await stores.redisCall { try await self.stores.redis.command("XRANGE", stream, eventId, eventId) }
        return OutboxEvent.entries(stream: stream, reply).first?.event
    }

    /// Sync mode: commits an outbox entry through the group committer before the answer. A line of it left out as
    /// stale means Redis lost the order's items after the change and rebuilt them from the journal without it: 503.
    func commitFromOutbox(_ event: OutboxEvent, what: String) async throws -> JournalBatchResult {
        let result: JournalBatchResult
        do {
            result = try await committer.commit(event)
        } catch {
            // The change is made in Redis and stays (the worker records it from the outbox): not "nothing changed".
            switch stores.mapMySQL(error) {
            case .unavailable(let detail): throw InventoryError.outcomeUnknown("the \(what) is made in Redis, not yet in MySQL: \(detail)")
            case let other: throw other
            }
        }
        if result.staleLines.contains(where: { $0.eventId == event.id }) {
            throw InventoryError.unavailable("Redis lost its data while this \(what) was being recorded; retry")
        }
        return result
    }

    /// Sync mode, a replay of a confirm or cancel: answers only once the journal has it, committing the change's
    /// outbox entry if no worker has yet (a retry after a 503).
    func ensureTransitionRecorded(orderId: String, part: InventoryEngine.StoredOrder, journalStatus: String) async throws {
        if try await isRecorded(orderId: orderId, part: part, journalStatus: journalStatus) { return }
        let eventId = try await stores.redisCall {
            try await self.stores.redis.command("HGET", self.keys.order(orderId, shard: part.shard), "transition_event")
        }.text ?? ""
        try await recordTransition(orderId: orderId, part: part, eventId: eventId, journalStatus: journalStatus)
    }

    /// Whether the journal's rows of the order's part all have the status (a confirmed order refunded since counts
    /// as confirmed).
    /// `orderId`: the order's Redis name.
    func isRecorded(orderId: String, part: InventoryEngine.StoredOrder, journalStatus: String) async throws -> Bool {
        let skus = Set(part.lines.map(\.skuId))
        let order = OrderRef(name: orderId)
        let rows: [JournalRow]
        do {
            rows = try await journal.rows(orderId: order.orderId, bizId: order.bizId).filter { skus.contains($0.skuId) }
        } catch {
            throw stores.mapMySQL(error)
        }
        let done = journalStatus == "CONFIRMED" ? ["CONFIRMED", "REFUNDED"] : [journalStatus]
        return !rows.isEmpty && rows.allSatisfy { done.contains($0.status) }
    }
}
