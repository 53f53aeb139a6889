import MySQLClient

// MARK: - Batch plan

/// A batch of events sorted into the statements that apply it, computed before the transaction starts so that a
/// retry only repeats SQL.
///
/// Phases, in this order (events of one order line arrive in causal order; a phase only ever moves a row forward):
/// 1. undo: delete the line's row while it is RESERVED and still carries the undone reserve event's id. Reserve
///    lines of the batch that an undo of the batch undoes are dropped from phase 2, so [reserve E1, undo E1] leaves
///    no row; running undo first lets [undo E1, reserve E2] (a retry after a sync-mode failure) replace E1's row by
///    E2's instead of reporting E2 as a duplicate.
/// 2. reserve: insert RESERVED rows for lines that have none; a row of another reserve event is a duplicate.
/// 3. confirm: RESERVED → CONFIRMED.
/// 4. cancel, expire: RESERVED → CANCELLED / EXPIRED (a late cancel never touches a CONFIRMED or REFUNDED row).
/// 5. refund: CONFIRMED → REFUNDED.
/// 6. stock: every confirm (−q) and refund (+q) line once per ledger source, summed per item into one change of
///    each item's row, and one ledger row per line carrying the item's stock after the batch.
///
/// The transaction runs at READ COMMITTED: searches take no gap locks, so batches of other orders (other workers,
/// sync mode's group commits) never block on the gaps next to rows they do not share. Nothing here relies on a
/// snapshot: every row read is then either locked by this transaction or checked again by a unique key.
struct BatchPlan: Sendable {
    var undos: [UndoLine] = []
    var reserves: [ReserveLine] = []
    /// Positions in `reserves` of each line's first reserve (it creates the row; later ones of other events are
    /// duplicates), in key order, so concurrent batches lock rows in the same order.
    var firstReserves: [Int] = []
    /// For each position in `reserves`, the position of its line's first reserve.
    var firstOfLine: [Int] = []
    /// Every confirm, cancel, expiry and refund line, in batch order: the journal row's, unless a duplicate hold of an
    /// order that had ended owns it (`owners`, JournalBatchPlan+Duplicates.swift).
    var transitions: [TransitionLine] = []
    /// The status changes and ledger lines of `transitions` when no duplicate owns any (almost every batch).
    var statusChanges: [StatusChange] = []
    var ledger: [LedgerLine] = []
    var tombstones: [Tombstone] = []
    /// Journal rows that adopt a duplicate hold (`adopt` events).
    var adoptions: [AdoptLine] = []
    /// Whether the events come in their streams' order (the worker, a rebuild's pending events): only then is a
    /// duplicate's earlier hold decided for good (`earlierHolds`). Sync mode's group commit applies requests as they
    /// come, its journal ahead of the streams: it reads a decision made before, and keeps none of its own.
    var inStreamOrder = true

    var isEmpty: Bool {
        undos.isEmpty && reserves.isEmpty && statusChanges.allSatisfy(\.keys.isEmpty) && ledger.isEmpty
            && tombstones.isEmpty && adoptions.isEmpty
    }

    /// A cancel of an order that never reserved, kept under the key prefix of the Redis it was made in.
    struct Tombstone: Sendable {
        let prefix: String
        let bizId: String
        let orderId: String
    }

    init(_ events: [OutboxEvent], inStreamOrder: Bool = true) {
        self.inStreamOrder = inStreamOrder
        var undone: Set<LineEvent> = []
        var ended: Set<LineKey> = []

        for event in events where event.kind == .undo {
            guard let reserveEventId = event.reserveEventId, !reserveEventId.isEmpty else { continue }
            for line in event.lines {
                let key = LineKey(orderId: event.orderId, bizId: event.bizId, skuId: line.skuId)
                if undone.insert(LineEvent(key: key, eventId: reserveEventId)).inserted {
                    undos.append(UndoLine(key: key, reserveEventId: reserveEventId, eventId: event.id))
                }
            }
        }
        undos.sort { $0.key < $1.key }
        for event in events {
            for line in event.lines {
                let key = LineKey(orderId: event.orderId, bizId: event.bizId, skuId: line.skuId)
                switch event.kind {
                case .reserve:
                    guard line.quantity > 0, !undone.contains(LineEvent(key: key, eventId: event.id)) else { continue }
                    reserves.append(
                        ReserveLine(
                            key: key, userId: event.userId, requestFingerprint: event.requestFingerprint,
                            quantity: line.quantity,
                            expiresAt: event.expiresAtMilliseconds ?? event.atMilliseconds,
                            eventId: event.id, codes: line.codes, endedBefore: ended.contains(key),
                            reservedAt: Int64(event.id.prefix { $0 != "-" }).map { max($0, event.atMilliseconds) }
                        )
                    )
                case .confirm, .cancel, .expire, .refund:
                    transitions.append(TransitionLine(key: key, kind: event.kind, eventId: event.id, quantity: line.quantity))
                    ended.insert(key)
                case .adopt:
                    guard let earlier = event.reserveEventId, !earlier.isEmpty, line.quantity > 0 else { continue }
                    adoptions.append(AdoptLine(key: key, earlierEvent: earlier, quantity: line.quantity, codes: line.codes))
                case .undo:
                    continue
                }
            }
            // A cancel of an order that never reserved: its tombstone outlives Redis's memory of it.
            if event.kind == .cancel && event.lines.isEmpty {
                tombstones.append(Tombstone(prefix: KeyLayout.prefix(ofStream: event.stream), bizId: event.bizId, orderId: event.orderId))
            }
        }
        var firstByKey: [LineKey: Int] = [:]
        firstByKey.reserveCapacity(reserves.count)
        firstOfLine.reserveCapacity(reserves.count)
        for (index, line) in reserves.enumerated() {
            let first = firstByKey[line.key, default: index]
            if first == index {
                firstByKey[line.key] = index
                firstReserves.append(index)
            }
            firstOfLine.append(first)
        }
        firstReserves.sort { [reserves] in reserves[$0].key < reserves[$1].key }
        (statusChanges, ledger, _) = Self.changes(of: transitions, owners: [:])
    }

