import Logging
import MySQLClient
import RedisClient

/// Orders as Redis holds them (one hash, or a cluster's directory and parts), and an order restored from the journal
/// when Redis lost it: where an order's state is read.
struct OrderReader: Sendable, EngineCollaborator {
    let stores: EngineStores
    let rebuilder: ItemRebuilder
    let journal: JournalRepository
    let codePools: CodePoolRepository
    let placement: any OrderPlacement

    typealias StoredOrder = InventoryEngine.StoredOrder

    /// The order as Redis holds it; an order Redis lost but the journal has is restored first.
    func readOrder(_ orderId: String) async throws -> StoredOrder? {
        if let order = try await readStoredOrder(orderId) { return order }
        guard try await restoreOrder(orderId) else { return nil }
        return try await readStoredOrder(orderId)
    }

    /// Rebuilds an order's hash (on a cluster: its missing parts, and its directory if that is missing too) and its
    /// reserve/rollback keys from its journal rows. Returns false when the journal has no row of it (or MySQL cannot
    /// be asked: then the order is as unknown as Redis says).
    /// `orderId`: the order's Redis name (`OrderRef.name`), which names its business too.
    /// `outboxApplied`: the caller applied the order's pending outbox events just now (no second scan).
    func restoreOrder(_ orderId: String, outboxApplied: Bool = false) async throws -> Bool {
        let ref = OrderRef(name: orderId)
        try await refuseCopyOfOldOrder(ref)
        // MySQL that cannot be asked is 503, not "no such order": a cancel would otherwise be recorded as one
        // before any reserve and answered 200, while the journal still holds the order's stock.
        let journalRows = { [journal] in
            do {
                return try await journal.rows(orderId: ref.orderId, bizId: ref.bizId)
            } catch {
                throw self.stores.mapMySQL(error)
            }
        }
        // What the outbox still has of the order goes to the journal first: the order's hash may have vanished
        // alone while its events wait for the worker (a restore from the journal alone would miss its hold, or
        // bring back as reserved an order Redis had confirmed).
        if !outboxApplied { try await applyPendingEvents(ofOrder: orderId) }
        let seen = try await journalRows()
        guard let any = seen.first else { return false }
        // Rows of a reserve Redis took back (a sync commit that failed, a duplicate) are about to be removed by its
        // undo event: restoring them would make a live order of a hold no item counts. The caller retries.
        for row in seen where !row.reserveEvent.isEmpty {
            let shard = keys.partShard(orderId: orderId, item: StockItemID(bizId: row.bizId, skuId: row.skuId))
            if await wasTakenBack(orderId: orderId, eventId: row.reserveEvent, shard: shard) {
                throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
            }
        }
        // Items first, so they count these holds from the same journal. The rows are read again afterwards: a
        // write-back batch may have moved them before the rebuild read MySQL (a confirm Redis lost, say), and
        // once the items are rebuilt no line of the lost epoch changes them any more.
        for line in seen where line.bizId == any.bizId {
            _ = try await rebuilder.ensureItem(StockItemID(bizId: any.bizId, skuId: line.skuId))
        }
        let rows = try await journalRows()
        guard let first = rows.first else { return false }
        // On a cluster the parts follow their directory one after another, so the rows of an order caught half-way
        // (an instance stopped after moving some parts) differ: each part comes back as its own rows say, and the
        // directory as the furthest of them (it decided first). Restored in its directory's state, a part still held
        // was a part moved already: the transition, resumed, replayed on it and its item kept the hold for good.
        let status = Self.decidedStatus(rows.filter { $0.bizId == first.bizId }.map(\.status))
        // The request as the journal keeps it (its hash): a retry with another body is still told apart.
        let request = rows.compactMap(\.requestHash).first.map { "#" + $0 } ?? ""
        let assigned: [UInt64: [String]]
        do { assigned = try await codePools.assignedCodes(orderId: ref.orderId, bizId: ref.bizId) } catch { throw stores.mapMySQL(error) }
        var parts: [Int: [JournalRow]] = [:]
        for line in rows where line.bizId == first.bizId {
            parts[keys.partShard(orderId: orderId, item: StockItemID(bizId: first.bizId, skuId: line.skuId)), default: []].append(line)
        }
        let duplicated: Set<UInt64>
        do { duplicated = Set(try await journal.openDuplicateLines(orderId: ref.orderId, bizId: ref.bizId)) } catch { throw stores.mapMySQL(error) }
        for (shard, lines) in parts.sorted(by: { $0.key < $1.key }) {
            // (A part's rows were moved by one script, its reserve by one event: they agree.)
            let partStatus = Self.decidedStatus(lines.map(\.status))
            // A duplicate hold of the part's lines ends, before the part is restored, at its stream's last entry read
            // with the part's absence: what comes after is the restored order's. (Ended first, so that a restore is
            // never left with its duplicate open: a failure here is a 503 before anything is restored.)
            let duplicatedSkus = lines.map(\.skuId).filter(duplicated.contains)
            if !duplicatedSkus.isEmpty, let ending = try await stores.run(PartEndingCall(orderId: orderId, shard: shard, layout: keys)) {
                try await Self.afterPartEnding?(orderId)
                try await endDuplicates(of: ref, skus: duplicatedSkus, at: ending, shard: shard)
            }
            let call = RestoreOrderCall(
                orderId: orderId, shard: shard, bizId: first.bizId, userId: first.userId, status: partStatus,
                lines: lines.map { RestoreOrderCall.Line(skuId: $0.skuId, quantity: $0.quantity) },
                codes: assigned.isEmpty ? [] : lines.map { assigned[$0.skuId, default: []] },
                expiresAtMilliseconds: lines[0].expiresAtMilliseconds, request: request,
                retentionSeconds: configuration.retentionSeconds, layout: keys
            )
            // An item rebuilt again meanwhile is not whole: the script answers `missing`, and the restore waits for it.
            if try await rebuilder.run(onItems: call) {
                stores.logger.notice(
                    "order restored from the journal", metadata: ["orderId": "\(orderId)", "status": "\(partStatus)", "shard": "\(shard)"]
                )
            }
        }
        try await placement.restoreRest(
            orderId, shards: parts.keys.sorted(), from: first, status: status, request: request, reader: self
        )
        return true
    }

