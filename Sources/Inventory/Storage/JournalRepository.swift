import MySQLClient

/// MySQL access for the task journal (`reservation_journal`) as the write-back worker and sync mode fill it from
/// outbox events, and for the stock changes those events carry (confirm, refund) through the stock ledger.
public struct JournalRepository: Sendable {
    /// Attempts of one batch: the first and up to three retries when InnoDB rolls the transaction back (deadlock,
    /// lock wait timeout) or another transaction wrote some of the same rows concurrently. The rollback undid
    /// everything and the batch is idempotent, so a retry is safe; it waits a few random milliseconds first so that
    /// two colliding batches do not collide again.
    static let transactionAttempts = 4
    /// Most rows (or tuples of an IN list) per statement; below MariaDB's `in_predicate_conversion_threshold`
    /// (1000), so IN lists stay range scans of the index.
    static let maxRowsPerStatement = 512
    /// Most items per stock UPDATE: its CASE is evaluated per row, so its cost grows with the square of this.
    static let maxItemsPerStockUpdate = 128

    private let client: MySQLClient

    /// Creates a repository on `client`.
    public init(client: MySQLClient) {
        self.client = client
    }

    /// Applies a batch of outbox events in one transaction, idempotently: applying the same events again, or any
    /// part of them again after the rest, changes nothing (see the phases of `BatchPlan`). Retried as a whole
    /// when InnoDB rolls it back.
    ///
    /// With `fences` (the Redis side), lines of an epoch older than their item's epoch in Redis are left out (`staleLines`): Redis
    /// lost the data those lines changed and rebuilt the item from MySQL without them, so applying them now would
    /// make the journal count what Redis does not (a hold Redis does not count lets it sell the unit twice). The
    /// stock rows of the batch's items are locked first, and the rebuild holds the same lock from its read of
    /// MySQL until it has written Redis: either the rebuild reads after this commit (and counts these lines) or
    /// this batch sees the rebuilt epoch. And Redis's drain marks of the events' shards are raised before the COMMIT
    /// (`DrainMarkSQL`): a Redis whose mark is below MySQL's went back in time since MySQL recorded changes it no
    /// longer has; it is then forgotten there (`BatchFences.forgetWentBack`) and the batch runs again.
    ///
    /// `inStreamOrder`: whether `events` come in their streams' order (see `BatchPlan.inStreamOrder`).
    public func apply(
        _ events: [OutboxEvent], fences: (any BatchFences)? = nil, inStreamOrder: Bool = true
    ) async throws -> JournalBatchResult {
        guard let fences, !events.isEmpty else {
            let plan = BatchPlan(events, inStreamOrder: inStreamOrder)
            if plan.isEmpty { return JournalBatchResult() }
            return try await retryingDeadlocks {
                try await client.withTransaction(isolation: .readCommitted) { connection in try plan.run(on: connection) }
            }
        }
        do {
            return try await applyFenced(events, fences: fences, inStreamOrder: inStreamOrder)
        } catch let wentBack as RedisWentBack {
            // Redis went back in time: what it has there is forgotten (its marks set to MySQL's counts), and the batch
            // runs again against the Redis that is left.
            try await fences.forgetWentBack(wentBack.marks, journal: self)
            return try await applyFenced(events, fences: fences, inStreamOrder: inStreamOrder)
        }
    }

