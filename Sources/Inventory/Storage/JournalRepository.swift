import MySQLClient

/// One event read from the Redis Stream outbox.
public struct OutboxEvent: Sendable, Equatable {
    /// What happened to the order in Redis.
    public enum Kind: String, Sendable {
        case reserve, confirm, cancel, expire, refund, undo
    }

    /// One stock item of the order and its quantity.
    public struct Line: Sendable, Equatable {
        /// The SKU, of the event's business line.
        public let skuId: UInt64
        /// The quantity the event moved; lines of quantity 0 (or less) change no row and no stock.
        public let quantity: Int64
        /// The epoch the item had in Redis when the event changed it ("" for an item that has none).
        public let epoch: String
        /// Reserve only: the codes of the item's code pool the line holds (empty for an item without one).
        public let codes: [String]

        /// Creates a line.
        public init(skuId: UInt64, quantity: Int64, epoch: String = "", codes: [String] = []) {
            self.skuId = skuId
            self.quantity = quantity
            self.epoch = epoch
            self.codes = codes
        }
    }

    /// The stream entry id, "ms-seq".
    public let id: String
    /// The stream key the event came from.
    public let stream: String
    /// What happened.
    public let kind: Kind
    /// The order.
    public let orderId: String
    /// The business line of every line of the event.
    public let bizId: String
    /// The user who reserved; reserve only.
    public let userId: String?
    /// The lines; may be empty (a cancel of an order that never reserved).
    public let lines: [Line]
    /// When the hold runs out, Unix milliseconds; reserve only.
    public let expiresAtMilliseconds: Int64?
    /// When Redis applied the event, Unix milliseconds.
    public let atMilliseconds: Int64
    /// Undo only: the id of the reserve event being undone.
    public let reserveEventId: String?
    /// Reserve only: the request's fingerprint (`ReserveCommand.fingerprint`), kept hashed with the journal's rows
    /// so that an order restored from them still tells a replay from another body; nil when the event has none.
    public let requestFingerprint: String?

    /// A copy with only the lines `keep` accepts.
    func filteringLines(_ keep: (Line) -> Bool) -> OutboxEvent {
        OutboxEvent(
            id: id, stream: stream, kind: kind, orderId: orderId, bizId: bizId, userId: userId,
            lines: lines.filter(keep), expiresAtMilliseconds: expiresAtMilliseconds, atMilliseconds: atMilliseconds,
            reserveEventId: reserveEventId, requestFingerprint: requestFingerprint
        )
    }

    /// Creates an event.
    public init(
        id: String,
        stream: String,
        kind: Kind,
        orderId: String,
        bizId: String,
        userId: String?,
        lines: [Line],
        expiresAtMilliseconds: Int64?,
        atMilliseconds: Int64,
        reserveEventId: String?,
        requestFingerprint: String? = nil
    ) {
        self.id = id
        self.stream = stream
        self.kind = kind
        self.orderId = orderId
        self.bizId = bizId
        self.userId = userId
        self.lines = lines
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.atMilliseconds = atMilliseconds
        self.reserveEventId = reserveEventId
        self.requestFingerprint = requestFingerprint
    }
}

/// What `JournalRepository.apply` did to MySQL.
public struct JournalBatchResult: Sendable, Equatable {
    /// A reserve line whose journal row already existed from another reserve event.
    public struct DuplicateLine: Sendable, Equatable {
        /// The order.
        public let orderId: String
        /// The business line.
        public let bizId: String
        /// The SKU.
        public let skuId: UInt64
        /// The quantity the duplicate reserve event holds in Redis.
        public let quantity: Int64
        /// The status of the row that was there first ("RESERVED", "CONFIRMED", ...).
        public let existingStatus: String
        /// The id of the duplicate reserve event (the one whose hold must be taken back).
        public let eventId: String
        /// The reserve event that created the existing row ("" for a row written before that was recorded).
        public let existingReserveEvent: String

        /// Creates a duplicate line.
        public init(
            orderId: String,
            bizId: String,
            skuId: UInt64,
            quantity: Int64,
            existingStatus: String,
            eventId: String,
            existingReserveEvent: String
        ) {
            self.orderId = orderId
            self.bizId = bizId
            self.skuId = skuId
            self.quantity = quantity
            self.existingStatus = existingStatus
            self.eventId = eventId
            self.existingReserveEvent = existingReserveEvent
        }
    }

