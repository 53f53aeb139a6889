import Logging
import MySQLClient
import RedisClient

/// Redis Cluster: a reserve of an order whose items are on several shards holds one part per shard, under its
/// directory (opened first, committed once every part held), and takes back the parts held when another part cannot.
extension ClusterPlacement {
    /// An order is held in parts, one script per shard its items are in, all or none. The
    /// directory is opened first (idempotency and the hanging-reservation guard live there), then the parts are
    /// held one after another; when one part fails, the parts held are taken back (undo_reserve: the journal loses their rows
    /// too) and the directory is removed, so the order may be tried again. A dispense holds every part, then
    /// confirms the order.
    func reserve(
        _ command: ReserveCommand, journalChecked: Bool, failpoint: String, reservations: Reservations
    ) async throws -> ReserveOutcome {
        let keys = reservations.keys
        let orderId = command.orderName
        var positions: [Int: [Int]] = [:]
        for (index, item) in command.items.enumerated() {
            positions[keys.itemShard(StockItemID(bizId: command.bizId, skuId: item.skuId)), default: []].append(index)
        }
        let shards = positions.keys.sorted()
        let openDirectory = {
            try await reservations.stores.run(
                DirOpenCall(
                    orderId: orderId, fingerprint: command.fingerprint, bizId: command.bizId, shards: shards,
                    ttlSeconds: command.ttlSeconds + reservations.configuration.retentionSeconds,
                    deadlineMilliseconds: shards.count > 1 ? reservations.configuration.reserveDeadlineMilliseconds : nil,
                    journalAsked: journalChecked, layout: reservations.keys
                )
            )
        }
        let opened: DirOpenCall.Reply
        var missing: [UInt64] = []
        if shards.count > 1 {
            // An item Redis lacks would fail its part after other parts held stock: looked for first (while the
            // directory opens), so that a reserve naming an unknown item holds nothing (the caller rebuilds what
            // MySQL has, and refuses the rest).
            async let lookedFor = missingItems(command, reservations: reservations)
            opened = try await openDirectory()
            missing = try await lookedFor
        } else {
            opened = try await openDirectory()
        }
        switch opened {
        case .opened:
            // Opened by this request and nothing held: removed again, so that the order may be tried again.
            if !missing.isEmpty { await closeDirectory(command, reservations: reservations) }
        case .same: break
        case .conflict: throw InventoryError.idempotencyConflict
        case .closed(let status): throw InventoryError.orderClosed(status)
        case .askJournal(let markerMissing): throw Reservations.AskJournal(shard: keys.shard(of: orderId), markerMissing: markerMissing)
        }
        if !missing.isEmpty { throw InventoryError.unknownItems(missing) }
        // Part after part, in shard order, stopping at the first that fails: orders over the same items then take
        // them in the same order, so concurrent orders do not each hold a part another needs and all fail (an
        // order refused at its first part held nothing; one that got it competes for the next only with the
        // others that did).
        var results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>] = [:]
        for shard in shards {
            let part = ReserveCommand(
                orderId: command.orderId, bizId: command.bizId, userId: command.userId,
                items: positions[shard, default: []].map { command.items[$0] }, ttlSeconds: command.ttlSeconds,
                shortage: command.shortage, dispense: false
            )
            do {
                results[shard] = .success(
                    try await reservations.reservePart(
                        part, shard: shard, fingerprint: command.fingerprint, journalChecked: true,
                        failpoint: failpoint == "after_first_part" ? "" : failpoint, partOfSeveral: shards.count > 1
                    )
                )
            } catch {
                results[shard] = .failure(error)
                break
            }
            // Tests: the caller stops after its first part, as a crash would (nothing taken back).
            if failpoint == "after_first_part" { throw InventoryError.unavailable("failpoint after_first_part") }
        }
        var lines = [ReservationLine?](repeating: nil, count: command.items.count)
        var failures: [any Error] = []
        var allReplayed = true
        var status = ReservationStatus.reserved
        var expiresAt: Int64?
        for shard in shards {
            switch results[shard] {
            case .success(let held)?:
                let reservation: Reservation
                switch held.outcome {
                case .created(let made): reservation = made; allReplayed = false
                case .replayed(let made): reservation = made
                }
                status = reservation.status
                expiresAt = [expiresAt, reservation.expiresAtMilliseconds].compactMap { $0 }.min()
                for (line, position) in zip(reservation.lines, positions[shard, default: []]) { lines[position] = line }
            case .failure(let error)?: failures.append(error)
            case nil: break  // not tried: an earlier part failed
            }
        }
        guard failures.isEmpty else {
            await takeBackParts(command, results: results, reservations: reservations)
            throw Self.merged(failures)
        }
        // Partial mode: parts may each hold nothing; the order as a whole must hold something.
        if command.shortage == .partial, shards.count > 1, !allReplayed, lines.allSatisfy({ ($0?.reserved ?? 0) == 0 }) {
            await takeBackParts(command, results: results, reservations: reservations)
            throw InventoryError.insufficientStock(
                command.items.map { InventoryError.Shortage(skuId: $0.skuId, requested: $0.quantity, available: 0) }
            )
        }
        if shards.count > 1 {
            // Every part is held: the order is reserved, unless it was decided otherwise meanwhile (a cancel, or the
            // sweeper giving up on a reserve past its deadline: either takes the parts back).
            switch try await reservations.stores.run(DirCommitCall(orderId: orderId, layout: keys)) {
            case .reserved:
                break
            case .decided:
                // A retry of an order decided since: a part held now (Redis lost that part) is not the order's.
                for (shard, result) in results {
                    guard case .success(let held) = result, case .created(let made) = held.outcome, !held.eventId.isEmpty
                    else { continue }
                    reservations.stores.logger.error(
                        "a retry held a part of an order decided since (Redis lost the part); taking it back",
                        metadata: ["orderId": "\(orderId)", "shard": "\(shard)"]
                    )
                    await reservations.compensator.undoReserve(
                        orderId: command.orderId, bizId: command.bizId, lines: made.lines, eventId: held.eventId, routine: true
                    )
                }
                return .replayed(try await reservations.reservation(named: orderId))
            case .state(let state):
                if let closed = ReservationStatus(rawValue: state), closed == .cancelled || closed == .expired {
                    throw InventoryError.orderClosed(closed)
                }
                throw InventoryError.unavailable("order \(orderId) is \(state.isEmpty ? "gone" : state) after its parts were held")
            }
        }
        let reservation = Reservation(
            orderId: command.orderId, bizId: command.bizId, status: status, lines: lines.compactMap { $0 },
            expiresAtMilliseconds: expiresAt, persisted: reservations.configuration.durability == .sync ? true : nil
        )
        if command.dispense {
            let confirmed = try await reservations.confirm(named: orderId)
            let reservation = confirmed.reservation.with(persisted: reservations.configuration.durability == .sync ? true : nil)
            return allReplayed && confirmed.replayed ? .replayed(reservation) : .created(reservation)
        }
        return allReplayed ? .replayed(reservation) : .created(reservation.with(persisted: reservations.configuration.durability == .sync ? true : false))
    }

    /// The order's items Redis lacks (one EXISTS per item, all at once).
    func missingItems(_ command: ReserveCommand, reservations: Reservations) async throws -> [UInt64] {
        let keys = reservations.keys
        return try await withThrowingTaskGroup(of: UInt64?.self, returning: [UInt64].self) { group in
            for item in command.items {
                let key = keys.item(StockItemID(bizId: command.bizId, skuId: item.skuId))
                group.addTask {
                    try await reservations.stores.redisCall { try await reservations.stores.redis.command("EXISTS", key) }.int == 1 ? nil : item.skuId
                }
            }
            return try await group.reduce(into: []) { if let sku = $1 { $0.append(sku) } }
        }
    }

    /// A cluster reserve that failed in one part: the parts that hold stock for it (held now, or by an earlier
    /// attempt that never finished) are taken back, then the directory is removed if nothing decided the order.
    func takeBackParts(
        _ command: ReserveCommand, results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>],
        reservations: Reservations
    ) async {
        for (shard, result) in results {
            guard case .success(let held) = result else { continue }
            let reservation: Reservation
            var eventId = held.eventId
            switch held.outcome {
            case .created(let made): reservation = made
            case .replayed(let made):
                reservation = made
                guard made.status == .reserved else { continue }
                eventId = (try? await reservations.stores.redisCall {
                    try await reservations.stores.redis.command("HGET", reservations.keys.order(command.orderName, shard: shard), "event")
                })?.text ?? ""
            }
            guard !eventId.isEmpty else { continue }
            await reservations.compensator.undoReserve(
                orderId: command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId, routine: true
            )
        }
        await closeDirectory(command, reservations: reservations)
    }

    /// Removes the directory a reserve opened, unless the order was decided meanwhile (dir_close.lua).
    func closeDirectory(_ command: ReserveCommand, reservations: Reservations) async {
        _ = try? await reservations.stores.run(
            DirCloseCall(orderId: command.orderName, fingerprint: command.fingerprint, layout: reservations.keys)
        )
    }

    /// One error for the failures of several parts: items Redis lacks first (they are rebuilt and the reserve
    /// runs again), else their shortages together, else the first.
    static func merged(_ failures: [any Error]) -> any Error {
        let unknown = failures.flatMap { failure -> [UInt64] in
            if case InventoryError.unknownItems(let skus)? = failure as? InventoryError { return skus }
            return []
        }
        if !unknown.isEmpty { return InventoryError.unknownItems(unknown) }
        var shortages: [InventoryError.Shortage] = []
        for failure in failures {
            guard case InventoryError.insufficientStock(let lines)? = failure as? InventoryError else { return failures[0] }
            shortages += lines
        }
        return InventoryError.insufficientStock(shortages)
    }
}
