import MySQLClient

// MARK: - Duplicate holds (JournalBatchPlan.swift)

/// A duplicate hold: a reserve event of an order line whose journal row another reserve event wrote. Redis holds
/// it as a new order when it had lost or forgotten the earlier one (a retry after the order's keys' retention period,
/// a data loss); the worker takes it back (lua/undo_reserve.lua). One whose earlier order had ended
/// (`earlier_event` '') and that its order went on with before the take-back (a confirm, a dispense: confirmed at
/// once) was told to its client as sold: it is a hold of its own in `reserve_duplicates`, beside the earlier order's
/// row. Its confirm, cancel, expiry and refund move that row, not the journal's; its sale and refund are ledger lines
/// of its own (the line's source names its reserve event); its one-time codes are assigned to it, and count as held
/// while it is RESERVED or CONFIRMED (`CodePoolRepository.heldBy`). Its take-back closes it (UNDONE).
extension BatchPlan {
    /// For each duplicate reserve line (by position in `reserves`), the earlier reserve event whose hold the item
    /// still counted when the duplicate was made: the existing row's, while it was live at the duplicate's place in
    /// the stream (RESERVED, and no confirm, cancel, expiry or refund of the line before it in this batch); "" once
    /// the earlier order had ended. Decided by the first delivery and kept in `reserve_duplicates`: a later delivery
    /// reads the row as this batch left it (a confirm of the retry's order moves it on), and would decide otherwise.
    func earlierHolds(
        of duplicates: [(index: Int, row: (status: String, reserveEvent: String))], on connection: MySQLConnection
    ) throws -> [Int: String] {
        var decided: [LineEvent: String] = [:]
        for chunk in paddedChunks(duplicates.map(\.index)) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 4)
            for index in chunk {
                reserves[index].key.appendBinds(to: &binds)
                binds.append(.string(reserves[index].eventId))
            }
            let rows = try connection.query(
                """
                SELECT order_id, biz_id, sku_id, reserve_event, earlier_event FROM reserve_duplicates
                WHERE (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?)")))
                """,
                binds
            ).rows
            for row in rows {
                guard let orderId = row.string("order_id"), let bizId = row.string("biz_id"),
                    let skuId = row.uint64("sku_id"), let eventId = row.string("reserve_event")
                else { continue }
                decided[LineEvent(key: LineKey(orderId: orderId, bizId: bizId, skuId: skuId), eventId: eventId)] =
                    row.string("earlier_event") ?? ""
            }
        }
        var earlier: [Int: String] = [:]
        var fresh: [(index: Int, earlier: String)] = []
        for (index, row) in duplicates {
            let line = reserves[index]
            let key = LineEvent(key: line.key, eventId: line.eventId)
            if let stored = decided[key] {
                earlier[index] = stored
            } else {
                let now = row.status == "RESERVED" && !line.endedBefore ? row.reserveEvent : ""
                earlier[index] = now
                // A line's duplicate twice in one batch (a redelivered event beside itself) is written once.
                decided[key] = now
                fresh.append((index, now))
            }
        }
        for chunk in exactChunks(inStreamOrder ? fresh : []) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 5)
            for (index, earlierEvent) in chunk {
                reserves[index].key.appendBinds(to: &binds)
                binds.append(.string(reserves[index].eventId))
                binds.append(.string(earlierEvent))
            }
            _ = try insertingConcurrently(
                connection,
                """
                INSERT INTO reserve_duplicates (order_id, biz_id, sku_id, reserve_event, earlier_event, status)
                VALUES \(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?, ?, 'RESERVED')"))
                """,
                binds
            )
        }
        return earlier
    }

    /// The codes of duplicate holds of ended orders, assigned to their reserve events: taken from Redis's usable codes
    /// like any hold's, and sold by its confirm. A code of the line's earlier order that had given it back (cancelled,
    /// expired, refunded) moves to the duplicate; a confirmed earlier order keeps its own.
    func assignCodes(ofDuplicates duplicates: [JournalBatchResult.DuplicateLine], on connection: MySQLConnection) throws {
        let lines = duplicates.filter { $0.earlierHold.isEmpty }
        guard !lines.isEmpty else { return }
        let codes = Dictionary(reserves.map { (LineEvent(key: $0.key, eventId: $0.eventId), $0.codes) }, uniquingKeysWith: { first, _ in first })
        for takeOver in [false, true] {
            let assignments = lines.filter { ["CANCELLED", "EXPIRED", "REFUNDED"].contains($0.existingStatus) == takeOver }
                .flatMap { line -> [(LineEvent, String)] in
                    let event = LineEvent(key: LineKey(orderId: line.orderId, bizId: line.bizId, skuId: line.skuId), eventId: line.eventId)
                    return (codes[event] ?? []).map { (event, $0) }
                }
            for chunk in exactChunks(assignments) {
                var binds: [MySQLValue] = []
                binds.reserveCapacity(chunk.count * 5)
                for (event, code) in chunk {
                    event.key.appendBinds(to: &binds)
                    binds.append(.string(code))
                    binds.append(.string(event.eventId))
                }
                _ = try connection.query(
                    """
                    INSERT\(takeOver ? "" : " IGNORE") INTO code_assignments (order_id, biz_id, sku_id, code, reserve_event)
                    VALUES \(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?, ?)"))\(takeOver ? " ON DUPLICATE KEY UPDATE reserve_event = VALUES(reserve_event)" : "")
                    """,
                    binds
                )
            }
        }
    }

    /// Which transitions a duplicate hold of an ended order owns, by position in `transitions`: the line's latest such
    /// duplicate still open (RESERVED or CONFIRMED: a later event can still be its) whose reserve event comes before
    /// the transition (an order's events are in one stream, in
    /// the order Redis made them; the earlier order's own transitions were applied long before). `found` are the
    /// duplicates this batch met; the others are read.
    func owners(_ found: [JournalBatchResult.DuplicateLine], on connection: MySQLConnection) throws -> [Int: String] {
        guard !transitions.isEmpty else { return [:] }
        var open: [LineKey: [String]] = [:]
        for line in found where line.earlierHold.isEmpty {
            open[LineKey(orderId: line.orderId, bizId: line.bizId, skuId: line.skuId), default: []].append(line.eventId)
        }
        let keys = Array(Set(transitions.map(\.key))).sorted()
        for chunk in paddedChunks(keys) {
            let rows = try connection.query(
                """
                SELECT order_id, biz_id, sku_id, reserve_event FROM reserve_duplicates
                WHERE earlier_event = '' AND status IN ('RESERVED', 'CONFIRMED')
                  AND (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder))")))
                """,
                chunk.flatMap(\.binds)
            ).rows
            for row in rows {
                guard let orderId = row.string("order_id"), let bizId = row.string("biz_id"),
                    let skuId = row.uint64("sku_id"), let eventId = row.string("reserve_event")
                else { continue }
                open[LineKey(orderId: orderId, bizId: bizId, skuId: skuId), default: []].append(eventId)
            }
        }
        guard !open.isEmpty else { return [:] }
        var owners: [Int: String] = [:]
        for (index, transition) in transitions.enumerated() {
            guard let at = StreamPosition(transition.eventId),
                let owner = (open[transition.key] ?? [])
                    .compactMap({ event in StreamPosition(event).map { (event, $0) } })
                    .filter({ $0.1 < at }).max(by: { $0.1 < $1.1 })
            else { continue }
            owners[index] = owner.0
        }
        return owners
    }

    /// Moves duplicate holds' rows (a row moves only from the status the change names: redeliveries change nothing).
    func update(_ change: DuplicateStatusChange, on connection: MySQLConnection) throws {
        for chunk in paddedChunks(change.lines) {
            var binds: [MySQLValue] = [.string(change.to), .string(change.from)]
            for line in chunk { line.appendBinds(to: &binds) }
            _ = try connection.query(
                """
                UPDATE reserve_duplicates SET status = ?
                WHERE status = ? AND (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?)")))
                """,
                binds
            )
        }
    }

    /// Closes the duplicate holds that undo events took back: the order is its journal row's again, and what comes
    /// after is the earlier order's.
    func closeUndone(on connection: MySQLConnection) throws {
        try update(DuplicateStatusChange(from: "RESERVED", to: "UNDONE", lines: undos.map { LineEvent(key: $0.key, eventId: $0.reserveEventId) }), on: connection)
    }
}

/// An outbox entry id ('<ms>-<seq>') as a position in its stream.
struct StreamPosition: Comparable, Sendable {
    let milliseconds: UInt64
    let sequence: UInt64

    init?(_ id: String) {
        let parts = id.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let milliseconds = UInt64(parts[0]), let sequence = UInt64(parts[1]) else { return nil }
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    static func < (lhs: StreamPosition, rhs: StreamPosition) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }
}