    /// Reserve lines whose (order, biz, sku) row already existed from ANOTHER reserve event: a real duplicate hold
    /// in Redis (e.g. after Redis lost its data) that the caller must compensate. A redelivery of the same event
    /// (same reserve_event) is not a duplicate. In batch order.
    public var duplicates: [DuplicateLine]
    /// Journal rows created by reserve events.
    public var rowsInserted: Int
    /// Journal rows whose status changed (confirm, cancel, expire, refund).
    public var rowsUpdated: Int
    /// Journal rows removed by undo events.
    public var rowsDeleted: Int
    /// Stock ledger rows written, one per confirm or refund line applied to MySQL stock for the first time.
    public var stockChanges: Int
    /// Lines left out because Redis has rebuilt their item since the event changed it (see `apply(_:epochs:)`).
    public var staleLines: [StaleLine] = []
    /// Stock items that confirm or refund lines of this batch named but that have no stock row: their stock was not
    /// changed and no ledger row was written for them (a redelivery after the row exists applies them then). The
    /// journal rows were written all the same. Sorted by business line, then SKU.
    public var missingStockItems: [StockItemID]

    /// Creates a result; everything defaults to "nothing happened".
    public init(
        duplicates: [DuplicateLine] = [],
        rowsInserted: Int = 0,
        rowsUpdated: Int = 0,
        rowsDeleted: Int = 0,
        stockChanges: Int = 0,
        missingStockItems: [StockItemID] = []
    ) {
        self.duplicates = duplicates
        self.rowsInserted = rowsInserted
        self.rowsUpdated = rowsUpdated
        self.rowsDeleted = rowsDeleted
        self.stockChanges = stockChanges
        self.missingStockItems = missingStockItems
    }
}

/// A line of an event made in an earlier epoch of its item than Redis has now: Redis lost the data the event
/// changed and rebuilt the item from MySQL without it, so the line was not applied.
public struct StaleLine: Sendable, Equatable, Hashable {
    /// The outbox event.
    public let eventId: String
    /// What the event did.
    public let kind: OutboxEvent.Kind
    /// The order.
    public let orderId: String
    /// The stock item.
    public let item: StockItemID
    /// The quantity the line moved.
    public let quantity: Int64
}

/// The connection broke while COMMIT was in flight: the batch may or may not be in the journal.
public struct JournalCommitOutcomeUnknown: Error, CustomStringConvertible {
    public let underlying: MySQLError
    public var description: String { "journal commit outcome unknown: \(underlying)" }
}

/// Where a batch learns each item's epoch in Redis.
public protocol ItemEpochSource: Sendable {
    /// The epoch of each item Redis holds now; an item that is missing or still being rebuilt is left out.
    func currentEpochs(_ items: [StockItemID]) async throws -> [StockItemID: ItemEpoch]
}

/// An item's epoch in Redis, and the earlier epochs its rebuild absorbed: their outbox events were all in the
/// journal when it read MySQL (it applied those still in the outbox first; see `InventoryEngine.ensureItem`).
public struct ItemEpoch: Sendable, Equatable {
    public let current: String
    /// Earlier epochs whose events the item counts.
    public let absorbed: Set<String>

    public init(_ current: String, absorbed: Set<String> = []) {
        self.current = current
        self.absorbed = absorbed
    }

    /// Whether a line made in `epoch` is counted by the item as it is now: made in this epoch, or in one the
    /// rebuild absorbed. Any other line's data was lost by Redis before the journal had it (a stale line).
    public func counts(_ epoch: String) -> Bool { epoch == current || absorbed.contains(epoch) }
}

/// One row of the task journal.
public struct JournalRow: Sendable, Equatable {
    public let orderId: String
    public let bizId: String
    public let skuId: UInt64
    public let userId: String?
    public let quantity: Int64
    /// "RESERVED", "CONFIRMED", "CANCELLED", "EXPIRED" or "REFUNDED".
    public let status: String
    /// When the hold runs out, Unix milliseconds.
    public let expiresAtMilliseconds: Int64
    /// The id of the reserve event that created the row.
    public let reserveEvent: String
    /// The SHA-1 (hex) of the request that made the row (`OutboxEvent.requestFingerprint`); nil for rows written
    /// before it was kept.
    public var requestHash: String? = nil