    /// The state journal rows of one order decide (lowercased): the furthest of theirs. A transition is decided
    /// before any line moves (in the directory on a cluster), so a line still RESERVED beside a moved one is behind,
    /// and a REFUNDED line was CONFIRMED first.
    static func decidedStatus(_ statuses: [String]) -> String {
        func rank(_ status: String) -> Int {
            switch status {
            case "RESERVED": 0
            case "REFUNDED": 2
            default: 1
            }
        }
        return (statuses.max { rank($0) < rank($1) } ?? "RESERVED").lowercased()
    }

    /// An order of a business other than `default` held since before orders were scoped lives under its bare
    /// orderId, with the same item keys its new name maps to: restoring a copy under the new name would let both
    /// release the same hold. It is left to end under its old name (the sweeper expires it); until then its
    /// business's calls are told so (503). See README "Orders belong to a business" (upgrade).
    func refuseCopyOfOldOrder(_ ref: OrderRef) async throws {
        guard ref.bizId != OrderRef.defaultBusiness else { return }
        let key = placement.ownerKey(bareOrderId: ref.orderId, keys: keys)
        let stored = try await stores.redisCall { try await self.stores.redis.command("HGET", key, "biz") }.text
        if stored == ref.bizId {
            throw InventoryError.unavailable(
                "order \(ref.orderId) of business \(ref.bizId) is kept under its name from before orders were scoped; "
                    + "it ends there (it expires, and is forgotten after the retention period)"
            )
        }
    }

