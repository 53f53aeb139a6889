import Foundation
import Inventory
import MySQLClient

/// The design this service replaces, behind the same API (`INVENTORY_ENGINE=db`), so the load harness can run
/// both side by side: every reservation is one MySQL transaction that decrements the stock row with a
/// conditional UPDATE (checking the affected rows) and inserts the reservation rows. A hot item serialises every
/// checkout on that row's lock, which is what the Redis-first engine exists to avoid.
///
/// Only what the comparison needs: reserve, confirm, cancel, read, and setting stock. Refunds and adjustments
/// answer `notSupported`.
public final class DatabaseOnlyEngine: InventoryService {
    private let mysql: MySQLClient
    public let defaultTTLSeconds: Int

    public init(mysql: MySQLClient, defaultTTLSeconds: Int = 1800) {
        self.mysql = mysql
        self.defaultTTLSeconds = defaultTTLSeconds
    }

    /// The outcome of the reserve transaction, decided inside it.
    private enum ReserveResult: Sendable {
        case created(expiresAt: Int64)
        case existing(fingerprint: String, status: String, lines: [ReservationLine], expiresAt: Int64)
    }

    public func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome {
        let fingerprint = command.fingerprint
        let expiresAt = InventoryEngine.nowMilliseconds() + Int64(command.ttlSeconds) * 1000
        let result: ReserveResult = try await call {
            try await self.mysql.withTransaction { connection in
                let existing = try connection.query(
                    "SELECT sku_id, quantity, fingerprint, status, expires_at FROM baseline_reservation WHERE order_id = ? AND biz_id = ?",
                    [.string(command.orderId), .string(command.bizId)]
                )
                if let first = existing.rows.first {
                    return .existing(
                        fingerprint: first.string("fingerprint") ?? "", status: first.string("status") ?? "reserved",
                        lines: existing.rows.map {
                            let quantity = $0.int64("quantity") ?? 0
                            return ReservationLine(skuId: $0.uint64("sku_id") ?? 0, requested: quantity, reserved: quantity)
                        },
                        expiresAt: Self.milliseconds(first.string("expires_at"))
                    )
                }
                for item in command.items {
                    let updated = try connection.query(
                        """
                        UPDATE baseline_stock SET available = available - ?, reserved = reserved + ?
                        WHERE biz_id = ? AND sku_id = ? AND (available >= ? OR is_infinite = 1)
                        """,
                        [.int(item.quantity), .int(item.quantity), .string(command.bizId), .int(Int64(item.skuId)), .int(item.quantity)]
                    )
                    if updated.affectedRows == 0 {
                        let row = try connection.query(
                            "SELECT available FROM baseline_stock WHERE biz_id = ? AND sku_id = ?",
                            [.string(command.bizId), .int(Int64(item.skuId))]
                        )
                        guard let available = row.rows.first?.int64("available") else { throw Abort.unknown(item.skuId) }
                        throw Abort.short(.init(skuId: item.skuId, requested: item.quantity, available: max(available, 0)))
                    }
                    _ = try connection.query(
                        """
                        INSERT INTO baseline_reservation (order_id, biz_id, sku_id, quantity, fingerprint, status, expires_at)
                        VALUES (?, ?, ?, ?, ?, 'reserved', FROM_UNIXTIME(? / 1000))
                        """,
                        [
                            .string(command.orderId), .string(command.bizId), .int(Int64(item.skuId)), .int(item.quantity),
                            .string(fingerprint), .int(expiresAt),
                        ]
                    )
                }
                return .created(expiresAt: expiresAt)
            }
        }
        switch result {
        case .created(let expiresAt):
            return .created(
                Reservation(
                    orderId: command.orderId, bizId: command.bizId, status: .reserved,
                    lines: command.items.map { .init(skuId: $0.skuId, requested: $0.quantity, reserved: $0.quantity) },
                    expiresAtMilliseconds: expiresAt, persisted: true
                )
            )
        case .existing(let saved, let status, let lines, let expiresAt):
            guard saved == fingerprint else { throw InventoryError.idempotencyConflict }
            let state = ReservationStatus(rawValue: status) ?? .reserved
            if state == .cancelled || state == .expired { throw InventoryError.orderClosed(state) }
            return .replayed(
                Reservation(
                    orderId: command.orderId, bizId: command.bizId, status: state, lines: lines,
                    expiresAtMilliseconds: expiresAt, persisted: true
                )
            )
        }
    }

    /// Ends the transaction (rolling it back) with a domain answer.
    private enum Abort: Error {
        case short(InventoryError.Shortage)
        case unknown(UInt64)
    }

    public func confirm(orderId: String, bizId: String) async throws -> TransitionOutcome {
        try await transition(orderId: orderId, bizId: bizId, to: .confirmed)
    }

    public func cancel(orderId: String, bizId: String) async throws -> TransitionOutcome {
        try await transition(orderId: orderId, bizId: bizId, to: .cancelled)
    }

