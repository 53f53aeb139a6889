import Foundation
import MySQLClient

/// MySQL access for code pools (`code_pools`, `codes`, `code_assignments`). A code's state is not stored: it is
/// held while an assignment's journal row is RESERVED, used while it is CONFIRMED, and usable otherwise, so the
/// write-back worker only ever inserts assignments with their journal rows (and deletes them with an undo).
public struct CodePoolRepository: Sendable {
    /// Why a pool change was refused; nothing was written.
    public enum Refusal: Error, Sendable, Equatable {
        /// A pool's kind is fixed once set.
        case kindChange(from: CodePoolKind)
        /// A one-time pool's stock is its codes: the item may not have stock of its own when the pool is made.
        case stockWithoutCodes(Int64)
        /// The item has no code pool.
        case noPool
        /// A one-time pool cannot be infinite: it has exactly its codes.
        case infinite
        /// The upload would take the pool past its maximum number of codes (it has `has`).
        case full(limit: Int, has: Int)
    }

    private let client: MySQLClient

    public init(client: MySQLClient) {
        self.client = client
    }

    /// Creates or changes the item's pool; a new pool's item gets a stock row (of 0) if it had none.
    public func setPool(bizId: String, skuId: UInt64, _ pool: CodePool) async throws {
        guard let sku = StockRepository.skuValue(skuId) else { throw Refusal.noPool }
        try await transaction { connection in
            if let existing = try Self.pool(bizId: bizId, sku: sku, on: connection, locking: true) {
                guard existing.kind == pool.kind else { throw Refusal.kindChange(from: existing.kind) }
            } else {
                let row = try connection.query(
                    "SELECT stock, is_infinite FROM stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE", [.string(bizId), sku]
                ).rows.first
                let stock = row?.int64("stock")
                if pool.kind == .oneTime, let stock, stock != 0 { throw Refusal.stockWithoutCodes(stock) }
                if pool.kind == .oneTime, row?.bool("is_infinite") == true { throw Refusal.infinite }
                if stock == nil {
                    _ = try connection.query(
                        "INSERT IGNORE INTO stock (biz_id, sku_id, stock, version) VALUES (?, ?, 0, 0)", [.string(bizId), sku]
                    )
                }
            }
            _ = try connection.query(
                """
                INSERT INTO code_pools (biz_id, sku_id, kind, status, expires_at, batch_code)
                VALUES (?, ?, ?, ?, \(JournalTime.placeholder), ?)
                ON DUPLICATE KEY UPDATE status = VALUES(status), expires_at = VALUES(expires_at),
                    batch_code = VALUES(batch_code)
                """,
                [
                    .string(bizId), sku, .string(pool.kind.column), .string(pool.online ? "ONLINE" : "OFFLINE"),
                    pool.expiresAtMilliseconds.map { JournalTime.value(milliseconds: $0) } ?? .null,
                    pool.batchCode.map(MySQLValue.string) ?? .null,
                ]
            )
            if let maxPerUser = pool.maxPerUser {
                _ = try connection.query(
                    "UPDATE stock SET user_limit = ? WHERE biz_id = ? AND sku_id = ?", [.int(maxPerUser), .string(bizId), sku]
                )
            }
        }
    }

    /// The item's pool, nil when it has none.
    public func pool(bizId: String, skuId: UInt64) async throws -> CodePool? {
        guard let sku = StockRepository.skuValue(skuId) else { return nil }
        return try await client.withConnection { connection in try Self.pool(bizId: bizId, sku: sku, on: connection) }
    }

