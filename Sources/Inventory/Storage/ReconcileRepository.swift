import MySQLClient

/// MySQL access for the reconciler: the stock table a page at a time, the journal's holds and what the worker has
/// applied of the lines in flight, the code pools' counts, and the record of runs (`reconcile_results`).
///
/// Reads of the first, unlocked pass go to `reader` (a replica when one is configured); the locked check, the code
/// pools' counts and the record go to the primary.
struct ReconcileRepository: Sendable {
    let primary: MySQLClient
    let reader: MySQLClient

    /// A stock row as the reconciler pages through them.
    struct StockRow: Sendable {
        let bizId: String
        let skuId: UInt64
        let stock: Int64
        let infinite: Bool

        var id: StockItemID { StockItemID(bizId: bizId, skuId: skuId) }

        init(bizId: String, skuId: UInt64, stock: Int64, infinite: Bool) {
            self.bizId = bizId
            self.skuId = skuId
            self.stock = stock
            self.infinite = infinite
        }

        init(_ row: MySQLRow, bizId: String? = nil, skuId: UInt64? = nil) {
            self.init(
                bizId: bizId ?? row.string("biz_id") ?? "", skuId: skuId ?? row.uint64("sku_id") ?? 0,
                stock: row.int64("stock") ?? 0, infinite: row.bool("is_infinite") ?? false
            )
        }
    }

    /// A journal row of an order in flight.
    struct JournalRow: Sendable {
        let bizId: String
        let orderId: String
        let skuId: UInt64
        let status: String
        let reserveEvent: String
        let quantity: Int64
    }

    /// What MySQL holds of the lines in flight, and the journal's holds per item.
    struct JournalSide: Sendable {
        /// Σ quantity of the RESERVED journal lines per item (items without any are absent).
        var reserved: [StockItemID: Int64] = [:]
        /// The journal rows of the orders asked about.
        var rows: [JournalRow] = []
        /// The ledger sources asked about that exist, with those of the orders' duplicate holds
        /// (JournalBatchPlan+Duplicates.swift: a duplicate's confirm and refund carry its reserve event).
        var ledger: Set<String> = []
        /// The `reserve_duplicates` rows of the orders asked about.
        var duplicates: [DuplicateRow] = []
        /// The items' duplicate holds of ended orders still RESERVED (StockRepository+InitSnapshot.swift counts them
        /// the same way: lua/duplicate_held.lua asks the item whether it counts each).
        var standing: [(item: StockItemID, hold: StockRepository.DuplicateHold)] = []
    }

    struct DuplicateRow: Sendable {
        let bizId: String
        let orderId: String
        let skuId: UInt64
        let reserveEvent: String
        let earlierEvent: String
        let status: String
        let endedEvent: String?
    }

    // MARK: - Pages of the stock table

    /// The page of every business's stock rows after `after` (by business, then SKU).
    func stockPage(after: (bizId: String, skuId: UInt64)?, limit: Int) async throws -> [StockRow] {
        let result: MySQLResult
        if let after {
            result = try await reader.query(
                """
                SELECT biz_id, sku_id, stock, is_infinite FROM stock
                WHERE biz_id > ? OR (biz_id = ? AND sku_id > \(skuPlaceholder))
                ORDER BY biz_id, sku_id LIMIT ?
                """,
                [.string(after.bizId), .string(after.bizId), skuValue(after.skuId), .int(Int64(limit))]
            )
        } else {
            result = try await reader.query(
                "SELECT biz_id, sku_id, stock, is_infinite FROM stock ORDER BY biz_id, sku_id LIMIT ?", [.int(Int64(limit))]
            )
        }
        return result.rows.map { StockRow($0) }
    }

    /// The page of one business's stock rows after SKU `after`.
    func stockPage(business: String, after: UInt64?, limit: Int) async throws -> [StockRow] {
        try await reader.query(
            """
            SELECT biz_id, sku_id, stock, is_infinite FROM stock
            WHERE biz_id = ? AND sku_id > \(skuPlaceholder) ORDER BY sku_id LIMIT ?
            """,
            [.string(business), skuValue(after ?? 0), .int(Int64(limit))]
        ).rows.map { StockRow($0) }
    }

    /// One item's stock row, if it has one.
    func stockRow(_ item: StockItemID) async throws -> [StockRow] {
        try await reader.query(
            "SELECT biz_id, sku_id, stock, is_infinite FROM stock WHERE biz_id = ? AND sku_id = \(skuPlaceholder)",
            [.string(item.bizId), skuValue(item.skuId)]
        ).rows.map { StockRow($0) }
    }

    // MARK: - The journal side