    /// Creates a row value.
    public init(
        orderId: String,
        bizId: String,
        skuId: UInt64,
        userId: String?,
        quantity: Int64,
        status: String,
        expiresAtMilliseconds: Int64,
        reserveEvent: String
    ) {
        self.orderId = orderId
        self.bizId = bizId
        self.skuId = skuId
        self.userId = userId
        self.quantity = quantity
        self.status = status
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.reserveEvent = reserveEvent
    }
}

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
    /// With `epochs`, lines of an epoch older than their item's epoch in Redis are left out (`staleLines`): Redis
    /// lost the data those lines changed and rebuilt the item from MySQL without them, so applying them now would
    /// make the journal count what Redis does not (a hold Redis does not count lets it sell the unit twice). The
    /// stock rows of the batch's items are locked first, and the rebuild holds the same lock from its read of
    /// MySQL until it has written Redis: either the rebuild reads after this commit (and counts these lines) or
    /// this batch sees the rebuilt epoch.
    public func apply(_ events: [OutboxEvent], epochs: (any ItemEpochSource)? = nil) async throws -> JournalBatchResult {
        let items = Set(events.flatMap { event in event.lines.map { StockItemID(bizId: event.bizId, skuId: $0.skuId) } })
            .sorted { ($0.bizId, $0.skuId) < ($1.bizId, $1.skuId) }
        guard let epochs, !items.isEmpty else {
            let plan = BatchPlan(events)
            if plan.isEmpty { return JournalBatchResult() }
            return try await retryingDeadlocks {
                try await client.withTransaction { connection in try plan.run(on: connection) }
            }
        }
        return try await retryingDeadlocks {
            try await client.withSession { session in
                try await session.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                try await session.execute("START TRANSACTION")
                do {
                    try await session.perform { connection in try Self.lockStockRows(items, on: connection) }
                    let current = try await epochs.currentEpochs(items)
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
                    let plan = BatchPlan(kept)
                    var result = try await session.perform { connection in
                        try plan.run(on: connection, settingIsolation: false)
                    }
                    result.staleLines = stale
                    do {
                        try await session.execute("COMMIT")
                    } catch let error as MySQLError where error.isConnectionError {
                        throw JournalCommitOutcomeUnknown(underlying: error)
                    }
                    return result
                } catch {
                    try? await session.execute("ROLLBACK")
                    throw error
                }
            }
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
        return try plan.run(on: connection, settingIsolation: false)
    }

    /// Locks the stock rows of `items` (sorted, so concurrent batches lock in one order).
    static func lockStockRows(_ items: [StockItemID], on connection: MySQLConnection) throws {
        for chunk in paddedChunks(items) {
            _ = try connection.query(
                """
                SELECT biz_id FROM stock
                WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(sku))"))) ORDER BY biz_id, sku_id FOR UPDATE
                """,
                chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
            )
        }
    }

    /// The journal rows of an order, by business line and SKU.
    public func rows(orderId: String) async throws -> [JournalRow] {
        let result = try await client.query(
            """
            SELECT order_id, biz_id, sku_id, user_id, quantity, status, expires_at, reserve_event, request_fp
            FROM reservation_journal WHERE order_id = ? ORDER BY biz_id, sku_id
            """,
            [.string(orderId)]
        )
        return result.rows.map { row in
            var journalRow = JournalRow(
                orderId: row.string("order_id") ?? orderId,
                bizId: row.string("biz_id") ?? "",
                skuId: row.uint64("sku_id") ?? 0,
                userId: row.string("user_id"),
                quantity: row.int64("quantity") ?? 0,
                status: row.string("status") ?? "",
                expiresAtMilliseconds: row.string("expires_at").flatMap(JournalTime.milliseconds(fromDatetime:)) ?? 0,
                reserveEvent: row.string("reserve_event") ?? ""
            )
            journalRow.requestHash = row.string("request_fp")
            return journalRow
        }
    }

    /// The order's rows in one business (the lines a reserve of it made in that business).
    public func rows(orderId: String, bizId: String) async throws -> [JournalRow] {
        try await rows(orderId: orderId).filter { $0.bizId == bizId }
    }

    /// Whether a cancel of this order, made before any reserve of it, is recorded under `keyPrefix`.
    public func hasTombstone(orderId: String, keyPrefix: String) async throws -> Bool {
        let result = try await client.query(
            "SELECT 1 AS found FROM order_tombstones WHERE key_prefix = ? AND order_id = ? LIMIT 1",
            [.string(keyPrefix), .string(orderId)]
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

    /// Whether the journal has a row of this order made by this reserve event.
    public func hasRow(orderId: String, bizId: String, reserveEvent: String) async throws -> Bool {
        let result = try await client.query(
            "SELECT 1 AS found FROM reservation_journal WHERE order_id = ? AND biz_id = ? AND reserve_event = ? LIMIT 1",
            [.string(orderId), .string(bizId), .string(reserveEvent)]
        )
        return !result.rows.isEmpty
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

// MARK: - Batch plan

/// (order, biz, sku): the journal's unique key.
private struct LineKey: Hashable, Sendable, Comparable {
    let orderId: String
    let bizId: String
    let skuId: UInt64

    static func < (lhs: LineKey, rhs: LineKey) -> Bool {
        (lhs.orderId, lhs.bizId, lhs.skuId) < (rhs.orderId, rhs.bizId, rhs.skuId)
    }

    var binds: [MySQLValue] {
        var binds: [MySQLValue] = []
        appendBinds(to: &binds)
        return binds
    }

    func appendBinds(to binds: inout [MySQLValue]) {
        binds.append(.string(orderId))
        binds.append(.string(bizId))
        binds.append(skuValue(skuId))
    }
}

private struct ReserveLine: Sendable {
    let key: LineKey
    let userId: String?
    /// The request's fingerprint, stored as its SHA-1 (nil: not known).
    let requestFingerprint: String?
    let quantity: Int64
    let expiresAt: String
    let eventId: String
    let codes: [String]
}

private struct UndoLine: Sendable {
    let key: LineKey
    let reserveEventId: String
}

private struct StatusChange: Sendable {
    let from: String
    let to: String
    let keys: [LineKey]
}

private struct LedgerLine: Sendable {
    let item: StockItemID
    let delta: Int64
    let reason: String
    let source: String
}

/// A batch of events sorted into the statements that apply it, computed before the transaction starts so that a
/// retry only repeats SQL.
///
/// Phases, in this order (events of one order line arrive in causal order; a phase only ever moves a row forward):
/// 1. undo: delete the line's row while it is RESERVED and still carries the undone reserve event's id. Reserve
///    lines of the batch that an undo of the batch undoes are dropped from phase 2, so [reserve E1, undo E1] leaves
///    no row; running undo first lets [undo E1, reserve E2] (a retry after a sync-mode failure) replace E1's row by
///    E2's instead of reporting E2 as a duplicate.
/// 2. reserve: insert RESERVED rows for lines that have none; a row of another reserve event is a duplicate.
/// 3. confirm: RESERVED → CONFIRMED.
/// 4. cancel, expire: RESERVED → CANCELLED / EXPIRED (a late cancel never touches a CONFIRMED or REFUNDED row).
/// 5. refund: CONFIRMED → REFUNDED.
/// 6. stock: every confirm (−q) and refund (+q) line once per ledger source, summed per item into one change of
///    each item's row, and one ledger row per line carrying the item's stock after the batch.
///
/// The transaction runs at READ COMMITTED: searches take no gap locks, so batches of other orders (other workers,
/// sync mode's group commits) never block on the gaps next to rows they do not share. Nothing here relies on a
/// snapshot: every row read is then either locked by this transaction or checked again by a unique key.
private struct BatchPlan: Sendable {
    var undos: [UndoLine] = []
    var reserves: [ReserveLine] = []
    /// Positions in `reserves` of each line's first reserve (it creates the row; later ones of other events are
    /// duplicates), in key order, so concurrent batches lock rows in the same order.
    var firstReserves: [Int] = []
    /// For each position in `reserves`, the position of its line's first reserve.
    var firstOfLine: [Int] = []
    var statusChanges: [StatusChange] = []
    var ledger: [LedgerLine] = []
    var tombstones: [Tombstone] = []

    var isEmpty: Bool {
        undos.isEmpty && reserves.isEmpty && statusChanges.allSatisfy(\.keys.isEmpty) && ledger.isEmpty
            && tombstones.isEmpty
    }

    /// A cancel of an order that never reserved, kept under the key prefix of the Redis it was made in.
    struct Tombstone: Sendable {
        let prefix: String
        let orderId: String
    }

    init(_ events: [OutboxEvent]) {
        var confirms: [LineKey] = []
        var cancels: [LineKey] = []
        var expiries: [LineKey] = []
        var refunds: [LineKey] = []
        var ledgerSources: Set<String> = []
        var undone: Set<UndoKey> = []

        for event in events where event.kind == .undo {
            guard let reserveEventId = event.reserveEventId, !reserveEventId.isEmpty else { continue }
            for line in event.lines {
                let key = LineKey(orderId: event.orderId, bizId: event.bizId, skuId: line.skuId)
                if undone.insert(UndoKey(key: key, eventId: reserveEventId)).inserted {
                    undos.append(UndoLine(key: key, reserveEventId: reserveEventId))
                }
            }
        }
        undos.sort { $0.key < $1.key }
        for event in events {
            for line in event.lines {
                let key = LineKey(orderId: event.orderId, bizId: event.bizId, skuId: line.skuId)
                switch event.kind {
                case .reserve:
                    guard line.quantity > 0, !undone.contains(UndoKey(key: key, eventId: event.id)) else { continue }
                    reserves.append(
                        ReserveLine(
                            key: key, userId: event.userId, requestFingerprint: event.requestFingerprint,
                            quantity: line.quantity,
                            expiresAt: JournalTime.datetime(
                                milliseconds: event.expiresAtMilliseconds ?? event.atMilliseconds
                            ),
                            eventId: event.id, codes: line.codes
                        )
                    )
                case .confirm, .refund:
                    if event.kind == .confirm { confirms.append(key) } else { refunds.append(key) }
                    guard line.quantity > 0 else { continue }
                    let reason = event.kind.rawValue
                    let source = "\(reason):\(event.orderId):\(event.bizId):\(line.skuId)"
                    if ledgerSources.insert(source).inserted {
                        ledger.append(
                            LedgerLine(
                                item: StockItemID(bizId: event.bizId, skuId: line.skuId),
                                delta: event.kind == .confirm ? -line.quantity : line.quantity,
                                reason: reason, source: source
                            )
                        )
                    }
                case .cancel:
                    cancels.append(key)
                case .expire:
                    expiries.append(key)
                case .undo:
                    continue
                }
            }
            // A cancel of an order that never reserved: its tombstone outlives Redis's memory of it.
            if event.kind == .cancel && event.lines.isEmpty {
                tombstones.append(Tombstone(prefix: KeyLayout.prefix(ofStream: event.stream), orderId: event.orderId))
            }
        }
        var firstByKey: [LineKey: Int] = [:]
        firstByKey.reserveCapacity(reserves.count)
        firstOfLine.reserveCapacity(reserves.count)
        for (index, line) in reserves.enumerated() {
            let first = firstByKey[line.key, default: index]
            if first == index {
                firstByKey[line.key] = index
                firstReserves.append(index)
            }
            firstOfLine.append(first)
        }
        firstReserves.sort { [reserves] in reserves[$0].key < reserves[$1].key }
        statusChanges = [
            StatusChange(from: "RESERVED", to: "CONFIRMED", keys: Self.unique(confirms)),
            StatusChange(from: "RESERVED", to: "CANCELLED", keys: Self.unique(cancels)),
            StatusChange(from: "RESERVED", to: "EXPIRED", keys: Self.unique(expiries)),
            StatusChange(from: "CONFIRMED", to: "REFUNDED", keys: Self.unique(refunds)),
        ]
    }

    private struct UndoKey: Hashable {
        let key: LineKey
        let eventId: String
    }

    /// Distinct keys in index order, so concurrent batches lock rows in the same order.
    private static func unique(_ keys: [LineKey]) -> [LineKey] {
        Array(Set(keys)).sorted()
    }

    func run(on connection: MySQLConnection, settingIsolation: Bool = true) throws -> JournalBatchResult {
        // Allowed here: no statement has run yet, so the transaction withTransaction opened has not started.
        if settingIsolation { try connection.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED") }
        var result = JournalBatchResult()
        result.rowsDeleted = try undo(on: connection)
        try reserve(on: connection, into: &result)
        for change in statusChanges where !change.keys.isEmpty {
            result.rowsUpdated += try update(change, on: connection)
        }
        try applyStock(on: connection, into: &result)
        for chunk in exactChunks(tombstones) {
            _ = try connection.query(
                "INSERT IGNORE INTO order_tombstones (key_prefix, order_id) VALUES \(tuples(chunk.count, "(?, ?)"))",
                chunk.flatMap { [MySQLValue.string($0.prefix), .string($0.orderId)] }
            )
        }
        return result
    }

    // MARK: Phases

    private func undo(on connection: MySQLConnection) throws -> Int {
        var deleted = 0
        for chunk in paddedChunks(undos) {
            let result = try connection.query(
                """
                DELETE FROM reservation_journal
                WHERE status = 'RESERVED' AND (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(sku), ?)")))
                """,
                chunk.flatMap { $0.key.binds + [.string($0.reserveEventId)] }
            )
            deleted += Int(result.affectedRows)
            // The codes the undone reserve held: usable again once their assignment is gone.
            _ = try connection.query(
                """
                DELETE FROM code_assignments
                WHERE (order_id, biz_id, sku_id, reserve_event) IN (\(tuples(chunk.count, "(?, ?, \(sku), ?)")))
                """,
                chunk.flatMap { $0.key.binds + [.string($0.reserveEventId)] }
            )
        }
        return deleted
    }

    private func reserve(on connection: MySQLConnection, into result: inout JournalBatchResult) throws {
        guard !reserves.isEmpty else { return }
        // Rows that exist already (a redelivery, sync mode's commit, or a duplicate) are read, not written: an
        // insert that meets an existing key would lock the gap before it. Indexed by position in `reserves`.
        var existing = [(status: String, reserveEvent: String)?](repeating: nil, count: reserves.count)
        for chunk in paddedChunks(firstReserves) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 3)
            for index in chunk { reserves[index].key.appendBinds(to: &binds) }
            let rows = try connection.query(
                """
                SELECT order_id, biz_id, sku_id, status, reserve_event FROM reservation_journal
                WHERE (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(sku))")))
                """,
                binds
            ).rows
            guard !rows.isEmpty else { continue }
            let positions = Dictionary(chunk.map { (reserves[$0].key, $0) }, uniquingKeysWith: { first, _ in first })
            for row in rows {
                guard let orderId = row.string("order_id"), let bizId = row.string("biz_id"),
                    let skuId = row.uint64("sku_id"),
                    let position = positions[LineKey(orderId: orderId, bizId: bizId, skuId: skuId)]
                else { continue }
                existing[position] = (row.string("status") ?? "", row.string("reserve_event") ?? "")
            }
        }

        let missing = firstReserves.filter { existing[$0] == nil }
        for chunk in exactChunks(missing) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 8)
            for index in chunk {
                let line = reserves[index]
                line.key.appendBinds(to: &binds)
                binds.append(line.userId.map(MySQLValue.string) ?? .null)
                binds.append(.int(line.quantity))
                binds.append(.string(line.expiresAt))
                binds.append(.string(line.eventId))
                binds.append(line.requestFingerprint.map(MySQLValue.string) ?? .null)
            }
            let inserted = try insertingConcurrently(
                connection,
                """
                INSERT INTO reservation_journal
                    (order_id, biz_id, sku_id, user_id, quantity, status, expires_at, reserve_event, request_fp)
                VALUES \(tuples(chunk.count, "(?, ?, \(sku), ?, ?, 'RESERVED', ?, ?, SHA1(?))"))
                """,
                binds
            )
            result.rowsInserted += Int(inserted.affectedRows)
        }
        // The codes of the rows written now, in the same transaction (a line's row and its codes come together).
        let assignments = missing.flatMap { index in reserves[index].codes.map { (reserves[index], $0) } }
        for chunk in exactChunks(assignments) {
            var binds: [MySQLValue] = []
            binds.reserveCapacity(chunk.count * 5)
            for (line, code) in chunk {
                line.key.appendBinds(to: &binds)
                binds.append(.string(code))
                binds.append(.string(line.eventId))
            }
            _ = try connection.query(
                """
                INSERT IGNORE INTO code_assignments (order_id, biz_id, sku_id, code, reserve_event)
                VALUES \(tuples(chunk.count, "(?, ?, \(sku), ?, ?)"))
                """,
                binds
            )
        }
        for index in missing {
            existing[index] = ("RESERVED", reserves[index].eventId)
        }

        for (index, line) in reserves.enumerated() {
            guard let row = existing[firstOfLine[index]], row.reserveEvent != line.eventId else { continue }
            result.duplicates.append(
                JournalBatchResult.DuplicateLine(
                    orderId: line.key.orderId, bizId: line.key.bizId, skuId: line.key.skuId, quantity: line.quantity,
                    existingStatus: row.status, eventId: line.eventId, existingReserveEvent: row.reserveEvent
                )
            )
        }
    }

    private func update(_ change: StatusChange, on connection: MySQLConnection) throws -> Int {
        var updated = 0
        for chunk in paddedChunks(change.keys) {
            let result = try connection.query(
                """
                UPDATE reservation_journal SET status = ?
                WHERE status = ? AND (order_id, biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?, \(sku))")))
                """,
                [.string(change.to), .string(change.from)] + chunk.flatMap(\.binds)
            )
            updated += Int(result.affectedRows)
        }
        return updated
    }

    private func applyStock(on connection: MySQLConnection, into result: inout JournalBatchResult) throws {
        guard !ledger.isEmpty else { return }
        // Lines whose ledger row exists were applied by an earlier delivery. A row committed by a concurrent
        // transaction after this read makes the ledger insert below fail, and the batch is retried.
        var applied: Set<String> = []
        for chunk in paddedChunks(ledger.map(\.source)) {
            let rows = try connection.query(
                "SELECT source FROM stock_ledger WHERE source IN (\(tuples(chunk.count, "?")))",
                chunk.map(MySQLValue.string)
            ).rows
            for row in rows {
                if let source = row.string("source") { applied.insert(source) }
            }
        }
        let pending = ledger.filter { !applied.contains($0.source) }
        guard !pending.isEmpty else { return }

        var deltas: [StockItemID: Int64] = [:]
        for line in pending {
            deltas[line.item, default: 0] += line.delta
        }
        let items = deltas.keys.sorted { ($0.bizId, $0.skuId) < ($1.bizId, $1.skuId) }

        // Lock the items' rows, in key order, and read their stock.
        var stockBefore: [StockItemID: Int64] = [:]
        func lockRows(_ items: [StockItemID]) throws {
            for chunk in paddedChunks(items) {
                let rows = try connection.query(
                    """
                    SELECT biz_id, sku_id, stock FROM stock
                    WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(sku))"))) FOR UPDATE
                    """,
                    chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
                ).rows
                for row in rows {
                    guard let bizId = row.string("biz_id"), let skuId = row.uint64("sku_id"), let stock = row.int64("stock")
                    else { continue }
                    stockBefore[StockItemID(bizId: bizId, skuId: skuId)] = stock
                }
            }
        }
        try lockRows(items)
        // An item without a row (deleted by hand while Redis still sold it) is reported, and gets a row of stock 0
        // that this batch's lines then move: the sale is recorded (the reconciler shows the difference) instead of
        // being acknowledged without a trace.
        result.missingStockItems = items.filter { stockBefore[$0] == nil }
        if !result.missingStockItems.isEmpty {
            for chunk in exactChunks(result.missingStockItems) {
                _ = try connection.query(
                    """
                    INSERT IGNORE INTO stock (biz_id, sku_id, stock, version, created_at, updated_at)
                    VALUES \(tuples(chunk.count, "(?, \(sku), 0, 1, NOW(3), NOW(3))"))
                    """,
                    chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
                )
            }
            try lockRows(result.missingStockItems)
        }
        let present = items.filter { stockBefore[$0] != nil }

        // One change per item: each row is in exactly one statement, which adds the item's summed delta.
        for chunk in paddedChunks(present, limit: JournalRepository.maxItemsPerStockUpdate) {
            _ = try connection.query(
                """
                UPDATE stock
                SET stock = stock + CASE \(tuples(chunk.count, "WHEN biz_id = ? AND sku_id = \(sku) THEN CAST(? AS SIGNED)", separator: " ")) END,
                    version = version + 1
                WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, \(sku))")))
                """,
                chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId), .int(deltas[item] ?? 0)] }
                    + chunk.flatMap { item in [.string(item.bizId), skuValue(item.skuId)] }
            )
        }

        // The rows are locked, so the stock after the batch is what was read plus what was added.
        let rows = pending.compactMap { line -> (LedgerLine, Int64)? in
            guard let before = stockBefore[line.item], let delta = deltas[line.item] else { return nil }
            return (line, before + delta)
        }
        for chunk in exactChunks(rows) {
            let inserted = try insertingConcurrently(
                connection,
                """
                INSERT INTO stock_ledger (biz_id, sku_id, delta, stock_after, reason, source)
                VALUES \(tuples(chunk.count, "(?, \(sku), ?, ?, ?, ?)"))
                """,
                chunk.flatMap { line, after in
                    [
                        .string(line.item.bizId), skuValue(line.item.skuId), .int(line.delta), .int(after),
                        .string(line.reason), .string(line.source),
                    ]
                }
            )
            result.stockChanges += Int(inserted.affectedRows)
        }
    }
}

