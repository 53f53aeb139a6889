import Logging
import MySQLClient
import RedisClient

/// Confirm, cancel, expiry and refund, each decided (on a cluster in the order's directory: `placement`) and then made
/// by its script on every part, through the one skeleton of `TransitionSkeleton.swift`. Every `orderId` here is the
/// order's Redis name (`OrderRef.name`); the engine's public operations take the business and its own id.
extension Reservations {
    /// `confirm` of the order Redis names `orderId` (`OrderRef.name`). Every `orderId` of the engine's internal
    /// functions is such a name; the public ones take the business and its own id.
    func confirm(named orderId: String) async throws -> TransitionOutcome {
        struct Attempt {
            var replayed = true
            var replayStatus = ReservationStatus.confirmed
        }
        return try await transition(
            orderId, "confirm", state: Attempt(),
            start: { order, _ in
                guard let order else { throw InventoryError.notFound }
                if let answer = try await placement.startConfirm(orderId, order: order, reservations: self) { return .answer(answer) }
                return .move(order.pieces)
            },
            move: { order, part, attempt in
                guard let order, let part else { throw InventoryError.notFound }
                let call = ConfirmCall(
                    orderId: orderId, shard: part.shard, bizId: order.bizId, lines: part.lines, linesText: part.linesText,
                    deadlineChecked: placement.decidesInDirectory, layout: keys
                )
                switch try await rebuilder.run(onItems: call) {
                case .expired:
                    return .answer(try await expireLate(orderId))
                case .lost:
                    // Redis lost the hold with its item (rebuilt without it) and the item cannot sell the units again:
                    // nothing was sold. The order is cancelled, so that what it still holds elsewhere comes back.
                    stores.logger.error(
                        "a confirmed payment found its hold lost with its item and no stock left to sell; the order is cancelled",
                        metadata: ["orderId": "\(orderId)"]
                    )
                    _ = try await cancel(named: orderId)
                    throw InventoryError.orderClosed(.cancelled)
                case .confirmed(let eventId):
                    attempt.replayed = false
                    if configuration.durability == .sync {
                        try await syncJournal.recordTransition(orderId: orderId, part: part, eventId: eventId, journalStatus: "CONFIRMED")
                    }
                case .replay(let status):
                    attempt.replayStatus = status
                    if configuration.durability == .sync && status == .confirmed && part.holdsStock {
                        try await syncJournal.ensureTransitionRecorded(orderId: orderId, part: part, journalStatus: "CONFIRMED")
                    }
                case .closed(let status):
                    throw InventoryError.orderClosed(status)
                case .stale:
                    return .stale
                }
                return .moved
            },
            finish: { order, attempt in
                guard let order else { throw InventoryError.notFound }
                return TransitionOutcome(
                    reservation: order.reservation(status: attempt.replayed ? attempt.replayStatus : .confirmed),
                    replayed: attempt.replayed
                )
            }
        )
    }

    /// A confirm that came after the hold's deadline, before the sweeper: the hold expires now and the confirm is
    /// refused (409), as it would be a moment later.
    /// Another confirm that decided the order just before the deadline wins: the answer is its replay, not 409.
    func expireLate(_ orderId: String) async throws -> TransitionOutcome {
        _ = try await expire(named: orderId)
        if let order = try await orders.readOrder(orderId), order.status == .confirmed || order.status == .refunded {
            return TransitionOutcome(reservation: order.reservation(status: order.status), replayed: true)
        }
        throw InventoryError.orderClosed(.expired)
    }

    func cancel(named orderId: String, failpoint: String = "") async throws -> TransitionOutcome {
        try await rollback(orderId: orderId, reason: .cancelled, failpoint: failpoint)
    }

    /// The answer for an order that holds nothing (a cancel of an order never reserved), from its Redis name.
    func emptyReservation(_ orderId: String, status: ReservationStatus) -> Reservation {
        let order = OrderRef(name: orderId)
        return Reservation(
            orderId: order.orderId, bizId: order.bizId, status: status, lines: [], expiresAtMilliseconds: nil, persisted: false
        )
    }

