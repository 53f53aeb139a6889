import Logging
import MySQLClient
import RedisClient

/// Reservations: one order held whole or not at all, on one Redis or in parts on a Redis Cluster (directory, parts, take-back), and the journal asked after a data loss.
extension InventoryEngine {
    /// Holds stock for every item of an order, or for none.
    public func reserve(_ command: ReserveCommand, failpoint: String = "") async throws -> ReserveOutcome {
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
                        command, shard: keys.shard(of: command.orderId), fingerprint: command.fingerprint,
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
            try await applyPendingEvents(ofOrder: command.orderId)
            if try await !journal.rows(orderId: command.orderId, bizId: command.bizId).isEmpty {
                _ = try await restoreOrder(command.orderId, bizId: command.bizId, outboxApplied: true)
                return false
            }
            if try await journal.hasTombstone(orderId: command.orderId, keyPrefix: keys.prefix) {
                // Recorded cancelled in Redis again (not through `cancel`, which would look the order up in every
                // business's journal rows): the reserve, run again, finds it closed.
                if keys.clustered {
                    _ = try await decide(command.orderId, .cancelled, from: ["reserved", "reserving"], recording: true)
                } else {
                    _ = try await runScript(
                        scripts.rollback, keys: rollbackKeys(command.orderId, shard: ask.shard, bizId: "", lines: []),
                        arguments: [
                            command.orderId, ReservationStatus.cancelled.rawValue, Self.redisTime,
                            String(configuration.retentionSeconds), "", "",
                        ]
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
        let orderId = command.orderId
        var keyList = [keys.order(orderId, shard: shard), keys.outbox(shard: shard), keys.expiryIndex(shard: shard)]
        var arguments = [
            orderId, fingerprint, command.bizId, command.userId ?? "",
            partOfSeveral && command.shortage == .partial ? "partial_part" : command.shortage.rawValue,
            Self.redisTime, String(command.ttlSeconds), String(configuration.retentionSeconds), failpoint,
            // Sync mode commits the hold first and then confirms it (see below): a dispense in one script would
            // leave nothing a failed commit could take back.
            String(configuration.itemTTLSeconds), command.dispense && configuration.durability == .async ? "1" : "",
            holdsChecked ? "2" : journalChecked ? "1" : "",
        ]
        keyList.reserveCapacity(3 + 5 * command.items.count)
        arguments.reserveCapacity(11 + 3 * command.items.count)
        // Per item: item hash, reserve key, rollback key; then every item's usage hash, then every item's code set.
        var usageKeys: [String] = []
        var codeKeys: [String] = []
        usageKeys.reserveCapacity(command.items.count)
        codeKeys.reserveCapacity(command.items.count)
        for item in command.items {
            let id = StockItemID(bizId: command.bizId, skuId: item.skuId)
            keyList.append(keys.item(id))
            keyList.append(keys.reserveKey(id, orderId: orderId))
            keyList.append(keys.rollbackKey(id, orderId: orderId))
            usageKeys.append(keys.userUsage(id))
            codeKeys.append(keys.codes(id))
            arguments.append(String(item.skuId))
            arguments.append(String(item.quantity))
            arguments.append(item.codes.joined(separator: "|"))
        }
        keyList += usageKeys
        keyList += codeKeys
        keyList.append(keys.generation(shard: shard))
        let reply = try await runScript(scripts.reserve, keys: keyList, arguments: arguments)
        let fields = reply.array ?? []
        switch fields.first?.text {
        case "ask":
            throw AskJournal(shard: shard, markerMissing: fields[safe: 1]?.text == "marker")
        case "vanished":
            // The order's hash is gone while a hold of it is not: it comes back from the journal (after what the
            // outbox still has of it), and the reserve runs again against it.
            _ = try await restoreOrder(orderId, bizId: command.bizId)
            return try await reservePart(
                command, shard: shard, fingerprint: fingerprint, journalChecked: true, failpoint: failpoint,
                holdsChecked: true, partOfSeveral: partOfSeveral
            )
        case "ok":
            let confirmEventId = fields[safe: 6]?.text ?? ""
            let reservation = Reservation(
                orderId: orderId, bizId: command.bizId, status: confirmEventId.isEmpty ? .reserved : .confirmed,
                lines: ReservationLine.parse(fields[safe: 2]?.text ?? "", codes: fields[safe: 5]?.text ?? ""),
                expiresAtMilliseconds: fields[safe: 1]?.int, persisted: false
            )
            let eventId = fields[safe: 3]?.text ?? ""
            guard configuration.durability == .sync else { return (.created(reservation), eventId) }
            let epochs = (fields[safe: 4]?.text ?? "").split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            do {
                try await commitJournal(
                    command, fingerprint: fingerprint, reservation: reservation, eventId: eventId, epochs: epochs,
                    shard: shard
                )
            } catch is JournalHasOrder {
                return (.replayed(try await self.reservation(orderId: orderId)), "")
            }
            if command.dispense {
                return (.created(try await confirm(orderId: orderId).reservation.with(persisted: true)), eventId)
            }
            return (.created(reservation.with(persisted: true)), eventId)
        case "replay":
            let status = ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .reserved
            if configuration.durability == .sync && status == .reserved {
                try await ensureRecorded(orderId: orderId, bizId: command.bizId, shard: shard)
                if command.dispense {
                    return (.replayed(try await confirm(orderId: orderId).reservation.with(persisted: true)), "")
                }
            }
            let reservation = Reservation(
                orderId: orderId, bizId: command.bizId, status: status,
                lines: ReservationLine.parse(fields[safe: 3]?.text ?? "", codes: fields[safe: 4]?.text ?? ""),
                expiresAtMilliseconds: fields[safe: 2]?.int, persisted: nil
            )
            return (.replayed(reservation), "")
        case "conflict":
            throw InventoryError.idempotencyConflict
        case "cancelled":
            throw InventoryError.orderClosed(ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .cancelled)
        case "missing":
            let indices = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
            throw InventoryError.unknownItems(indices.compactMap { command.items[safe: $0 - 1]?.skuId })
        case "short":
            let available = (fields[safe: 1]?.text ?? "").split(separator: ",").map { Int64($0) ?? 0 }
            var shortages: [InventoryError.Shortage] = []
            for (index, item) in command.items.enumerated() {
                let have = available[safe: index] ?? 0
                if have < item.quantity || command.shortage == .partial {
                    shortages.append(.init(skuId: item.skuId, requested: item.quantity, available: have))
                }
            }
            throw InventoryError.insufficientStock(shortages)
        case "userlimit":
            // 'i:limit:used,...', i 1-based
            let lines = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { entry -> InventoryError.UserLimit? in
                let parts = entry.split(separator: ":").compactMap { Int64($0) }
                guard parts.count == 3, let item = command.items[safe: Int(parts[0]) - 1] else { return nil }
                return .init(skuId: item.skuId, requested: item.quantity, limit: parts[1], used: parts[2])
            }
            throw InventoryError.userLimitExceeded(lines)
        case "pool":
            let sku = command.items[safe: Int(fields[safe: 1]?.int ?? 0) - 1]?.skuId ?? 0
            throw InventoryError.poolUnavailable(skuId: sku, reason: fields[safe: 2]?.text ?? "offline")
        case "code":
            let sku = command.items[safe: Int(fields[safe: 1]?.int ?? 0) - 1]?.skuId ?? 0
            throw InventoryError.codeUnavailable(skuId: sku, code: fields[safe: 2]?.text ?? "")
        case "nouser":
            let indices = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
            throw InventoryError.userRequired(indices.compactMap { command.items[safe: $0 - 1]?.skuId })
        default:
            throw InventoryError.unavailable("reserve script answered \(reply)")
        }
    }

    /// Redis Cluster: an order is held in parts, one script per shard its items are in, all or none. The
    /// directory is opened first (idempotency and the hanging-reservation guard live there), then the parts are
    /// held one after another; when one part fails, the parts held are taken back (undo_reserve: the journal loses their rows
    /// too) and the directory is removed, so the order may be tried again. A dispense holds every part, then
    /// confirms the order.
    func reserveInParts(_ command: ReserveCommand, journalChecked: Bool, failpoint: String) async throws -> ReserveOutcome {
        let orderId = command.orderId
        var positions: [Int: [Int]] = [:]
        for (index, item) in command.items.enumerated() {
            positions[keys.itemShard(StockItemID(bizId: command.bizId, skuId: item.skuId)), default: []].append(index)
        }
        let shards = positions.keys.sorted()
        let openDirectory = {
            try await self.runScript(
                self.scripts.dirOpen,
                keys: self.directoryKeys(orderId) + [self.keys.generation(shard: self.keys.shard(of: orderId))],
                arguments: [
                    command.fingerprint, command.bizId, shards.map(String.init).joined(separator: ","),
                    String(command.ttlSeconds + self.configuration.retentionSeconds), orderId,
                    shards.count > 1 ? String(self.configuration.reserveDeadlineMilliseconds) : "",
                    journalChecked ? "1" : "",
                ]
            ).array ?? []
        }
        let opened: [RedisValue]
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
        switch opened.first?.text {
        case "new":
            // Opened by this request and nothing held: removed again, so that the order may be tried again.
            if !missing.isEmpty { await closeDirectory(command) }
        case "same": break
        case "conflict": throw InventoryError.idempotencyConflict
        case "closed": throw InventoryError.orderClosed(ReservationStatus(rawValue: opened[safe: 1]?.text ?? "") ?? .cancelled)
        case "ask": throw AskJournal(shard: keys.shard(of: orderId), markerMissing: opened[safe: 1]?.text == "marker")
        default: throw InventoryError.unavailable("dir_open answered \(opened)")
        }
        if !missing.isEmpty { throw InventoryError.unknownItems(missing) }
        // Part after part, in shard order, stopping at the first that fails: orders over the same items then take
        // them in the same order, so concurrent orders do not each hold a part another needs and all fail (an
        // order refused at its first part held nothing; one that got it competes for the next only with the
        // others that did).
        var results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>] = [:]
        for shard in shards {
            let part = ReserveCommand(
                orderId: orderId, bizId: command.bizId, userId: command.userId,
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
            let committed = try await runScript(
                scripts.dirCommit, keys: directoryKeys(orderId), arguments: [orderId]
            ).array ?? []
            if committed.first?.text == "decided", let decided = ReservationStatus(rawValue: committed[safe: 1]?.text ?? "") {
                // A retry of an order decided since: a part held now (Redis lost that part) is not the order's.
                for (shard, result) in results {
                    guard case .success(let held) = result, case .created(let made) = held.outcome, !held.eventId.isEmpty
                    else { continue }
                    logger.error(
                        "a retry held a part of an order decided since (Redis lost the part); taking it back",
                        metadata: ["orderId": "\(orderId)", "shard": "\(shard)"]
                    )
                    await undoReserve(
                        orderId: orderId, bizId: command.bizId, lines: made.lines, eventId: held.eventId, routine: true
                    )
                }
                return .replayed(try await reservation(orderId: orderId))
            }
            if committed.first?.text != "ok" {
                let state = committed[safe: 1]?.text ?? ""
                if let closed = ReservationStatus(rawValue: state), closed == .cancelled || closed == .expired {
                    throw InventoryError.orderClosed(closed)
                }
                throw InventoryError.unavailable("order \(orderId) is \(state.isEmpty ? "gone" : state) after its parts were held")
            }
        }
        let reservation = Reservation(
            orderId: orderId, bizId: command.bizId, status: status, lines: lines.compactMap { $0 },
            expiresAtMilliseconds: expiresAt, persisted: configuration.durability == .sync ? true : nil
        )
        if command.dispense {
            let confirmed = try await confirm(orderId: orderId)
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
                    try await self.redis.command("HGET", self.keys.order(command.orderId, shard: shard), "event")
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
        _ = try? await runScript(
            scripts.dirClose, keys: directoryKeys(command.orderId), arguments: [command.fingerprint, command.orderId]
        )
    }

    /// Redis Cluster: the keys of the directory scripts, the order's directory and its shard's index of reserves
    /// under way.
    func directoryKeys(_ orderId: String) -> [String] {
        [keys.directory(orderId), keys.pendingIndex(forOrder: orderId)]
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
