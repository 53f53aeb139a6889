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
        let reply = try await redisCall {
            try await self.runner.run(
                self.scripts.snapshot, keys: ids.map(self.keys.item) + streams,
                arguments: [String(ids.count), self.keys.prefix] + ids.map { "\($0.bizId):\($0.skuId)" }
            )
        }
        let parts = reply.array ?? []
        for (index, value) in (parts[safe: 0]?.array ?? []).enumerated() {
            guard let fields = value.array, fields.first?.int == 1, let id = ids[safe: index] else { continue }
            snapshot.counters[id] = .init(
                stockNum: fields[safe: 1]?.int ?? 0, usedStockNum: fields[safe: 2]?.int ?? 0,
                confirmedUnapplied: fields[safe: 3]?.int ?? 0, refundUnapplied: fields[safe: 4]?.int ?? 0
            )
            if fields[safe: 5]?.text == "1" { snapshot.infinite.insert(id) }
            if fields[safe: 6]?.int == 1 { snapshot.fenced.insert(id) }
        }
        for value in parts[safe: 1]?.array ?? [] {
            guard let fields = value.array, let kind = OutboxEvent.Kind(rawValue: fields[safe: 0]?.text ?? ""),
                let sku = UInt64(fields[safe: 3]?.text ?? "")
            else { continue }
            let id = StockItemID(bizId: fields[safe: 2]?.text ?? "", skuId: sku)
            snapshot.entries[id, default: []].append(
                Entry(
                    kind: kind, orderId: fields[safe: 1]?.text ?? "", quantity: fields[safe: 4]?.int ?? 0,
                    entryId: fields[safe: 5]?.text ?? "", reserveEvent: fields[safe: 6]?.text ?? "",
                    marked: fields[safe: 7]?.int == 1
                )
            )
        }
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
                    applied.rows[Applied.key(row.string("order_id") ?? "", row.uint64("sku_id") ?? 0)] = (
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