    /// The journal's holds of `items`, the journal rows of `orders` (business → orderIds) and which of `sources`
    /// the ledger has. With `consistent`, on the primary in one transaction started WITH CONSISTENT SNAPSHOT (every
    /// read sees one instant, taken when this is called); otherwise statement by statement on `reader`.
    func journalSide(
        items: [StockItemID], orders: [String: Set<String>], sources: [String], consistent: Bool
    ) async throws -> JournalSide {
        guard consistent else {
            return try await Self.journalSide(items: items, orders: orders, sources: sources) { sql, binds in
                try await reader.query(sql, binds)
            }
        }
        return try await primary.withTransaction(isolation: .repeatableRead, consistentSnapshot: true) { session in
            try await Self.journalSide(items: items, orders: orders, sources: sources) { sql, binds in
                try await session.query(sql, binds)
            }
        }
    }

    private static func journalSide(
        items: [StockItemID], orders: [String: Set<String>], sources: [String],
        query: (String, [MySQLValue]) async throws -> MySQLResult
    ) async throws -> JournalSide {
        var side = JournalSide()
        for (biz, group) in Dictionary(grouping: items, by: \.bizId) {
            for chunk in paddedChunks(group) {
                let result = try await query(
                    """
                    SELECT sku_id, SUM(quantity) AS live FROM reservation_journal
                    WHERE biz_id = ? AND status = 'RESERVED' AND sku_id IN (\(tuples(chunk.count, skuPlaceholder)))
                    GROUP BY sku_id
                    """,
                    [.string(biz)] + chunk.map { skuValue($0.skuId) }
                )
                for row in result.rows {
                    side.reserved[StockItemID(bizId: biz, skuId: row.uint64("sku_id") ?? 0)] = row.int64("live") ?? 0
                }
                let duplicates = try await query(
                    """
                    SELECT order_id, sku_id, quantity, reserve_event FROM reserve_duplicates
                    WHERE biz_id = ? AND earlier_event = '' AND status = 'RESERVED' AND ended_event IS NULL
                      AND quantity IS NOT NULL AND sku_id IN (\(tuples(chunk.count, skuPlaceholder)))
                    """,
                    [.string(biz)] + chunk.map { skuValue($0.skuId) }
                )
                for row in duplicates.rows {
                    guard let order = row.string("order_id"), let sku = row.uint64("sku_id"), let quantity = row.int64("quantity"),
                        let event = row.string("reserve_event")
                    else { continue }
                    side.standing.append(
                        (StockItemID(bizId: biz, skuId: sku), .init(orderId: order, quantity: quantity, reserveEvent: event))
                    )
                }
            }
        }
        for (biz, orderIds) in orders where !orderIds.isEmpty {
            for chunk in paddedChunks(Array(orderIds)) {
                let result = try await query(
                    """
                    SELECT order_id, sku_id, status, reserve_event, quantity FROM reservation_journal
                    WHERE biz_id = ? AND order_id IN (\(tuples(chunk.count, "?")))
                    """,
                    [.string(biz)] + chunk.map { .string($0) }
                )
                side.rows += result.rows.map { row in
                    JournalRow(
                        bizId: biz, orderId: row.string("order_id") ?? "", skuId: row.uint64("sku_id") ?? 0,
                        status: row.string("status") ?? "", reserveEvent: row.string("reserve_event") ?? "",
                        quantity: row.int64("quantity") ?? 0
                    )
                }
            }
        }
        var sources = sources
        for (biz, orderIds) in orders where !orderIds.isEmpty {
            for chunk in paddedChunks(Array(orderIds)) {
                let result = try await query(
                    """
                    SELECT order_id, sku_id, reserve_event, earlier_event, status, ended_event FROM reserve_duplicates
                    WHERE biz_id = ? AND order_id IN (\(tuples(chunk.count, "?")))
                    """,
                    [.string(biz)] + chunk.map { .string($0) }
                )
                for row in result.rows {
                    let duplicate = DuplicateRow(
                        bizId: biz, orderId: row.string("order_id") ?? "", skuId: row.uint64("sku_id") ?? 0,
                        reserveEvent: row.string("reserve_event") ?? "", earlierEvent: row.string("earlier_event") ?? "",
                        status: row.string("status") ?? "", endedEvent: row.string("ended_event")
                    )
                    side.duplicates.append(duplicate)
                    for kind in ["confirm", "refund"] {
                        sources.append("\(kind):\(duplicate.orderId):\(biz):\(duplicate.skuId):\(duplicate.reserveEvent)")
                    }
                }
            }
        }
        for chunk in paddedChunks(sources) {
            let result = try await query(
                "SELECT source FROM stock_ledger WHERE source IN (\(tuples(chunk.count, "?")))", chunk.map { .string($0) }
            )
            side.ledger.formUnion(result.rows.compactMap { $0.string("source") })
        }
        return side
    }

    // MARK: - The locked check

    /// Runs `body` holding the item's stock row FOR UPDATE on the primary (nil: MySQL has no row), in one
    /// transaction that ends when `body` does: no confirm or refund can change MySQL's stock of the item meanwhile.
    /// The transaction writes nothing; it only holds the lock.
    func withStockRowLocked<T: Sendable>(
        _ item: StockItemID, _ body: (_ row: StockRow?, _ version: Int64) async throws -> T
    ) async throws -> T {
        try await primary.withTransaction(isolation: nil) { session in
            let row = try await session.query(
                "SELECT stock, is_infinite, version FROM stock WHERE biz_id = ? AND sku_id = \(skuPlaceholder) FOR UPDATE",
                [.string(item.bizId), skuValue(item.skuId)]
            ).rows.first
            return try await body(row.map { StockRow($0, bizId: item.bizId, skuId: item.skuId) }, row?.int64("version") ?? 0)
        }
    }

