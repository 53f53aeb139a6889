import Foundation
import Logging
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// The reads a check stands on: one Redis snapshot per shard, the journal's holds and what the worker has applied.
extension Reconciler {
    /// On a single Redis one script reads the page's items and every outbox at one instant. On a cluster one
    /// script per shard reads the shard's items and its one outbox, the only stream with entries of those items.
    func snapshot(_ ids: [StockItemID]) async throws -> Snapshot {
        var snapshot = Snapshot()
        guard keys.clustered else {
            try await read(ids, streams: keys.outboxes, into: &snapshot)
            return snapshot
        }
        for (shard, group) in Dictionary(grouping: ids, by: keys.itemShard) {
            try await read(group, streams: [keys.outbox(shard: shard)], into: &snapshot)
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

    /// Σ quantity of RESERVED journal lines per item.
    func journalReserved(_ ids: [StockItemID], session: MySQLSession?) async throws -> [StockItemID: Int64] {
        var sums: [StockItemID: Int64] = [:]
        for (biz, group) in Dictionary(grouping: ids, by: \.bizId) {
            let placeholders = Array(repeating: "?", count: group.count).joined(separator: ",")
            let result = try await query(
                session,
                """
                SELECT sku_id, SUM(quantity) AS live FROM reservation_journal
                WHERE biz_id = ? AND status = 'RESERVED' AND sku_id IN (\(placeholders))
                GROUP BY sku_id
                """,
                [.string(biz)] + group.map { skuValue($0.skuId) }
            )
            for row in result.rows {
                sums[StockItemID(bizId: biz, skuId: row.uint64("sku_id") ?? 0)] = row.int64("live") ?? 0
            }
        }
        return sums
    }

    /// The journal rows and ledger sources of the lines in flight, as MySQL has them now.
    func appliedState(_ snapshot: Snapshot, session: MySQLSession?) async throws -> Applied {
        var applied = Applied()
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
        for (biz, orderIds) in orders where !orderIds.isEmpty {
            for chunk in Array(orderIds).chunked(500) {
                let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                let result = try await query(
                    session,
                    """
                    SELECT order_id, sku_id, status, reserve_event FROM reservation_journal
                    WHERE biz_id = ? AND order_id IN (\(placeholders))
                    """,
                    [.string(biz)] + chunk.map { .string($0) }
                )
                for row in result.rows {
                    applied.rows[Applied.key(biz, row.string("order_id") ?? "", row.uint64("sku_id") ?? 0)] = (
                        row.string("status") ?? "", row.string("reserve_event") ?? ""
                    )
                }
            }
        }
        for chunk in sources.chunked(500) {
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let result = try await query(
                session, "SELECT source FROM stock_ledger WHERE source IN (\(placeholders))", chunk.map { .string($0) }
            )
            for row in result.rows {
                applied.ledger.insert(row.string("source") ?? "")
            }
        }
        return applied
    }

    /// A statement on the session when there is one, else on any pooled connection.
    func query(_ session: MySQLSession?, _ sql: String, _ binds: [MySQLValue]) async throws -> MySQLResult {
        try await mysqlCall {
            if let session { return try await session.query(sql, binds) }
            return try await self.reader.query(sql, binds)
        }
    }
}
