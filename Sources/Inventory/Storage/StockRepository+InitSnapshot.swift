import MySQLClient

/// What the init path rebuilds an item from: the stock row, its live holds, per-user usage and code pool, read in one
/// transaction that holds the item's row.
extension StockRepository {
    /// A duplicate hold of an ended order (`reserve_duplicates`): its order, quantity and reserve event.
    public struct DuplicateHold: Sendable, Equatable {
        public let orderId: String
        public let quantity: Int64
        public let reserveEvent: String

        /// The order's record in Redis that says whether the hold stands (on a cluster its part on the item's shard).
        public func recordKey(_ item: StockItemID, keys: KeyLayout) -> String {
            keys.orderPart(OrderRef(bizId: item.bizId, orderId: orderId).name, item: item)
        }

    }

    /// What `withInitSnapshot` reads.
    public struct InitSnapshot: Sendable {
        /// The stock row.
        public let row: StockRow
        /// The sum of the item's live (RESERVED) journal lines.
        public var liveReserved: Int64 { liveHolds.reduce(0) { $0 + $1.quantity } }
        /// The item's live (RESERVED) journal lines: which order holds how much.
        /// The journal's RESERVED lines of the item: order, quantity, and when the hold runs out (Unix ms).
        public let liveHolds: [LiveHold]
        /// Duplicate holds of ended orders still RESERVED in `reserve_duplicates` (a retry after retention Redis held
        /// anew, migrations/0020): holds of their own while Redis still has them in an epoch the rebuild absorbs
        /// (lua/init_item.lua decides).
        public var duplicateHolds: [DuplicateHold] = []
        /// The window `usage` counts (see `StockRow.userWindow`).
        public let userWindow: Int64
        /// Each user's units in that window, when the item has a per-user limit (empty otherwise).
        public let usage: [UserUsage]
        /// The item's code pool, if it has one.
        public let pool: CodePool?
        /// The pool's usable codes as the journal leaves them (see `CodePoolRepository.usableCodes`).
        public let codes: [String]
        /// The stock row's version as read (the item records it: lua/admin_done.lua).
        public var version: Int64 = 0
    }

    /// What the init path rebuilds a Redis item from (nil when MySQL has no such item). The row stays locked
    /// (FOR UPDATE) while `body` runs, so no confirm is applied halfway through the read and no write-back batch of
    /// the item commits until `body` has written Redis; the transaction commits when `body` returns and rolls back
    /// when it throws.
    ///
    /// `pending`: the item's outbox events Redis has not seen committed yet; they are applied first, in the same
    /// transaction and holding the stock rows of every item they touch (sorted, as write-back batches lock them),
    /// so the snapshot counts every event the outbox had (see `InventoryEngine.ensureItem`). With `fences`, the drain
    /// marks of their shards are raised before the COMMIT, as a journal batch does (`DrainMarkSQL`); a Redis found
    /// behind is forgotten (`BatchFences.forgetWentBack`) and `RedisWentBack` thrown: the rebuild is tried again later.
    public func withInitSnapshot<T: Sendable>(
        bizId: String, skuId: UInt64, nowMilliseconds: Int64, pending: [OutboxEvent] = [], fences: (any BatchFences)? = nil,
        _ body: (InitSnapshot?) async throws -> T
    ) async throws -> T {
        do {
            return try await initSnapshot(
                bizId: bizId, skuId: skuId, nowMilliseconds: nowMilliseconds, pending: pending, fences: fences, body
            )
        } catch let wentBack as RedisWentBack {
            try await fences?.forgetWentBack(wentBack.marks, journal: JournalRepository(client: client))
            throw wentBack
        }
    }