    /// Applies the order's outbox entries not yet acknowledged to the journal (through the epoch fence, like the
    /// worker; applying them again later changes nothing). On a single Redis they are in the order's shard's
    /// stream; on a cluster in the streams of its parts' shards, which only its directory names: every shard's.
    /// A duplicate hold of an ended order (a retry after retention its client confirmed before the worker took it
    /// back, JournalBatchPlan+Duplicates.swift) owns its order's later events only while Redis has it: a part
    /// restored from the journal is the journal row's, and what it does next is that row's. Each of its lines'
    /// duplicates ends at the part's stream's last entry read while the part was absent (lua/part_ending.lua: its own
    /// events, applied before or still to be delivered again, all come before; the restored part's after). Its sale,
    /// if any, stays recorded. A part that survived keeps its duplicate.
    /// A retry held again after the part's absence was read, and recorded as a duplicate before the end was written,
    /// is the part Redis has now (its hash names its reserve event): that one stays open, and the restore finds the part.
    func endDuplicates(of ref: OrderRef, skus: [UInt64], at lastEvent: String, shard: Int) async throws {
        do {
            try await journal.endDuplicates(orderId: ref.orderId, bizId: ref.bizId, skuIds: skus, lastEvent: lastEvent) {
                try await heldEvent(ref.name, shard: shard)
            }
        } catch let error as InventoryError {
            throw error
        } catch {
            throw stores.mapMySQL(error)
        }
    }

    /// The reserve event the part's hash names: its hold's, "" for an order restored from the journal (or none).
    /// `orderId`: the order's Redis name.
    func heldEvent(_ orderId: String, shard: Int) async throws -> String {
        try await stores.run(
            ReadFieldsCall(keys.order(orderId, shard: shard), fields: ["event"], shard: shard, layout: keys)
        ).first?.text ?? ""
    }

    /// Runs between reading a part's end and writing it (tests: a retry held and recorded in between).
    @TaskLocal static var afterPartEnding: (@Sendable (String) async throws -> Void)?

    func applyPendingEvents(ofOrder orderId: String) async throws {
        let streams = keys.outboxes(ofOrder: orderId)
        var found: [OutboxEvent] = []
        for stream in streams {
            found += try await stores.pendingEvents(of: .order(orderId), in: stream)
        }
        guard !found.isEmpty else { return }
        do {
            _ = try await journal.apply(WriteBackWorker.cancellingUndone(found), fences: stores.batchFences)
        } catch {
            throw stores.mapMySQL(error)
        }
    }

    /// The order as Redis holds it (`OrderPlacement.readOrder`), nil when Redis has not all of it.
    func readStoredOrder(_ orderId: String) async throws -> StoredOrder? {
        try await placement.readOrder(orderId, reader: self)
    }

    func readPart(_ orderId: String, shard: Int) async throws -> StoredOrder? {
        let fields = try await stores.run(
            ReadFieldsCall(
                keys.order(orderId, shard: shard), fields: ["status", "biz", "lines", "expires_at", "codes"], shard: shard,
                layout: keys
            )
        )
        guard let statusText = fields[safe: 0]?.text, let status = ReservationStatus(rawValue: statusText) else {
            return nil
        }
        try InventoryEngine.checkOwner(orderId, storedBiz: fields[safe: 1]?.text ?? "")
        return StoredOrder(
            orderId: orderId,
            bizId: fields[safe: 1]?.text ?? "",
            status: status,
            linesText: fields[safe: 2]?.text ?? "",
            codesText: fields[safe: 4]?.text ?? "",
            expiresAt: fields[safe: 3]?.int,
            shard: shard
        )
    }

    /// Whether the hold of reserve event `eventId` was taken back in Redis, so that an undo event removes the journal
    /// rows it made (its undone marker is '1'; 'kept' and 'handed': its order went on with it, its rows stay,
    /// lua/undo_reserve.lua); true when Redis cannot tell, the safe side for a caller deciding not to answer from that
    /// event's journal row.
    func wasTakenBack(orderId: String, eventId: String, shard: Int) async -> Bool {
        do {
            let marker = try await stores.redisCall {
                try await self.stores.redis.command("GET", self.keys.undoneMarker(orderId: orderId, eventId: eventId, shard: shard))
            }
            return marker.text == "1"
        } catch {
            return true
        }
    }
}
