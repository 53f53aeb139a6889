import RedisClient

/// The reads a check stands on: one Redis snapshot per shard, the journal's holds and what the worker has applied.
extension Reconciler {
    /// On a single Redis one script reads the page's items and every outbox at one instant. On a cluster one
    /// script per shard reads the shard's items and its one outbox, the only stream with entries of those items.
    func snapshot(_ ids: [StockItemID]) async throws -> Snapshot {
        var snapshot = Snapshot()
        for group in keys.scriptGroups(ids) {
            try await read(group, streams: keys.outboxes(holding: group[0]), into: &snapshot)
        }
        return snapshot
    }

    func read(_ ids: [StockItemID], streams: [String], into snapshot: inout Snapshot) async throws {
        let read = try await run(SnapshotCall(ids, streams: streams, layout: keys))
        for (id, item) in zip(ids, read.items) {
            guard let item else { continue }
            snapshot.counters[id] = item.counters
            if item.infinite { snapshot.infinite.insert(id) }
            if item.fenced { snapshot.fenced.insert(id) }
        }
        for line in read.lines { snapshot.entries[line.item, default: []].append(line) }
    }

    /// MySQL's side of a snapshot's items: the journal's holds per item (Σ quantity of RESERVED lines) and what the
    /// worker has applied of the lines in flight (their orders' journal rows, their confirms' and refunds' ledger
    /// sources). With `consistent`, read on the primary as one consistent snapshot taken now (after Redis's): every
    /// entry the worker committed before it is recognised as applied, every later one is in flight.
    func journalSide(
        _ ids: [StockItemID], _ snapshot: Snapshot, consistent: Bool
    ) async throws -> (reserved: [StockItemID: Int64], applied: Applied) {
        var orders: [String: Set<String>] = [:]
        var sources: [String] = []
        for (id, entries) in snapshot.entries {
            for entry in entries {
                orders[id.bizId, default: []].insert(entry.orderId)
                if entry.kind == .confirm || entry.kind == .refund {
                    sources.append(Applied.source(entry.kind, entry.orderId, id.bizId, id.skuId))
                }
            }
        }
        let side = try await mysqlCall {
            try await self.repository.journalSide(items: ids, orders: orders, sources: sources, consistent: consistent)
        }
        var applied = Applied()
        for row in side.rows {
            applied.rows[Applied.key(row.bizId, row.orderId, row.skuId)] = (row.status, row.reserveEvent, row.quantity)
        }
        applied.ledger = side.ledger
        for duplicate in side.duplicates {
            applied.duplicates[Applied.key(duplicate.bizId, duplicate.orderId, duplicate.skuId), default: []].append(duplicate)
        }
        // A duplicate hold of an ended order whose reserve entry the worker acknowledged while its take-back waits (a
        // retry task) or its order goes on: a hold of its own while the item counts it, as a rebuild counts it (one
        // whose entry is in flight is counted by it, `expected`).
        var reserved = side.reserved
        for (id, duplicate) in side.standing {
            let inFlight = snapshot.entries[id]?.contains {
                $0.kind == .reserve && $0.orderId == duplicate.orderId && $0.entryId == duplicate.reserveEvent
            } ?? false
            guard !inFlight else { continue }
            reserved[id, default: 0] += try await run(DuplicateHeldCall(id, duplicate, layout: keys))
        }
        return (reserved, applied)
    }
}