    private func transition(orderId: String, bizId: String, to target: ReservationStatus) async throws -> TransitionOutcome {
        let outcome: (Reservation, Bool) = try await call {
            try await self.mysql.withTransaction { connection in
                let rows = try connection.query(
                    """
                    SELECT biz_id, sku_id, quantity, status, expires_at FROM baseline_reservation
                    WHERE order_id = ? AND biz_id = ? FOR UPDATE
                    """,
                    [.string(orderId), .string(bizId)]
                )
                guard let first = rows.rows.first else { throw InventoryError.notFound }
                let status = ReservationStatus(rawValue: first.string("status") ?? "") ?? .reserved
                let biz = first.string("biz_id") ?? ""
                let lines = rows.rows.map {
                    let quantity = $0.int64("quantity") ?? 0
                    return ReservationLine(skuId: $0.uint64("sku_id") ?? 0, requested: quantity, reserved: quantity)
                }
                let reservation = { (status: ReservationStatus) in
                    Reservation(
                        orderId: orderId, bizId: biz, status: status, lines: lines,
                        expiresAtMilliseconds: Self.milliseconds(first.string("expires_at")), persisted: true
                    )
                }
                if status == target { return (reservation(status), true) }
                guard status == .reserved else {
                    if target == .confirmed { throw InventoryError.orderClosed(status) }
                    throw InventoryError.invalidState(status)
                }
                for line in lines {
                    let restore = target == .cancelled ? line.reserved : 0
                    _ = try connection.query(
                        "UPDATE baseline_stock SET available = available + ?, reserved = reserved - ? WHERE biz_id = ? AND sku_id = ?",
                        [.int(restore), .int(line.reserved), .string(biz), .int(Int64(line.skuId))]
                    )
                }
                _ = try connection.query(
                    "UPDATE baseline_reservation SET status = ? WHERE order_id = ? AND biz_id = ?",
                    [.string(target.rawValue), .string(orderId), .string(bizId)]
                )
                return (reservation(target), false)
            }
        }
        return TransitionOutcome(reservation: outcome.0, replayed: outcome.1)
    }

    public func refund(orderId: String, bizId: String) async throws -> TransitionOutcome {
        throw InventoryError.notSupported("refunds are not part of the database-only engine")
    }

    public func reservation(orderId: String, bizId: String) async throws -> Reservation {
        let rows = try await call {
            try await self.mysql.query(
                "SELECT biz_id, sku_id, quantity, status, expires_at FROM baseline_reservation WHERE order_id = ? AND biz_id = ?",
                [.string(orderId), .string(bizId)]
            )
        }
        guard let first = rows.rows.first else { throw InventoryError.notFound }
        return Reservation(
            orderId: orderId, bizId: first.string("biz_id") ?? "",
            status: ReservationStatus(rawValue: first.string("status") ?? "") ?? .reserved,
            lines: rows.rows.map {
                let quantity = $0.int64("quantity") ?? 0
                return ReservationLine(skuId: $0.uint64("sku_id") ?? 0, requested: quantity, reserved: quantity)
            },
            expiresAtMilliseconds: Self.milliseconds(first.string("expires_at")), persisted: true
        )
    }

    public func stock(_ id: StockItemID) async throws -> StockLevel {
        let rows = try await call {
            try await self.mysql.query(
                "SELECT available, reserved, is_infinite, danger_num FROM baseline_stock WHERE biz_id = ? AND sku_id = ?",
                [.string(id.bizId), .int(Int64(id.skuId))]
            )
        }
        guard let row = rows.rows.first else { throw InventoryError.notFound }
        let available = row.int64("available") ?? 0
        return StockLevel(
            item: id, available: available, reserved: row.int64("reserved") ?? 0, soldOut: available <= 0,
            infinite: row.bool("is_infinite") ?? false, dangerNum: row.int64("danger_num") ?? 0, backorderLimit: 0
        )
    }

    public func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel {
        try await call {
            try await self.mysql.withTransaction { connection in
                let current = try connection.query(
                    "SELECT reserved FROM baseline_stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE",
                    [.string(id.bizId), .int(Int64(id.skuId))]
                )
                let reserved = current.rows.first?.int64("reserved") ?? 0
                guard settings.stock >= reserved else { throw InventoryError.belowReserved(reserved: reserved) }
                _ = try connection.query(
                    """
                    INSERT INTO baseline_stock (biz_id, sku_id, available, reserved, is_infinite, danger_num)
                    VALUES (?, ?, ?, 0, ?, ?)
                    ON DUPLICATE KEY UPDATE available = ? - reserved, is_infinite = VALUES(is_infinite), danger_num = VALUES(danger_num)
                    """,
                    [
                        .string(id.bizId), .int(Int64(id.skuId)), .int(settings.stock), .int(settings.infinite == true ? 1 : 0),
                        .int(settings.dangerNum ?? 0), .int(settings.stock),
                    ]
                )
            }
        }
        return try await stock(id)
    }

    public func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        throw InventoryError.notSupported("adjustments are not part of the database-only engine")
    }

    public func readinessChecks() async -> [(name: String, ok: Bool)] {
        [("mysql", (try? await mysql.ping()) != nil)]
    }

    /// Runs MySQL work, passing domain answers through and turning store failures into `unavailable`.
    private func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as InventoryError {
            throw error
        } catch Abort.short(let shortage) {
            throw InventoryError.insufficientStock([shortage])
        } catch Abort.unknown(let sku) {
            throw InventoryError.unknownItems([sku])
        } catch {
            throw InventoryError.unavailable("MySQL: \(error)")
        }
    }

    /// DATETIME(3) text in UTC to Unix milliseconds.
    static func milliseconds(_ text: String?) -> Int64 {
        guard let text else { return 0 }
        var style = Date.ISO8601FormatStyle(dateSeparator: .dash, dateTimeSeparator: .space, timeZone: .gmt)
        style = style.year().month().day().time(includingFractionalSeconds: true)
        if let date = try? style.parse(text) { return Int64(date.timeIntervalSince1970 * 1000) }
        return 0
    }
}