    /// The journal's status changes and ledger lines of `transitions`, and those of duplicate holds: `owners` maps a
    /// transition (by position) to the reserve event of the duplicate hold it belongs to. A ledger line is applied once
    /// per source: a duplicate's carries its reserve event, since the line's own is the earlier order's.
    static func changes(
        of transitions: [TransitionLine], owners: [Int: String]
    ) -> (statusChanges: [StatusChange], ledger: [LedgerLine], duplicateMoves: [DuplicateMove]) {
        var keys: [OutboxEvent.Kind: [LineKey]] = [:]
        var duplicateMoves: [DuplicateMove] = []
        var ledger: [LedgerLine] = []
        var ledgerSources: Set<String> = []
        let moves: [OutboxEvent.Kind: (from: String, to: String)] = [
            .confirm: ("RESERVED", "CONFIRMED"), .cancel: ("RESERVED", "CANCELLED"), .expire: ("RESERVED", "EXPIRED"),
            .refund: ("CONFIRMED", "REFUNDED"),
        ]
        for (index, line) in transitions.enumerated() {
            let owner = owners[index]
            if let owner, let move = moves[line.kind] {
                duplicateMoves.append(
                    DuplicateMove(
                        line: LineEvent(key: line.key, eventId: owner), from: move.from, to: move.to,
                        endedBy: line.kind == .confirm ? nil : line.eventId
                    )
                )
            } else {
                keys[line.kind, default: []].append(line.key)
            }
            guard line.kind == .confirm || line.kind == .refund, line.quantity > 0 else { continue }
            let reason = line.kind.rawValue
            let key = line.key
            let source = "\(reason):\(key.orderId):\(key.bizId):\(key.skuId)" + (owner.map { ":" + $0 } ?? "")
            if ledgerSources.insert(source).inserted {
                ledger.append(
                    LedgerLine(
                        item: StockItemID(bizId: key.bizId, skuId: key.skuId),
                        delta: line.kind == .confirm ? -line.quantity : line.quantity, reason: reason, source: source
                    )
                )
            }
        }
        let statusChanges = [OutboxEvent.Kind.confirm, .cancel, .expire, .refund].map { kind in
            StatusChange(from: moves[kind]!.from, to: moves[kind]!.to, keys: unique(keys[kind] ?? []))
        }
        return (statusChanges, ledger, duplicateMoves)
    }

    /// Distinct keys in index order, so concurrent batches lock rows in the same order.
    private static func unique(_ keys: [LineKey]) -> [LineKey] {
        Array(Set(keys)).sorted()
    }

    /// Runs the plan inside the caller's transaction, which runs at READ COMMITTED.
    func run(on connection: MySQLConnection) throws -> JournalBatchResult {
        var result = JournalBatchResult()
        result.rowsDeleted = try undo(on: connection)
        try reserve(on: connection, into: &result)
        let owners = try owners(result.duplicates, on: connection)
        let (statusChanges, ledger, duplicateMoves) =
            owners.isEmpty ? (statusChanges, ledger, []) : Self.changes(of: transitions, owners: owners)
        for change in statusChanges where !change.keys.isEmpty {
            result.rowsUpdated += try update(change, on: connection)
        }
        try move(duplicateMoves, on: connection)
        try adopt(on: connection)
        try applyStock(ledger, on: connection, into: &result)
        for chunk in exactChunks(tombstones) {
            _ = try connection.query(
                "INSERT IGNORE INTO order_tombstones (key_prefix, biz_id, order_id) VALUES \(tuples(chunk.count, "(?, ?, ?)"))",
                chunk.flatMap { [MySQLValue.string($0.prefix), .string($0.bizId), .string($0.orderId)] }
            )
        }
        return result
    }