    /// `apply` through both fences: the items' epochs, and the drain marks of the events' shards (their rows locked
    /// last, Redis's marks raised just before COMMIT, or `RedisWentBack` thrown and the batch rolled back).
    private func applyFenced(
        _ events: [OutboxEvent], fences: any BatchFences, inStreamOrder: Bool
    ) async throws -> JournalBatchResult {
        let items = Set(events.flatMap { event in event.lines.map { StockItemID(bizId: event.bizId, skuId: $0.skuId) } })
            .sorted { ($0.bizId, $0.skuId) < ($1.bizId, $1.skuId) }
        let marks = Set(events.filter { !$0.stream.isEmpty }.map { KeyLayout.drainMark(ofStream: $0.stream) }).sorted()
        return try await retryingDeadlocks {
            do {
                return try await client.withTransaction(isolation: .readCommitted) { session in
                    try await session.perform { connection in try Self.lockStockRows(items, on: connection) }
                    let current = try await fences.currentEpochs(items)
                    var stale: [StaleLine] = []
                    var staleKeys: Set<StaleKey> = []
                    for (index, event) in events.enumerated() {
                        for line in event.lines {
                            let item = StockItemID(bizId: event.bizId, skuId: line.skuId)
                            guard let epoch = current[item], !epoch.counts(line.epoch) else { continue }
                            stale.append(
                                StaleLine(
                                    eventId: event.id, kind: event.kind, orderId: event.orderId, item: item,
                                    quantity: line.quantity
                                )
                            )
                            staleKeys.insert(StaleKey(event: index, skuId: line.skuId))
                        }
                    }
                    // Stale lines are rare (a Redis data loss): the batch is copied only when there are some.
                    let kept = staleKeys.isEmpty ? events : events.enumerated().map { index, event in
                        event.filteringLines { !staleKeys.contains(StaleKey(event: index, skuId: $0.skuId)) }
                    }
                    let plan = BatchPlan(kept, inStreamOrder: inStreamOrder)
                    var result = try await session.perform { connection in try plan.run(on: connection) }
                    // The marks last, just before COMMIT, as in every transaction that takes them: none holds a mark
                    // row while it waits for another row (a batch that did deadlocked with a rebuild holding a stock
                    // row its plan locked).
                    try await session.raiseDrainMarks(marks, fences: fences)
                    result.staleLines = stale
                    return result
                }
            } catch let error as MySQLError where error.code == .commitOutcomeUnknown {
                throw JournalCommitOutcomeUnknown(underlying: error)
            }
        }
    }

    /// MySQL's counts of the drain marks `marks` (migrations/0017; a mark without a row is left out), read without a
    /// lock: a transaction raises Redis's mark before it commits MySQL's, so a Redis mark read after this is at least
    /// the count read unless Redis went back in time.
    public func drainMarkCounts(_ marks: [String]) async throws -> [String: Int64] {
        try await client.withConnection { connection in try DrainMarkSQL.counts(marks, on: connection) }
    }

    /// Runs `body` with MySQL's values of the drain marks `marks`, their rows locked (made at 0 when missing) until
    /// it returns.
    public func withLockedDrainMarks(_ marks: [String], _ body: ([String: Int64]) async throws -> Void) async throws {
        guard !marks.isEmpty else { return }
        try await client.withTransaction(isolation: .readCommitted) { session in
            try await body(try await session.perform { connection in try DrainMarkSQL.lock(marks, on: connection) })
        }
    }

    /// A line of the batch by its event's position and its SKU.
    private struct StaleKey: Hashable {
        let event: Int
        let skuId: UInt64
    }