    func rollback(orderId: String, reason: ReservationStatus, failpoint: String) async throws -> TransitionOutcome {
        struct Attempt {
            /// What the order's parts (on a single Redis: the order) are moved to; the reason, unless the directory
            /// had decided otherwise.
            var transition: ReservationStatus
            var closedBefore = false
            var replayed = true
            var replayStatus: ReservationStatus
            /// The answer for an order that held nothing (its cancel recorded now).
            var empty: TransitionOutcome?
        }
        return try await transition(
            orderId, "rollback", state: Attempt(transition: reason, replayStatus: reason),
            start: { order, attempt in
                switch try await placement.startRollback(orderId, order: order, reason: reason, reservations: self) {
                case .answer(let outcome):
                    return .answer(outcome)
                case .move(let transition, let decidedBefore):
                    attempt.transition = transition
                    attempt.replayStatus = transition
                    attempt.closedBefore = decidedBefore
                }
                return .move(order.map { $0.pieces.map(Optional.some) } ?? [nil])
            },
            move: { _, part, attempt in
                let shard = part?.shard ?? keys.shard(of: orderId)
                let transition = attempt.transition
                let call = RollbackCall(
                    orderId: orderId, shard: shard, bizId: part?.bizId ?? "", lines: part?.lines ?? [],
                    linesText: part?.linesText ?? "", reason: transition, failpoint: failpoint,
                    expiryDecided: placement.decidesInDirectory && transition == .expired, retentionSeconds: configuration.retentionSeconds,
                    layout: keys
                )
                switch try await rebuilder.run(onItems: call) {
                case .released(let eventId):
                    attempt.replayed = false
                    if configuration.durability == .sync && transition == .cancelled, let part {
                        try await syncJournal.recordTransition(orderId: orderId, part: part, eventId: eventId, journalStatus: "CANCELLED")
                    }
                case .replay(let status):
                    attempt.replayStatus = status ?? transition
                    if configuration.durability == .sync && transition == .cancelled && attempt.replayStatus == .cancelled,
                        let part, part.holdsStock
                    {
                        try await syncJournal.ensureTransitionRecorded(orderId: orderId, part: part, journalStatus: "CANCELLED")
                    }
                case .recordedEmpty(let eventId):
                    if configuration.durability == .sync {
                        // The tombstone is what keeps refusing a late reserve once Redis forgets this cancel.
                        if let event = try await syncJournal.outboxEvent(shard: shard, eventId: eventId) {
                            _ = try await syncJournal.commitFromOutbox(event, what: "cancel")
                        } else if try await !hasTombstone(orderId) {
                            // A worker deletes an entry only after committing it: gone means recorded, unless Redis lost it.
                            throw InventoryError.outcomeUnknown("the cancel is made in Redis but not yet recorded in MySQL")
                        }
                    }
                    attempt.empty = TransitionOutcome(reservation: emptyReservation(orderId, status: .cancelled), replayed: false)
                case .gone:
                    throw InventoryError.notFound
                case .confirmed(let status):
                    throw InventoryError.invalidState(status)
                case .notExpired:
                    throw InventoryError.invalidState(.reserved)
                case .stale:
                    return .stale
                }
                return .moved
            },
            finish: { order, attempt in
                if let empty = attempt.empty { return empty }
                let status = attempt.replayed ? attempt.replayStatus : attempt.transition
                let reservation = order?.reservation(status: status) ?? emptyReservation(orderId, status: status)
                return TransitionOutcome(reservation: reservation, replayed: attempt.replayed || attempt.closedBefore)
            }
        )
    }

    /// Whether MySQL has the order's tombstone (a cancel before any reserve).
    func hasTombstone(_ orderId: String) async throws -> Bool {
        let order = OrderRef(name: orderId)
        do {
            return try await journal.hasTombstone(orderId: order.orderId, bizId: order.bizId, keyPrefix: keys.prefix)
        } catch {
            throw stores.mapMySQL(error)
        }
    }

    func reservation(named orderId: String) async throws -> Reservation {
        guard let order = try await orders.readOrder(orderId) else { throw InventoryError.notFound }
        let persisted: Bool?
        if order.lines.contains(where: { $0.reserved > 0 }) {
            let ref = OrderRef(name: orderId)
            persisted = try? await journal.isPersisted(orderId: ref.orderId, bizId: ref.bizId)
        } else {
            persisted = nil
        }
        return order.reservation(status: order.status).with(persisted: persisted)
    }

    func refund(named orderId: String) async throws -> TransitionOutcome {
        try await transition(
            orderId, "refund", state: true,  // replayed
            start: { order, _ in
                guard let order else { throw InventoryError.notFound }
                try await placement.startRefund(orderId, reservations: self)
                return .move(order.pieces)
            },
            move: { order, part, replayed in
                guard let order, let part else { throw InventoryError.notFound }
                let call = RefundCall(
                    orderId: orderId, shard: part.shard, bizId: order.bizId, lines: part.lines, linesText: part.linesText,
                    layout: keys
                )
                switch try await rebuilder.run(onItems: call) {
                case .refunded: replayed = false
                case .replay: break
                case .state(.reserved) where placement.decidesInDirectory:
                    // A part left behind by the confirm the directory decided (its instance stopped half-way, or the
                    // part came back from the journal as its rows say): the confirm moves it on, then the refund runs
                    // again. Refused, it would stay held for good under a refunded directory.
                    _ = try await confirm(named: orderId)
                    return .stale
                case .state(let status): throw InventoryError.invalidState(status ?? order.status)
                case .stale: return .stale
                }
                return .moved
            },
            finish: { order, replayed in
                guard let order else { throw InventoryError.notFound }
                return TransitionOutcome(reservation: order.reservation(status: .refunded), replayed: replayed)
            }
        )
    }

    /// Releases an unconfirmed hold whose time is up (the expiry sweeper's step). Returns whether it expired now.
    /// On a cluster, a part left behind by a confirm or cancel that stopped half-way is moved on instead.
    /// `orderId`: the order's Redis name, as `expiredOrders` lists it.
    @discardableResult
    func expire(named orderId: String) async throws -> Bool {
        do {
            return try await !rollback(orderId: orderId, reason: .expired, failpoint: "").replayed
        } catch InventoryError.invalidState(let state) {
            if state != .reserved { try await placement.moveLeftBehind(orderId, decided: state, reservations: self) }
            return false
        } catch InventoryError.notFound {
            return false
        }
    }
}