// MARK: - SQL helpers

/// Runs an INSERT of rows this transaction found missing a moment ago. A duplicate key means another transaction
/// wrote one of them since (the same events applied concurrently): that is turned into `.deadlock`, so the batch
/// rolls back and is retried, and the retry finds those rows.
private func insertingConcurrently(_ connection: MySQLConnection, _ sql: String, _ binds: [MySQLValue]) throws -> MySQLResult {
    do {
        return try connection.query(sql, binds)
    } catch let error as MySQLError where error.code == .duplicateKey {
        throw MySQLError(
            code: .deadlock, errno: error.errno, sqlState: error.sqlState,
            message: "a row appeared while the batch ran (applied concurrently): \(error.message)"
        )
    }
}

/// The placeholder of every sku_id value. sku_id is BIGINT UNSIGNED but `MySQLValue` carries signed integers: ids up
/// to `Int64.max` bind as `.int`, larger ones as their decimal text (`skuValue`). A bare text parameter is not
/// compared exactly with the column: in an IN list of several such values MariaDB reads them through a double, and
/// 18446744073709551614 matches the row of 18446744073709551615. The cast makes every value an exact unsigned integer
/// (and keeps the IN lists range scans of the unique key).
private let sku = "CAST(? AS UNSIGNED)"

/// A sku_id parameter, for the `sku` placeholder.
private func skuValue(_ skuId: UInt64) -> MySQLValue {
    if let signed = Int64(exactly: skuId) { return .int(signed) }
    return .string(String(skuId))
}