    private func retryingDeadlocks(_ body: () async throws -> JournalBatchResult) async throws -> JournalBatchResult {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as MySQLError where error.code == .deadlock && attempt < Self.transactionAttempts {
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
                attempt += 1
            }
        }
    }

    /// Applies outbox events inside a transaction the caller opened (at READ COMMITTED) and that holds the stock
    /// rows of every item they touch (`lockStockRows`): the rebuild of an item applies the item's events still in
    /// the outbox before it reads MySQL. Idempotent like `apply`.
    static func applyLocked(_ events: [OutboxEvent], on connection: MySQLConnection) throws -> JournalBatchResult {
        let plan = BatchPlan(events)
        if plan.isEmpty { return JournalBatchResult() }
        return try plan.run(on: connection)
    }

    /// Locks the stock rows of `items` (sorted, so concurrent batches lock in one order).
    static func lockStockRows(_ items: [StockItemID], on connection: MySQLConnection) throws {
        for chunk in paddedChunks(items) {
            _ = try connection.query(
                """
                SELECT biz_id FROM stock
                WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(skuPlaceholder))"))) ORDER BY biz_id, sku_id FOR UPDATE
                """,
                chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
            )
        }
    }

    /// The journal rows of an order of one business, by SKU.
    public func rows(orderId: String, bizId: String) async throws -> [JournalRow] {
        let result = try await client.query(
            """
            SELECT order_id, biz_id, sku_id, user_id, quantity, status, \(JournalTime.milliseconds("expires_at")) AS expires_ms,
                   reserve_event, request_fp
            FROM reservation_journal WHERE order_id = ? AND biz_id = ? ORDER BY sku_id
            """,
            [.string(orderId), .string(bizId)]
        )
        return result.rows.map { row in
            var journalRow = JournalRow(
                orderId: row.string("order_id") ?? orderId,
                bizId: row.string("biz_id") ?? bizId,
                skuId: row.uint64("sku_id") ?? 0,
                userId: row.string("user_id"),
                quantity: row.int64("quantity") ?? 0,
                status: row.string("status") ?? "",
                expiresAtMilliseconds: row.int64("expires_ms") ?? 0,
                reserveEvent: row.string("reserve_event") ?? ""
            )
            journalRow.requestHash = row.string("request_fp")
            return journalRow
        }
    }

    /// Orders with a line still RESERVED whose hold ended before `milliseconds` (Unix ms), from the lines after row
    /// `afterRow` in row order, at most `limit` lines; of `bizId` only, when given. `lastRow`: the last line's row
    /// when the page was full (more may follow: the next page starts after it), else nil. A page after another, not
    /// the same first one: lines whose orders cannot be expired yet (Redis's own deadline later) must not hide those
    /// after them.
    public func heldPast(
        milliseconds: Int64, bizId: String?, limit: Int, afterRow: Int64 = 0
    ) async throws -> (orders: [OrderRef], lastRow: Int64?) {
        let result = try await client.query(
            """
            SELECT id, biz_id, order_id FROM reservation_journal
            WHERE status = 'RESERVED' AND expires_at < \(JournalTime.placeholder) AND (? = '' OR biz_id = ?) AND id > ?
            ORDER BY id LIMIT ?
            """,
            [
                JournalTime.value(milliseconds: milliseconds), .string(bizId ?? ""), .string(bizId ?? ""), .int(afterRow),
                .int(Int64(limit)),
            ]
        )
        var seen: Set<OrderRef> = []
        var orders: [OrderRef] = []
        for row in result.rows {
            guard let orderId = row.string("order_id") else { continue }
            let order = OrderRef(bizId: row.string("biz_id") ?? OrderRef.defaultBusiness, orderId: orderId)
            if seen.insert(order).inserted { orders.append(order) }
        }
        return (orders, result.rows.count == limit ? result.rows.last?.int64("id") : nil)
    }

    /// Whether a cancel of this order of `bizId`, made before any reserve of it, is recorded under `keyPrefix`
    /// (or one recorded before orders were scoped, `biz_id` '*': any business's).
    public func hasTombstone(orderId: String, bizId: String, keyPrefix: String) async throws -> Bool {
        let result = try await client.query(
            "SELECT 1 AS found FROM order_tombstones WHERE key_prefix = ? AND biz_id IN (?, '*') AND order_id = ? LIMIT 1",
            [.string(keyPrefix), .string(bizId), .string(orderId)]
        )
        return !result.rows.isEmpty
    }

    /// Records that a Redis shard's generation marker was made; returns false when it was recorded before (the
    /// marker is missing now because Redis lost data).
    public func recordGeneration(keyPrefix: String, shard: Int) async throws -> Bool {
        let result = try await client.query(
            "INSERT IGNORE INTO redis_generations (key_prefix, shard) VALUES (?, ?)",
            [.string(keyPrefix), .int(Int64(shard))]
        )
        return result.affectedRows == 1
    }

    /// What the journal rows of one reserve event of an order hold, by SKU: their quantities and codes (the earlier
    /// hold a duplicate of a live order is taken back against, lua/undo_reserve.lua).
    public func hold(orderId: String, bizId: String, reserveEvent: String) async throws -> [UInt64: HeldLine] {
        let rows = try await client.query(
            """
            SELECT j.sku_id, j.quantity, \(JournalTime.milliseconds("COALESCE(j.reserved_at, j.created_at)")) AS reserved_ms, a.code FROM reservation_journal j
            LEFT JOIN code_assignments a ON a.order_id = j.order_id AND a.biz_id = j.biz_id AND a.sku_id = j.sku_id
              AND a.reserve_event = j.reserve_event
            WHERE j.order_id = ? AND j.biz_id = ? AND j.reserve_event = ?
            ORDER BY j.sku_id, a.code
            """,
            [.string(orderId), .string(bizId), .string(reserveEvent)]
        ).rows
        var lines: [UInt64: HeldLine] = [:]
        for row in rows {
            guard let sku = row.uint64("sku_id"), let quantity = row.int64("quantity") else { continue }
            lines[sku, default: HeldLine(quantity: quantity, codes: [], reservedAt: row.int64("reserved_ms"))].codes +=
                row.string("code").map { [$0] } ?? []
        }
        return lines
    }

    /// Whether the journal has a row of this order made by this reserve event.
    public func hasRow(orderId: String, bizId: String, reserveEvent: String) async throws -> Bool {
        let result = try await client.query(
            "SELECT 1 AS found FROM reservation_journal WHERE order_id = ? AND biz_id = ? AND reserve_event = ? LIMIT 1",
            [.string(orderId), .string(bizId), .string(reserveEvent)]
        )
        return !result.rows.isEmpty
    }

    /// The lines (SKUs) of an order with a duplicate hold of an ended order that nothing has ended yet
    /// (JournalBatchPlan+Duplicates.swift).
    public func openDuplicateLines(orderId: String, bizId: String) async throws -> [UInt64] {
        try await client.query(
            """
            SELECT DISTINCT sku_id FROM reserve_duplicates
            WHERE order_id = ? AND biz_id = ? AND earlier_event = '' AND status IN ('RESERVED', 'CONFIRMED') AND ended_event IS NULL
            """,
            [.string(orderId), .string(bizId)]
        ).rows.compactMap { $0.uint64("sku_id") }
    }

    /// Ends the open duplicate holds of the order's lines `skuIds` at `lastEvent` (their part's stream's last entry
    /// while the part was absent, before it is restored from the journal): what comes after is the restored order's.
    /// Every one (a duplicate made in a history of the stream Redis lost has a reserve event after it, and owns nothing
    /// more either) but the one `heldEvent` names: the reserve event of the part Redis has now, read once the open ones
    /// are locked (a retry held again after the part's absence was read, and recorded meanwhile, is that part). One
    /// transaction: a failure ends none.
    public func endDuplicates(
        orderId: String, bizId: String, skuIds: [UInt64], lastEvent: String, heldEvent: () async throws -> String
    ) async throws {
        guard !skuIds.isEmpty else { return }
        try await client.withTransaction(isolation: .readCommitted) { session in
            var open: [(sku: UInt64, event: String)] = []
            for sku in skuIds {
                open += try await session.query(
                    """
                    SELECT reserve_event FROM reserve_duplicates
                    WHERE order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND earlier_event = ''
                      AND status IN ('RESERVED', 'CONFIRMED') AND ended_event IS NULL
                    FOR UPDATE
                    """,
                    [.string(orderId), .string(bizId), skuValue(sku)]
                ).rows.compactMap { row in row.string("reserve_event").map { (sku, $0) } }
            }
            guard !open.isEmpty else { return }
            let held = try await heldEvent()
            for line in open where line.event != held {
                _ = try await session.query(
                    """
                    UPDATE reserve_duplicates SET ended_event = ?
                    WHERE order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND reserve_event = ?
                    """,
                    [.string(lastEvent), .string(orderId), .string(bizId), skuValue(line.sku), .string(line.event)]
                )
            }
        }
    }

    /// Whether the journal holds any row of the order in that business line.
    public func isPersisted(orderId: String, bizId: String) async throws -> Bool {
        let result = try await client.query(
            "SELECT 1 AS found FROM reservation_journal WHERE order_id = ? AND biz_id = ? LIMIT 1",
            [.string(orderId), .string(bizId)]
        )
        return !result.rows.isEmpty
    }
}
