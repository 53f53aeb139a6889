import Logging
import MySQLClient
import RedisClient

/// Reservations: one order held whole or not at all, on one Redis or in parts on a Redis Cluster (directory, parts, take-back), and the journal asked after a data loss.
extension InventoryEngine {
    /// Holds stock for every item of an order, or for none.
    public func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome {
        try await reserve(command, failpoint: "")
    }

    /// `reserve` that stops where a test's `failpoint` says (`after_first_part`, the scripts' own), as a crash would:
    /// a test-only seam, not part of `InventoryService`.
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
            for sku in skus where try await !ensureItem(StockItemID(bizId: command.bizId, skuId: sku)) {
                unknown.append(sku)
            }
            if !unknown.isEmpty { throw InventoryError.unknownItems(unknown) }
            return try await reserveOnce(command, failpoint: failpoint)
        }
    }

    func reserveOnce(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        var journalChecked = false
        for _ in 0..<3 {
            do {
                guard keys.clustered else {
                    return try await reservePart(
                        command, shard: keys.shard(of: command.orderName), fingerprint: command.fingerprint,
                        journalChecked: journalChecked, failpoint: failpoint
                    ).outcome
                }
                return try await reserveInParts(command, journalChecked: journalChecked, failpoint: failpoint)
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
            try await applyPendingEvents(ofOrder: command.orderName)
            if try await !journal.rows(orderId: command.orderId, bizId: command.bizId).isEmpty {
                _ = try await restoreOrder(command.orderName, outboxApplied: true)
                return false
            }
            if try await journal.hasTombstone(orderId: command.orderId, bizId: command.bizId, keyPrefix: keys.prefix) {
                // Recorded cancelled in Redis again (not through `cancel`, which would first look the order up in
                // the journal again): the reserve, run again, finds it closed.
                if keys.clustered {
                    _ = try await decide(command.orderName, .cancelled, from: ["reserved", "reserving"], recording: true)
                } else {
                    _ = try await run(
                        RollbackCall(
                            orderId: command.orderName, shard: ask.shard, bizId: "", lines: [], linesText: "",
                            reason: .cancelled, retentionSeconds: configuration.retentionSeconds, layout: keys
                        )
                    )
                }
                return false
            }
            return true
        } catch let error as InventoryError {
            throw error
        } catch {
            throw mapMySQL(error)
        }
    }

    /// Holds one part of an order (on a single Redis the whole order) with one script; `eventId` is the outbox
    /// entry of a hold made now ("" for a replay).
    /// `journalChecked`: the journal was asked about the order (or, on a cluster, its directory is the guard), so an
    /// order Redis does not know is new.
    /// `holdsChecked`: the order was restored from the journal (and its outbox) because its hash had vanished while a
    /// hold of it was still in Redis (reserve.lua's 'vanished'): what Redis has now is all there is.
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
        switch try await run(call) {
        case .askJournal(let markerMissing):
            throw AskJournal(shard: shard, markerMissing: markerMissing)
        case .vanished:
            // The order's hash is gone while a hold of it is not: it comes back from the journal (after what the
            // outbox still has of it), and the reserve runs again against it.
            _ = try await restoreOrder(orderId)
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
                try await commitJournal(
                    command, fingerprint: fingerprint, reservation: reservation, eventId: held.eventId, epochs: held.epochs,
                    shard: shard
                )
            } catch is JournalHasOrder {
                return (.replayed(try await self.reservation(named: orderId)), "")
            }
            if command.dispense {
                return (.created(try await confirm(named: orderId).reservation.with(persisted: true)), held.eventId)
            }
            return (.created(reservation.with(persisted: true)), held.eventId)
        case .replay(let status, let expiresAt, let lines):
            if configuration.durability == .sync && status == .reserved {
                try await ensureRecorded(command.order, shard: shard)
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

    /// Redis Cluster: an order is held in parts, one script per shard its items are in, all or none. The
    /// directory is opened first (idempotency and the hanging-reservation guard live there), then the parts are
    /// held one after another; when one part fails, the parts held are taken back (undo_reserve: the journal loses their rows
    /// too) and the directory is removed, so the order may be tried again. A dispense holds every part, then
    /// confirms the order.
    func reserveInParts(_ command: ReserveCommand, journalChecked: Bool, failpoint: String) async throws -> ReserveOutcome {
        let orderId = command.orderName
        var positions: [Int: [Int]] = [:]
        for (index, item) in command.items.enumerated() {
            positions[keys.itemShard(StockItemID(bizId: command.bizId, skuId: item.skuId)), default: []].append(index)
        }
        let shards = positions.keys.sorted()
        let openDirectory = {
            try await self.run(
                DirOpenCall(
                    orderId: orderId, fingerprint: command.fingerprint, bizId: command.bizId, shards: shards,
                    ttlSeconds: command.ttlSeconds + self.configuration.retentionSeconds,
                    deadlineMilliseconds: shards.count > 1 ? self.configuration.reserveDeadlineMilliseconds : nil,
                    journalAsked: journalChecked, layout: self.keys
                )
            )
        }
        let opened: DirOpenCall.Reply
        var missing: [UInt64] = []
        if shards.count > 1 {
            // An item Redis lacks would fail its part after other parts held stock: looked for first (while the
            // directory opens), so that a reserve naming an unknown item holds nothing (the caller rebuilds what
            // MySQL has, and refuses the rest).
            async let lookedFor = missingItems(command)
            opened = try await openDirectory()
            missing = try await lookedFor
        } else {
            opened = try await openDirectory()
        }
        switch opened {
        case .opened:
            // Opened by this request and nothing held: removed again, so that the order may be tried again.
            if !missing.isEmpty { await closeDirectory(command) }
        case .same: break
        case .conflict: throw InventoryError.idempotencyConflict
        case .closed(let status): throw InventoryError.orderClosed(status)
        case .askJournal(let markerMissing): throw AskJournal(shard: keys.shard(of: orderId), markerMissing: markerMissing)
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
                    try await reservePart(
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
            await takeBackParts(command, results: results, positions: positions)
            throw Self.merged(failures)
        }
        // Partial mode: parts may each hold nothing; the order as a whole must hold something.
        if command.shortage == .partial, shards.count > 1, !allReplayed, lines.allSatisfy({ ($0?.reserved ?? 0) == 0 }) {
            await takeBackParts(command, results: results, positions: positions)
            throw InventoryError.insufficientStock(
                command.items.map { InventoryError.Shortage(skuId: $0.skuId, requested: $0.quantity, available: 0) }
            )
        }
        if shards.count > 1 {
            // Every part is held: the order is reserved, unless it was decided otherwise meanwhile (a cancel, or the
            // sweeper giving up on a reserve past its deadline: either takes the parts back).
            switch try await run(DirCommitCall(orderId: orderId, layout: keys)) {
            case .reserved:
                break
            case .decided:
                // A retry of an order decided since: a part held now (Redis lost that part) is not the order's.
                for (shard, result) in results {
                    guard case .success(let held) = result, case .created(let made) = held.outcome, !held.eventId.isEmpty
                    else { continue }
                    logger.error(
                        "a retry held a part of an order decided since (Redis lost the part); taking it back",
                        metadata: ["orderId": "\(orderId)", "shard": "\(shard)"]
                    )
                    await undoReserve(
                        orderId: command.orderId, bizId: command.bizId, lines: made.lines, eventId: held.eventId, routine: true
                    )
                }
                return .replayed(try await reservation(named: orderId))
            case .state(let state):
                if let closed = ReservationStatus(rawValue: state), closed == .cancelled || closed == .expired {
                    throw InventoryError.orderClosed(closed)
                }
                throw InventoryError.unavailable("order \(orderId) is \(state.isEmpty ? "gone" : state) after its parts were held")
            }
        }
        let reservation = Reservation(
            orderId: command.orderId, bizId: command.bizId, status: status, lines: lines.compactMap { $0 },
            expiresAtMilliseconds: expiresAt, persisted: configuration.durability == .sync ? true : nil
        )
        if command.dispense {
            let confirmed = try await confirm(named: orderId)
            let reservation = confirmed.reservation.with(persisted: configuration.durability == .sync ? true : nil)
            return allReplayed && confirmed.replayed ? .replayed(reservation) : .created(reservation)
        }
        return allReplayed ? .replayed(reservation) : .created(reservation.with(persisted: configuration.durability == .sync ? true : false))
    }

    /// The order's items Redis lacks (one EXISTS per item, all at once).
    func missingItems(_ command: ReserveCommand) async throws -> [UInt64] {
        try await withThrowingTaskGroup(of: UInt64?.self, returning: [UInt64].self) { group in
            for item in command.items {
                let key = keys.item(StockItemID(bizId: command.bizId, skuId: item.skuId))
                group.addTask {
                    try await self.redisCall { try await self.redis.command("EXISTS", key) }.int == 1 ? nil : item.skuId
                }
            }
            return try await group.reduce(into: []) { if let sku = $1 { $0.append(sku) } }
        }
    }

    /// A cluster reserve that failed in one part: the parts that hold stock for it (held now, or by an earlier
    /// attempt that never finished) are taken back, then the directory is removed if nothing decided the order.
    func takeBackParts(
        _ command: ReserveCommand, results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>],
        positions: [Int: [Int]]
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
                eventId = (try? await redisCall {
                    try await self.redis.command("HGET", self.keys.order(command.orderName, shard: shard), "event")
                })?.text ?? ""
            }
            guard !eventId.isEmpty else { continue }
            await undoReserve(
                orderId: command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId, routine: true
            )
        }
        await closeDirectory(command)
    }

    /// Removes the directory a reserve opened, unless the order was decided meanwhile (dir_close.lua).
    func closeDirectory(_ command: ReserveCommand) async {
        _ = try? await run(DirCloseCall(orderId: command.orderName, fingerprint: command.fingerprint, layout: keys))
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