/// `count` copies of `tuple`, separated by commas.
func tuples(_ count: Int, _ tuple: String, separator: String = ", ") -> String {
    Array(repeating: tuple, count: count).joined(separator: separator)
}

/// Chunks of at most `limit` elements, for INSERTs, which must not repeat a row.
func exactChunks<T>(_ items: [T], limit: Int = JournalRepository.maxRowsPerStatement) -> [ArraySlice<T>] {
    stride(from: 0, to: items.count, by: limit).map { items[$0..<min($0 + limit, items.count)] }
}

/// Chunks of at most `limit` elements (a power of two), the last one padded to the next power of two by repeating
/// its last element, for statements that a repeated key does not change: an IN list matches the same rows, a CASE
/// takes its first matching branch. Each such statement then has at most log2(limit) shapes, which the
/// connections' prepared-statement caches keep, instead of one per batch size.
///
/// Never one element: MariaDB turns `(a, b) IN ((?, ?))` into a row equality that its single-table UPDATE and
/// DELETE cannot use an index for, and scans the whole table (EXPLAIN: `index PRIMARY`, 1.7M rows examined for
/// one journal row; the stock row's lock held meanwhile). Two equal tuples keep the range plan.
func paddedChunks<T>(_ items: [T], limit: Int = JournalRepository.maxRowsPerStatement) -> [ArraySlice<T>] {
    exactChunks(items, limit: limit).map { chunk in
        var size = 2
        while size < chunk.count { size <<= 1 }
        guard size > chunk.count, let last = chunk.last else { return chunk }
        return (Array(chunk) + repeatElement(last, count: size - chunk.count))[...]
    }
}