    /// Records codes new to the pool, in one transaction; a one-time pool's stock grows by as many (with a ledger
    /// row). Returns the codes that were new, in upload order, and (a one-time pool's) the version of the stock row
    /// the transaction made: a rebuild that read the row at that version or later counted them. An upload that would
    /// take the pool past `maxCodes` codes is refused whole (`full`).
    public func loadCodes(
        bizId: String, skuId: UInt64, _ codes: [String], maxCodes: Int = .max
    ) async throws -> (codes: [String], stockVersion: Int64?) {
        guard let sku = StockRepository.skuValue(skuId) else { throw Refusal.noPool }
        return try await transaction { connection in
            // The pool row's lock orders concurrent uploads of one pool.
            guard let pool = try Self.pool(bizId: bizId, sku: sku, on: connection, locking: true) else {
                throw Refusal.noPool
            }
            var known: Set<String> = []
            for chunk in exactChunks(codes) {
                let rows = try connection.query(
                    "SELECT code FROM codes WHERE biz_id = ? AND sku_id = ? AND code IN (\(tuples(chunk.count, "?")))",
                    [.string(bizId), sku] + chunk.map(MySQLValue.string)
                ).rows
                for row in rows { if let code = row.string("code") { known.insert(code) } }
            }
            let fresh = codes.filter { !known.contains($0) }
            if !fresh.isEmpty {
                let has = try connection.query(
                    "SELECT COUNT(*) AS n FROM codes WHERE biz_id = ? AND sku_id = ?", [.string(bizId), sku]
                ).rows.first?.int64("n") ?? 0
                if Int(has) + fresh.count > maxCodes { throw Refusal.full(limit: maxCodes, has: Int(has)) }
            }
            for chunk in exactChunks(fresh) {
                _ = try connection.query(
                    "INSERT INTO codes (biz_id, sku_id, code) VALUES \(tuples(chunk.count, "(?, ?, ?)"))",
                    chunk.flatMap { [MySQLValue.string(bizId), sku, .string($0)] }
                )
            }
            var version: Int64?
            if pool.kind == .oneTime, !fresh.isEmpty {
                version = try StockRepository.apply(
                    StockChange(
                        bizId: bizId, skuId: skuId, delta: Int64(fresh.count), reason: "codes",
                        source: "codes:\(bizId):\(skuId):\(UUID().uuidString)"
                    ),
                    skuId: sku, on: connection
                ).1
            }
            return (fresh, version)
        }
    }