    // MARK: - Code pools

    /// The code pools of `items` (items without one are absent).
    func codePools(_ items: [StockItemID]) async throws -> [(StockItemID, CodePoolKind)] {
        var pools: [(StockItemID, CodePoolKind)] = []
        var seen: Set<StockItemID> = []
        for chunk in paddedChunks(items) {
            let rows = try await reader.query(
                "SELECT biz_id, sku_id, kind FROM code_pools WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(skuPlaceholder))")))",
                chunk.flatMap { [MySQLValue.string($0.bizId), skuValue($0.skuId)] }
            ).rows
            for row in rows {
                guard let biz = row.string("biz_id"), let sku = row.uint64("sku_id"),
                    let kind = CodePoolKind(column: row.string("kind") ?? "")
                else { continue }
                // A padded chunk repeats its last item: each pool once.
                let item = StockItemID(bizId: biz, skuId: sku)
                if seen.insert(item).inserted { pools.append((item, kind)) }
            }
        }
        return pools
    }

    /// A one-time pool's MySQL side in one statement's snapshot (the worker writes a confirm's stock and its line
    /// status in one transaction): its stock, its codes, and the codes a CONFIRMED journal line (or duplicate hold)
    /// holds (used), each counted once: a code two confirmed orders hold was sold twice, and MySQL's stock, deducted by
    /// both confirms, is then below the codes left.
    func oneTimePoolCounts(_ item: StockItemID) async throws -> (stock: Int64, codes: Int64, used: Int64) {
        let row = try await primary.query(
            """
            SELECT (SELECT stock FROM stock WHERE biz_id = ? AND sku_id = \(skuPlaceholder)) AS stock,
                   (SELECT COUNT(*) FROM codes WHERE biz_id = ? AND sku_id = \(skuPlaceholder)) AS codes,
                   (SELECT COUNT(DISTINCT a.code) FROM code_assignments a
                    WHERE a.biz_id = ? AND a.sku_id = \(skuPlaceholder)
                      AND \(CodePoolRepository.held("a", statuses: "'CONFIRMED'"))) AS used
            """,
            Array(repeating: [MySQLValue.string(item.bizId), skuValue(item.skuId)], count: 3).flatMap { $0 }
        ).rows.first
        return (row?.int64("stock") ?? 0, row?.int64("codes") ?? 0, row?.int64("used") ?? 0)
    }

    /// Which of `codes` MySQL's `codes` has for the item.
    func knownCodes(_ item: StockItemID, among codes: [String]) async throws -> Set<String> {
        guard !codes.isEmpty else { return [] }
        var known: Set<String> = []
        for chunk in paddedChunks(codes) {
            known.formUnion(
                try await reader.query(
                    "SELECT code FROM codes WHERE biz_id = ? AND sku_id = \(skuPlaceholder) AND code IN (\(tuples(chunk.count, "?")))",
                    [.string(item.bizId), skuValue(item.skuId)] + chunk.map(MySQLValue.string)
                ).rows.compactMap { $0.string("code") }
            )
        }
        return known
    }

    // MARK: - Runs

    /// Records a run that took `seconds` and ended now; `details` is the differences as a JSON array.
    func recordRun(seconds: Double, itemsChecked: Int, differences: Int, details: String) async throws {
        _ = try await primary.query(
            """
            INSERT INTO reconcile_results (started_at, finished_at, items_checked, differences, details)
            VALUES (NOW(3) - INTERVAL ? MICROSECOND, NOW(3), ?, ?, ?)
            """,
            [.int(Int64(seconds * 1_000_000)), .int(Int64(itemsChecked)), .int(Int64(differences)), .string(details)]
        )
    }

    /// The latest recorded run; nil when there is none. The times are read with the session's time zone, the one
    /// `NOW(3)` wrote them in.
    static func latestRun(in mysql: MySQLClient) async throws -> ReconcileSummary? {
        let result = try await mysql.query(
            """
            SELECT id, CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED) AS started_ms,
                   CAST(UNIX_TIMESTAMP(finished_at) * 1000 AS SIGNED) AS finished_ms, items_checked, differences
            FROM reconcile_results ORDER BY id DESC LIMIT 1
            """
        )
        guard let row = result.rows.first, let id = row.int64("id"), let started = row.int64("started_ms") else {
            return nil
        }
        return ReconcileSummary(
            id: id, startedAtMilliseconds: started, finishedAtMilliseconds: row.int64("finished_ms"),
            itemsChecked: row.int64("items_checked") ?? 0, differences: row.int64("differences") ?? 0
        )
    }
}
