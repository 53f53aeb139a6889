import MySQLClient

// MARK: - Duplicate holds (JournalBatchPlan.swift)

/// A duplicate hold: a reserve event of an order line whose journal row another reserve event wrote. Redis holds
/// it as a new order when it had lost or forgotten the earlier one (a retry after the order's keys' retention period,
/// a data loss); the worker takes it back (lua/undo_reserve.lua). One whose earlier order had ended
/// (`earlier_event` '') and that its order went on with before the take-back (a confirm, a dispense: confirmed at
/// once) was told to its client as sold: it is a hold of its own in `reserve_duplicates`, beside the earlier order's
/// row. Its confirm, cancel, expiry and refund move that row, not the journal's; its sale and refund are ledger lines
/// of its own (the line's source names its reserve event); its one-time codes are assigned to it, and count as held
/// while it is RESERVED or CONFIRMED (`CodePoolRepository.held`). What events it owns is decided by stream position
/// alone, so every delivery decides the same: those after its reserve event and up to the event that ended it
/// (`ended_event`: its cancel, expiry, refund, its take-back's undo, or the stream's last entry when its order was
/// restored from the journal, OrderReader).
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
        // Out of stream order (sync mode's commits) only a decision that cannot change is kept: an earlier order
        // that has ended had ended at the duplicate's place in the stream too (its events all came before: Redis had
        // forgotten it when the duplicate was made).
        for chunk in exactChunks(fresh.filter { inStreamOrder || $0.earlier.isEmpty }) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 6)
            for (index, earlierEvent) in chunk {
                reserves[index].key.appendBinds(to: &binds)
                binds.append(.string(reserves[index].eventId))
                binds.append(.string(earlierEvent))
                binds.append(.int(reserves[index].quantity))
            }
            _ = try insertingConcurrently(
                connection,
                """
                INSERT INTO reserve_duplicates (order_id, biz_id, sku_id, reserve_event, earlier_event, status, quantity)
                VALUES \(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?, ?, 'RESERVED', ?)"))
                """,
                binds
            )
        }
        return earlier
    }

    /// The codes of duplicate holds of ended orders, assigned to their reserve events: taken from Redis's usable codes
    /// like any hold's, and sold by its confirm. A code assigned to the order line before (to the earlier order, or an
    /// earlier duplicate) moves to this one unless that holder still holds it (RESERVED or CONFIRMED).
    func assignCodes(ofDuplicates duplicates: [JournalBatchResult.DuplicateLine], on connection: MySQLConnection) throws {
        let codes = Dictionary(reserves.map { (LineEvent(key: $0.key, eventId: $0.eventId), $0.codes) }, uniquingKeysWith: { first, _ in first })
        let assignments = duplicates.filter { $0.earlierHold.isEmpty }.flatMap { line -> [(LineEvent, String)] in
            let event = LineEvent(key: LineKey(orderId: line.orderId, bizId: line.bizId, skuId: line.skuId), eventId: line.eventId)
            return (codes[event] ?? []).map { (event, $0) }
        }
        for chunk in exactChunks(assignments) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 4)
            for (event, code) in chunk {
                event.key.appendBinds(to: &binds)
                binds.append(.string(code))
            }
            _ = try connection.query(
                """
                DELETE a FROM code_assignments a
                WHERE (a.order_id, a.biz_id, a.sku_id, a.code) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?)")))
                  AND NOT \(CodePoolRepository.held("a", statuses: "'RESERVED', 'CONFIRMED'"))
                """,
                binds
            )
        }
        try Self.assign(assignments, on: connection)
    }

    /// A duplicate hold of a live order that its order went on with (its confirm, cancel, expiry or refund came
    /// before its take-back, which handed the earlier hold back instead, with its one-time codes: lua/undo_reserve.lua,
    /// settled): the journal row, which its order's events moved, adopts the duplicate's hold: its quantity (what a
    /// restore of the order brings back) and its codes (the ones its client was told; the earlier hold's are free
    /// again). Only while the row is still the earlier reserve's; a redelivery writes the same.
    func adopt(on connection: MySQLConnection) throws {
        for line in adoptions {
            let row = try connection.query(
                """
                SELECT 1 AS found FROM reservation_journal
                WHERE order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND reserve_event = ? FOR UPDATE
                """,
                line.key.binds + [.string(line.earlierEvent)]
            )
            guard !row.rows.isEmpty else { continue }
            _ = try connection.query(
                """
                UPDATE reservation_journal SET quantity = ?
                WHERE order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND reserve_event = ?
                """,
                [.int(line.quantity)] + line.key.binds + [.string(line.earlierEvent)]
            )
            _ = try connection.query(
                "DELETE FROM code_assignments WHERE order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND reserve_event = ?",
                line.key.binds + [.string(line.earlierEvent)]
            )
            try Self.assign(line.codes.map { (LineEvent(key: line.key, eventId: line.earlierEvent), $0) }, on: connection)
        }
    }

    /// Assigns codes to the reserve events that took them (a code already assigned on the line stays as it is).
    static func assign(_ assignments: [(LineEvent, String)], on connection: MySQLConnection) throws {
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
                INSERT IGNORE INTO code_assignments (order_id, biz_id, sku_id, code, reserve_event)
                VALUES \(tuples(chunk.count, "(?, ?, \(skuPlaceholder), ?, ?)"))
                """,
                binds
            )
        }
    }

    /// Which transitions a duplicate hold of an ended order owns, by position in `transitions`: the line's latest
    /// such duplicate whose reserve event comes before the transition and that had not ended before it (its
    /// `ended_event` at or after the transition: a delivery again of the event that ended it is still its own; none
    /// while it is RESERVED or CONFIRMED). An order's events are in one stream, in the order Redis made them; the
    /// earlier order's own were applied long before. `found` are the duplicates this batch met; the others are read.
    func owners(_ found: [JournalBatchResult.DuplicateLine], on connection: MySQLConnection) throws -> [Int: String] {
        guard !transitions.isEmpty else { return [:] }
        var candidates: [LineKey: [String: DuplicateCandidate]] = [:]
        for line in found where line.earlierHold.isEmpty {
            guard let candidate = DuplicateCandidate(eventId: line.eventId, status: "RESERVED", endedEvent: nil) else { continue }
            candidates[LineKey(orderId: line.orderId, bizId: line.bizId, skuId: line.skuId), default: [:]][line.eventId] = candidate
        }
        let keys = Array(Set(transitions.map(\.key))).sorted()
        for chunk in paddedChunks(keys) {
            let rows = try connection.query(
                """
                SELECT order_id, biz_id, sku_id, reserve_event, status, ended_event FROM reserve_duplicates
                WHERE earlier_event = '' AND (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(skuPlaceholder))")))
                """,
                chunk.flatMap(\.binds)
            ).rows
            for row in rows {
                guard let orderId = row.string("order_id"), let bizId = row.string("biz_id"),
                    let skuId = row.uint64("sku_id"), let eventId = row.string("reserve_event")
                else { continue }
                let status = row.string("status") ?? ""
                // A row met before statuses were kept (UNTRACKED) owns nothing, met again now or not.
                candidates[LineKey(orderId: orderId, bizId: bizId, skuId: skuId), default: [:]][eventId] =
                    status == "UNTRACKED" ? nil : DuplicateCandidate(eventId: eventId, status: status, endedEvent: row.string("ended_event"))
            }
        }
        guard !candidates.isEmpty else { return [:] }
        var owners: [Int: String] = [:]
        // In batch order: a cancel, expiry or refund a duplicate owns ends it for the transitions after it.
        for (index, transition) in transitions.enumerated() {
            guard let at = StreamPosition(transition.eventId), let lineCandidates = candidates[transition.key],
                let owner = DuplicateCandidate.owner(at: at, among: lineCandidates.values)
            else { continue }
            owners[index] = owner.eventId
            if transition.kind != .confirm, owner.endedAt == nil {
                candidates[transition.key]?[owner.eventId] = DuplicateCandidate(eventId: owner.eventId, position: owner.position, endedAt: at)
            }
        }
        return owners
    }

    /// Moves duplicate holds' rows, each from the status its move names (a delivery again changes nothing); one that
    /// ends keeps the event that ended it.
    func move(_ moves: [DuplicateMove], on connection: MySQLConnection) throws {
        for move in moves.sorted(by: { $0.line < $1.line }) {
            var binds: [MySQLValue] = [.string(move.to), move.endedBy.map(MySQLValue.string) ?? .null, .string(move.from)]
            move.line.appendBinds(to: &binds)
            _ = try connection.query(
                """
                UPDATE reserve_duplicates SET status = ?, ended_event = COALESCE(ended_event, ?)
                WHERE status = ? AND order_id = ? AND biz_id = ? AND sku_id = \(skuPlaceholder) AND reserve_event = ?
                """,
                binds
            )
        }
    }

    /// Closes the duplicate holds that undo events took back: what comes after the undo is the earlier order's (the
    /// order is its journal row's again).
    func closeUndone(on connection: MySQLConnection) throws {
        try move(
            undos.map {
                DuplicateMove(line: LineEvent(key: $0.key, eventId: $0.reserveEventId), from: "RESERVED", to: "UNDONE", endedBy: $0.eventId)
            },
            on: connection
        )
    }
}

/// A duplicate hold of an ended order, as what it may own: the transitions after its reserve event, up to the event
/// that ended it.
struct DuplicateCandidate: Sendable {
    let eventId: String
    let position: StreamPosition
    /// nil: open (RESERVED or CONFIRMED); otherwise the last position it owns.
    let endedAt: StreamPosition?

    init(eventId: String, position: StreamPosition, endedAt: StreamPosition?) {
        self.eventId = eventId
        self.position = position
        self.endedAt = endedAt
    }

    /// From a `reserve_duplicates` row (nil: not a stream position). An end that is not a stream position (none is
    /// written), or a row ended without one, ends it before anything after it.
    init?(eventId: String, status: String, endedEvent: String?) {
        guard let position = StreamPosition(eventId) else { return nil }
        self.eventId = eventId
        self.position = position
        if let endedEvent {
            endedAt = StreamPosition(endedEvent) ?? position
        } else {
            endedAt = ["RESERVED", "CONFIRMED"].contains(status) ? nil : position
        }
    }

    /// The line's duplicate that owns a transition at `at`: the latest whose reserve event comes before it and that
    /// had not ended before it.
    static func owner(at: StreamPosition, among candidates: some Sequence<DuplicateCandidate>) -> DuplicateCandidate? {
        candidates.filter { $0.position < at && ($0.endedAt.map { at <= $0 } ?? true) }.max { $0.position < $1.position }
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