// MARK: - Time

/// DATETIME(3) text in UTC, as the journal stores `expires_at`, to and from Unix milliseconds.
enum JournalTime {
    /// "YYYY-MM-DD HH:MM:SS.mmm" in UTC; clamped to the years 1970-9999.
    static func datetime(milliseconds: Int64) -> String {
        let clamped = min(max(milliseconds, 0), 253_402_300_799_999)
        let days = clamped / 86_400_000
        var rest = clamped % 86_400_000
        let (year, month, day) = civil(fromDays: days)
        let hour = rest / 3_600_000
        rest %= 3_600_000
        let minute = rest / 60_000
        rest %= 60_000
        let second = rest / 1000
        let millisecond = rest % 1000
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) \(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(millisecond, 3))"
    }

    /// Unix milliseconds of "YYYY-MM-DD HH:MM:SS[.fff...]" read as UTC; nil when the text is not of that form.
    static func milliseconds(fromDatetime text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 19 else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for index in range {
                let byte = bytes[index]
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var millisecond: Int64 = 0
        if bytes.count > 20, bytes[19] == UInt8(ascii: ".") {
            let digits = min(bytes.count, 23)
            guard let fraction = number(20..<digits) else { return nil }
            millisecond = fraction
            for _ in digits..<23 { millisecond *= 10 }
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millisecond
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count since 1970-01-01.
    private static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
