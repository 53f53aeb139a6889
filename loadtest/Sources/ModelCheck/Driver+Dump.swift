import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient

extension Driver {
    /// What the stores hold when a check fails (`MODELCHECK_DUMP=1`): every item's hash, every outbox entry and the
    /// journal's rows, to read beside the failing step. A diagnostic, printed to standard error; it checks nothing.
    static func dump(_ stores: TestStores) async -> String {
        var lines: [String] = ["state at the failure (business \(stores.bizId)):"]
        for sku in UInt64(1)...4 {
            let fields = (try? await stores.itemFields(sku)) ?? [:]
            let text = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.append("  item \(sku): \(fields.isEmpty ? "(not in Redis)" : text)")
        }
        for stream in stores.keys.outboxes {
            let entries = (try? await stores.redis.send(["XRANGE", stream, "-", "+"], routingKey: stream))?.array ?? []
            for entry in entries {
                let parts = entry.array ?? []
                let fields = (parts[safe: 1]?.array ?? []).compactMap(\.text)
                let pairs = stride(from: 0, to: fields.count - 1, by: 2).map { "\(fields[$0])=\(fields[$0 + 1])" }
                lines.append("  outbox \(stream) \(parts.first?.text ?? "?"): \(pairs.joined(separator: " "))")
            }
        }
        let rows = try? await stores.mysql.query(
            """
            SELECT order_id, sku_id, quantity, status, reserve_event, created_at, updated_at FROM reservation_journal
            WHERE biz_id = ? ORDER BY created_at, order_id, sku_id
            """,
            [.string(stores.bizId)]
        )
        for row in rows?.rows ?? [] {
            let values = ["order_id", "sku_id", "quantity", "status", "reserve_event", "created_at", "updated_at"]
                .map { "\($0)=\(row.string($0) ?? "-")" }
            lines.append("  journal " + values.joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