    private func initSnapshot<T: Sendable>(
        bizId: String, skuId: UInt64, nowMilliseconds: Int64, pending: [OutboxEvent], fences: (any BatchFences)?,
        _ body: (InitSnapshot?) async throws -> T
    ) async throws -> T {
        guard let sku = Self.skuValue(skuId) else { return try await body(nil) }
        let marks = fences == nil ? [] : Set(pending.filter { !$0.stream.isEmpty }.map { KeyLayout.drainMark(ofStream: $0.stream) }).sorted()
        // READ COMMITTED like write-back batches: every row read is locked or its item's stock row is.
        return try await client.withTransaction(isolation: .readCommitted) { session in
            let snapshot = try await session.perform { connection -> InitSnapshot? in
                if !pending.isEmpty {
                    let touched = Set(
                        pending.flatMap { event in event.lines.map { StockItemID(bizId: event.bizId, skuId: $0.skuId) } }
                    ).union([StockItemID(bizId: bizId, skuId: skuId)])
                    try JournalRepository.lockStockRows(
                        touched.sorted { ($0.bizId, $0.skuId) < ($1.bizId, $1.skuId) }, on: connection
                    )
                    _ = try JournalRepository.applyLocked(pending, on: connection)
                }
                let result = try connection.query(
                    "SELECT \(StockRow.columns), version FROM stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE",
                    [.string(bizId), sku]
                )
                guard let first = result.rows.first else { return nil }
                let row = StockRow(first, bizId: bizId, skuId: skuId)
                let live = try connection.query(
                    """
                    SELECT order_id, quantity, \(JournalTime.milliseconds("expires_at")) AS expires_ms FROM reservation_journal
                    WHERE biz_id = ? AND sku_id = ? AND status = 'RESERVED'
                    """,
                    [.string(bizId), sku]
                )
                let holds = live.rows.compactMap { row -> (orderId: String, quantity: Int64, expiresAtMilliseconds: Int64)? in
                    guard let order = row.string("order_id"), let quantity = row.int64("quantity") else { return nil }
                    let expires = row.int64("expires_ms") ?? 0
                    return (order, quantity, expires)
                }
                // A duplicate hold of an ended order (a retry after retention, Redis held it anew) is a hold of its own
                // until its take-back, cancel, expiry or confirm moves its row (migrations/0020): init_item.lua counts
                // the ones Redis still has, in an epoch it absorbs.
                let duplicates = try connection.query(
                    """
                    SELECT order_id, quantity, reserve_event FROM reserve_duplicates
                    WHERE biz_id = ? AND sku_id = ? AND earlier_event = '' AND status = 'RESERVED' AND ended_event IS NULL
                      AND quantity IS NOT NULL
                    """,
                    [.string(bizId), sku]
                ).rows.compactMap { row -> DuplicateHold? in
                    guard let order = row.string("order_id"), let quantity = row.int64("quantity"),
                        let event = row.string("reserve_event")
                    else { return nil }
                    return DuplicateHold(orderId: order, quantity: quantity, reserveEvent: event)
                }
                let window = row.userWindow(atMilliseconds: nowMilliseconds)
                var usage: [UserUsage] = []
                if row.userLimit > 0 {
                    // Held and sold units count, by the reserve's Redis time (the window reserve.lua counted them
                    // in); a row written before that was kept has created_at (MySQL's clock, at the worker's write)
                    // instead.
                    let since = row.userWindowSeconds > 0 ? window * row.userWindowSeconds : 0
                    let users = try connection.query(
                        """
                        SELECT user_id, SUM(quantity) AS units FROM reservation_journal
                        WHERE biz_id = ? AND sku_id = ? AND user_id IS NOT NULL AND user_id <> ''
                          AND status IN ('RESERVED', 'CONFIRMED', 'REFUNDED')
                          AND IF(reserved_at IS NULL, created_at >= FROM_UNIXTIME(?), reserved_at >= \(JournalTime.placeholder))
                        GROUP BY user_id
                        """,
                        [.string(bizId), sku, .int(since), JournalTime.value(milliseconds: since * 1000)]
                    )
                    usage = users.rows.compactMap { row in
                        guard let user = row.string("user_id"), let units = row.int64("units"), units > 0 else {
                            return nil
                        }
                        return UserUsage(userId: user, units: units)
                    }
                }
                let pool = try CodePoolRepository.pool(bizId: bizId, sku: sku, on: connection)
                let codes = try pool.map { try CodePoolRepository.usableCodes(bizId: bizId, sku: sku, kind: $0.kind, on: connection) } ?? []
                return InitSnapshot(
                    row: row, liveHolds: holds, duplicateHolds: duplicates, userWindow: window, usage: usage,
                    pool: pool, codes: codes, version: first.int64("version") ?? 0
                )
            }
            let value = try await body(snapshot)
            // Just before the COMMIT (the stock rows held all along): the mark rows are not held while the rebuild
            // writes Redis, which batches and stock changes of the shards would wait for.
            if let fences { try await session.raiseDrainMarks(marks, fences: fences) }
            return value
        }
    }
}