    /// Runs `body` in a READ COMMITTED transaction (its searches take no gap locks, so changes of neighbouring
    /// items do not block each other), again when InnoDB picks it as a deadlock victim: the rollback undid it all.
    private func transaction<T: Sendable>(_ body: @escaping @Sendable (MySQLConnection) throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await client.withTransaction(isolation: .readCommitted, body)
            } catch let error as MySQLError where error.code == .deadlock && attempt < StockRepository.deadlockAttempts {
                attempt += 1
            }
        }
    }

    /// The pool's codes as the journal leaves them usable: for a one-time pool those no RESERVED or CONFIRMED
    /// journal line holds, for a reusable pool all of them, for a batch pool none (its code is a setting).
    public func usableCodes(bizId: String, skuId: UInt64) async throws -> [String] {
        guard let sku = StockRepository.skuValue(skuId) else { return [] }
        return try await client.withConnection { connection in
            guard let pool = try Self.pool(bizId: bizId, sku: sku, on: connection) else { return [] }
            return try Self.usableCodes(bizId: bizId, sku: sku, kind: pool.kind, on: connection)
        }
    }

    /// The codes each line of an order's journal rows holds (by skuId), for restoring an order Redis lost.
    ///
    /// Not a one-time code another order took later and still holds (its row RESERVED or CONFIRMED, its reserve event
    /// a later millisecond than this one's): such a code is taken again only after it was given back, so this order
    /// gave it back, in a cancel, expiry or refund whose event Redis lost before the journal had it (on a single
    /// Redis an item's events go to as many streams as its orders' shards, so the later take can be in the journal
    /// first). Restored with it, this order would hand it back once more, into the set of usable codes, while the
    /// other order holds it: sold twice. (Reusable and batch codes are shared by design. Takes in one millisecond on
    /// two streams cannot be ordered by their ids: the code stays, as before.) A line left with fewer codes than
    /// units cannot be sold (confirm.lua: the order is cancelled).
    public func assignedCodes(orderId: String, bizId: String) async throws -> [UInt64: [String]] {
        let rows = try await client.query(
            """
            SELECT a.sku_id, a.code FROM code_assignments a
            JOIN reservation_journal j
              ON j.order_id = a.order_id AND j.biz_id = a.biz_id AND j.sku_id = a.sku_id AND j.reserve_event = a.reserve_event
            WHERE a.order_id = ? AND a.biz_id = ? AND NOT EXISTS (
                SELECT 1 FROM code_assignments b
                JOIN code_pools p ON p.biz_id = b.biz_id AND p.sku_id = b.sku_id AND p.kind = '\(CodePoolKind.oneTime.column)'
                WHERE b.biz_id = a.biz_id AND b.sku_id = a.sku_id AND b.code = a.code AND b.order_id <> a.order_id
                  AND \(Self.held("b", statuses: "'RESERVED', 'CONFIRMED'"))
                  AND \(Self.eventMilliseconds("b.reserve_event")) > \(Self.eventMilliseconds("a.reserve_event"))
            )
            ORDER BY a.sku_id, a.code
            """,
            [.string(orderId), .string(bizId)]
        ).rows
        var codes: [UInt64: [String]] = [:]
        for row in rows {
            guard let sku = row.uint64("sku_id"), let code = row.string("code") else { continue }
            codes[sku, default: []].append(code)
        }
        return codes
    }

    /// Whether the code assignment `alias` is held by its reserve event in one of `statuses` (SQL, quoted and
    /// comma-separated): its journal row's, or a duplicate hold of an ended order (`reserve_duplicates`,
    /// JournalBatchPlan+Duplicates.swift) that its order went on with.
    static func held(_ alias: String, statuses: String) -> String {
        """
        (EXISTS (SELECT 1 FROM reservation_journal hj WHERE hj.order_id = \(alias).order_id AND hj.biz_id = \(alias).biz_id
                   AND hj.sku_id = \(alias).sku_id AND hj.reserve_event = \(alias).reserve_event AND hj.status IN (\(statuses)))
         OR EXISTS (SELECT 1 FROM reserve_duplicates hd WHERE hd.order_id = \(alias).order_id AND hd.biz_id = \(alias).biz_id
                   AND hd.sku_id = \(alias).sku_id AND hd.reserve_event = \(alias).reserve_event AND hd.earlier_event = ''
                   AND hd.status IN (\(statuses))))
        """
    }

    /// The millisecond of an outbox entry id ('<ms>-<seq>'): its sequence orders entries of one stream only.
    static func eventMilliseconds(_ column: String) -> String {
        "CAST(SUBSTRING_INDEX(\(column), '-', 1) AS UNSIGNED)"
    }

    static func pool(bizId: String, sku: MySQLValue, on connection: MySQLConnection, locking: Bool = false) throws -> CodePool? {
        let row = try connection.query(
            """
            SELECT p.kind, p.status, \(JournalTime.milliseconds("p.expires_at")) AS expires_ms, p.batch_code, s.user_limit
            FROM code_pools p LEFT JOIN stock s ON s.biz_id = p.biz_id AND s.sku_id = p.sku_id
            WHERE p.biz_id = ? AND p.sku_id = ?\(locking ? " FOR UPDATE" : "")
            """,
            [.string(bizId), sku]
        ).rows.first
        guard let row, let kind = CodePoolKind(column: row.string("kind") ?? "") else { return nil }
        return CodePool(
            kind: kind, online: row.string("status") != "OFFLINE",
            expiresAtMilliseconds: row.int64("expires_ms"),
            batchCode: row.string("batch_code"), maxPerUser: row.int64("user_limit") ?? 0
        )
    }

    static func usableCodes(bizId: String, sku: MySQLValue, kind: CodePoolKind, on connection: MySQLConnection) throws -> [String] {
        let sql: String
        switch kind {
        case .batch:
            return []
        case .reusable:
            sql = "SELECT code FROM codes c WHERE biz_id = ? AND sku_id = ? ORDER BY code"
        case .oneTime:
            sql = """
                SELECT c.code FROM codes c
                WHERE c.biz_id = ? AND c.sku_id = ? AND NOT EXISTS (
                    SELECT 1 FROM code_assignments a
                    WHERE a.biz_id = c.biz_id AND a.sku_id = c.sku_id AND a.code = c.code
                      AND \(held("a", statuses: "'RESERVED', 'CONFIRMED'"))
                )
                ORDER BY c.code
                """
        }
        return try connection.query(sql, [.string(bizId), sku]).rows.compactMap { $0.string("code") }
    }
}