    // MARK: Phases

    private func undo(on connection: MySQLConnection) throws -> Int {
        var deleted = 0
        for chunk in paddedChunks(undos) {
            let result = try connection.query(
                """
                DELETE FROM reservation_journal
                WHERE status = 'RESERVED' AND (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?)")))
                """,
                chunk.flatMap { $0.key.binds + [.string($0.reserveEventId)] }
            )
            deleted += Int(result.affectedRows)
            // The codes the undone reserve held: usable again once their assignment is gone.
            _ = try connection.query(
                """
                DELETE FROM code_assignments
                WHERE (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?)")))
                """,
                chunk.flatMap { $0.key.binds + [.string($0.reserveEventId)] }
            )
        }
        if !undos.isEmpty { try closeUndone(on: connection) }
        return deleted
    }

    private func reserve(on connection: MySQLConnection, into result: inout JournalBatchResult) throws {
        guard !reserves.isEmpty else { return }
        // Rows that exist already (a redelivery, sync mode's commit, or a duplicate) are read, not written: an
        // insert that meets an existing key would lock the gap before it. Indexed by position in `reserves`.
        var existing = [(status: String, reserveEvent: String)?](repeating: nil, count: reserves.count)
        for chunk in paddedChunks(firstReserves) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 3)
            for index in chunk { reserves[index].key.appendBinds(to: &binds) }
            let rows = try connection.query(
                """
                SELECT order_id, biz_id, sku_id, status, reserve_event FROM reservation_journal
                WHERE (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder))")))
                """,
                binds
            ).rows
            guard !rows.isEmpty else { continue }
            let positions = Dictionary(chunk.map { (reserves[$0].key, $0) }, uniquingKeysWith: { first, _ in first })
            for row in rows {
                guard let orderId = row.string("order_id"), let bizId = row.string("biz_id"),
                    let skuId = row.uint64("sku_id"),
                    let position = positions[LineKey(orderId: orderId, bizId: bizId, skuId: skuId)]
                else { continue }
                existing[position] = (row.string("status") ?? "", row.string("reserve_event") ?? "")
            }
        }

        let missing = firstReserves.filter { existing[$0] == nil }
        for chunk in exactChunks(missing) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 9)
            for index in chunk {
                let line = reserves[index]
                line.key.appendBinds(to: &binds)
                binds.append(line.userId.map(MySQLValue.string) ?? .null)
                binds.append(.int(line.quantity))
                binds.append(JournalTime.value(milliseconds: line.expiresAt))
                binds.append(.string(line.eventId))
                binds.append(line.requestFingerprint.map(MySQLValue.string) ?? .null)
                binds.append(line.reservedAt.map { JournalTime.value(milliseconds: $0) } ?? .null)
            }
            let inserted = try insertingConcurrently(
                connection,
                """
                INSERT INTO reservation_journal
                    (order_id, biz_id, sku_id, user_id, quantity, status, expires_at, reserve_event, request_fp, reserved_at)
                VALUES \(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?, ?, 'RESERVED', \(JournalTime.placeholder), ?, SHA1(?), \(JournalTime.placeholder))"))
                """,
                binds
            )
            result.rowsInserted += Int(inserted.affectedRows)
        }
        // The codes of the rows written now, in the same transaction (a line's row and its codes come together).
        try Self.assign(
            missing.flatMap { index in reserves[index].codes.map { (LineEvent(key: reserves[index].key, eventId: reserves[index].eventId), $0) } },
            on: connection
        )
        for index in missing {
            existing[index] = ("RESERVED", reserves[index].eventId)
        }

        var duplicates: [(index: Int, row: (status: String, reserveEvent: String))] = []
        for (index, line) in reserves.enumerated() {
            guard let row = existing[firstOfLine[index]], row.reserveEvent != line.eventId else { continue }
            duplicates.append((index, row))
        }
        guard !duplicates.isEmpty else { return }
        let decided = try earlierHolds(of: duplicates, on: connection)
        for (index, row) in duplicates {
            let line = reserves[index]
            result.duplicates.append(
                JournalBatchResult.DuplicateLine(
                    orderId: line.key.orderId, bizId: line.key.bizId, skuId: line.key.skuId, quantity: line.quantity,
                    existingStatus: row.status, eventId: line.eventId, existingReserveEvent: row.reserveEvent,
                    earlierHold: decided[index] ?? ""
                )
            )
        }
        try assignCodes(ofDuplicates: result.duplicates, on: connection)
    }

    private func update(_ change: StatusChange, on connection: MySQLConnection) throws -> Int {
        var updated = 0
        for chunk in paddedChunks(change.keys) {
            let result = try connection.query(
                """
                UPDATE reservation_journal SET status = ?
                WHERE status = ? AND (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder))")))
                """,
                [.string(change.to), .string(change.from)] + chunk.flatMap(\.binds)
            )
            updated += Int(result.affectedRows)
        }
        return updated
    }

    private func applyStock(_ ledger: [LedgerLine], on connection: MySQLConnection, into result: inout JournalBatchResult) throws {
        guard !ledger.isEmpty else { return }
        // Lines whose ledger row exists were applied by an earlier delivery. A row committed by a concurrent
        // transaction after this read makes the ledger insert below fail, and the batch is retried.
        var applied: Set<String> = []
        for chunk in paddedChunks(ledger.map(\.source)) {
            let rows = try connection.query(
                "SELECT source FROM stock_ledger WHERE source IN (\(tuples(chunk.count, "?")))",
                chunk.map(MySQLValue.string)
            ).rows
            for row in rows {
                if let source = row.string("source") { applied.insert(source) }
            }
        }
        let pending = ledger.filter { !applied.contains($0.source) }
        guard !pending.isEmpty else { return }

        var deltas: [StockItemID: Int64] = [:]
        for line in pending {
            deltas[line.item, default: 0] += line.delta
        }
        let items = deltas.keys.sorted { ($0.bizId, $0.skuId) < ($1.bizId, $1.skuId) }

        // Lock the items' rows, in key order, and read their stock.
        var stockBefore: [StockItemID: Int64] = [:]
        func lockRows(_ items: [StockItemID]) throws {
            for chunk in paddedChunks(items) {
                let rows = try connection.query(
                    """
                    SELECT biz_id, sku_id, stock FROM stock
                    WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(skuPlaceholder))"))) FOR UPDATE
                    """,
                    chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
                ).rows
                for row in rows {
                    guard let bizId = row.string("biz_id"), let skuId = row.uint64("sku_id"), let stock = row.int64("stock")
                    else { continue }
                    stockBefore[StockItemID(bizId: bizId, skuId: skuId)] = stock
                }
            }
        }
        try lockRows(items)
        // An item without a row (deleted by hand while Redis still sold it) is reported, and gets a row of stock 0
        // that this batch's lines then move: the sale is recorded (the reconciler shows the difference) instead of
        // being acknowledged without a trace.
        result.missingStockItems = items.filter { stockBefore[$0] == nil }
        if !result.missingStockItems.isEmpty {
            for chunk in exactChunks(result.missingStockItems) {
                _ = try connection.query(
                    """
                    INSERT IGNORE INTO stock (biz_id, sku_id, stock, version, created_at, updated_at)
                    VALUES \(tuples(chunk.count, "(?, \(skuPlaceholder), 0, 1, NOW(3), NOW(3))"))
                    """,
                    chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
                )
            }
            try lockRows(result.missingStockItems)
        }
        let present = items.filter { stockBefore[$0] != nil }

        // One change per item: each row is in exactly one statement, which adds the item's summed delta.
        for chunk in paddedChunks(present, limit: JournalRepository.maxItemsPerStockUpdate) {
            _ = try connection.query(
                """
                UPDATE stock
                SET stock = stock + CASE \(tuples(chunk.count, "WHEN biz_id = ? AND sku_id = \(skuPlaceholder) THEN CAST(? AS SIGNED)", separator: " ")) END,
                    version = version + 1
                WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(skuPlaceholder))")))
                """,
                chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId), .int(deltas[item] ?? 0)] }
                    + chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
            )
        }

        // The rows are locked, so the stock after the batch is what was read plus what was added.
        let rows = pending.compactMap { line -> (LedgerLine, Int64)? in
            guard let before = stockBefore[line.item], let delta = deltas[line.item] else { return nil }
            return (line, before + delta)
        }
        for chunk in exactChunks(rows) {
            let inserted = try insertingConcurrently(
                connection,
                """
                INSERT INTO stock_ledger (biz_id, sku_id, delta, stock_after, reason, source)
                VALUES \(tuples(chunk.count, "(?, \(skuPlaceholder), ?, ?, ?, ?)"))
                """,
                chunk.flatMap { line, after in
                    [
                        .string(line.item.bizId), skuValue(line.item.skuId), .int(line.delta), .int(after),
                        .string(line.reason), .string(line.source),
                    ]
                }
            )
            result.stockChanges += Int(inserted.affectedRows)
        }
    }
}
