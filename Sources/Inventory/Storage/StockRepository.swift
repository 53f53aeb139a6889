import MySQLClient

/// A stock item's row in MySQL, the system of record.
public struct StockRow: Sendable, Equatable {
    /// The business line that owns the stock.
    public let bizId: String
    /// The SKU.
    public let skuId: UInt64
    /// On-hand stock as MySQL knows it.
    public let stock: Int64
    /// Whether the item never runs out.
    public let infinite: Bool
    /// Low-stock threshold.
    public let dangerNum: Int64
    /// How far below zero a backorder reserve may take available stock.
    public let backorderLimit: Int64
    /// At most this many units per user (0: no limit).
    public let userLimit: Int64
    /// The window the per-user limit counts over, in seconds (0: the item's whole life).
    public let userWindowSeconds: Int64

    /// Creates a row value.
    public init(
        bizId: String, skuId: UInt64, stock: Int64, infinite: Bool, dangerNum: Int64, backorderLimit: Int64,
        userLimit: Int64 = 0, userWindowSeconds: Int64 = 0
    ) {
        self.bizId = bizId
        self.skuId = skuId
        self.stock = stock
        self.infinite = infinite
        self.dangerNum = dangerNum
        self.backorderLimit = backorderLimit
        self.userLimit = userLimit
        self.userWindowSeconds = userWindowSeconds
    }

    /// Reads the columns `stockColumns` names.
    init(_ row: MySQLRow, bizId: String, skuId: UInt64) {
        self.init(
            bizId: bizId, skuId: skuId, stock: row.int64("stock") ?? 0, infinite: row.bool("is_infinite") ?? false,
            dangerNum: row.int64("danger_num") ?? 0, backorderLimit: row.int64("backorder_limit") ?? 0,
            userLimit: row.int64("user_limit") ?? 0, userWindowSeconds: row.int64("user_window_seconds") ?? 0
        )
    }

    /// The columns `init(_:bizId:skuId:)` reads.
    static let columns = "stock, is_infinite, danger_num, backorder_limit, user_limit, user_window_seconds"

    /// The index of the per-user window `milliseconds` falls in (0 when the limit counts over the item's life).
    public func userWindow(atMilliseconds milliseconds: Int64) -> Int64 {
        userWindowSeconds > 0 ? milliseconds / (userWindowSeconds * 1000) : 0
    }
}

/// One user's units of an item in the current per-user window, as the journal counts them.
public struct UserUsage: Sendable, Equatable {
    public let userId: String
    public let units: Int64
}

/// One change to on-hand stock in MySQL, recorded in the ledger under a unique `source`.
public struct StockChange: Sendable {
    /// The business line that owns the stock.
    public var bizId: String
    /// The SKU; at most `Int64.max`, the largest value the API accepts.
    public var skuId: UInt64
    /// Added to on-hand stock; negative removes. A row that does not exist yet starts from 0.
    public var delta: Int64
    /// Why, for the ledger (at most 32 characters): "set", "adjustment", "confirm", "refund", ...
    public var reason: String
    /// What caused the change, unique across all changes (at most 191 characters): replaying a change with the
    /// same source applies nothing.
    public var source: String
    /// New "never runs out" setting; nil keeps the current value (false for a new row).
    public var infinite: Bool?
    /// New low-stock threshold; nil keeps the current value (0 for a new row).
    public var dangerNum: Int64?
    /// New backorder limit; nil keeps the current value (0 for a new row).
    public var backorderLimit: Int64?
    /// New per-user limit; nil keeps the current value (0, none, for a new row).
    public var userLimit: Int64?
    /// New per-user window in seconds; nil keeps the current value (0, the item's life, for a new row).
    public var userWindowSeconds: Int64?
    /// The Redis half the change belongs to (an adjustment's: lua/lib/fence.lua), recorded with it: when attempts of
    /// one adjustment each made a Redis half, the ledger says which of them MySQL has.
    public var half: String?
    /// Not committed after this (rolled back instead): a retry may take an adjustment's Redis half over once it is a
    /// fence's lifetime old, and reverse it should its own MySQL half fail; this attempt's commit must not land after.
    public var deadline: ContinuousClock.Instant?
    /// A PUT's: the mark of the Redis item its half was made in (lua/lib/fence.lua, 'epoch/repairs'). Not committed
    /// when the item has another mark by then (rolled back instead, `HalfGone`): it was rebuilt or repaired from MySQL
    /// without this half, and a later PUT may have set the stock from that item; adding this PUT's delta, which was
    /// taken from the item before, would count on-hand twice.
    public var itemMark: String?

    /// Creates a change; the settings default to "leave unchanged".
    public init(
        bizId: String,
        skuId: UInt64,
        delta: Int64,
        reason: String,
        source: String,
        infinite: Bool? = nil,
        dangerNum: Int64? = nil,
        backorderLimit: Int64? = nil,
        userLimit: Int64? = nil,
        userWindowSeconds: Int64? = nil,
        half: String? = nil
    ) {
        self.bizId = bizId
        self.skuId = skuId
        self.delta = delta
        self.reason = reason
        self.source = source
        self.infinite = infinite
        self.dangerNum = dangerNum
        self.backorderLimit = backorderLimit
        self.userLimit = userLimit
        self.userWindowSeconds = userWindowSeconds
        self.half = half
    }
}

/// What MySQL's ledger says of the Redis half a change came from.
public enum LedgerHalf: Sendable, Equatable {
    /// The half of this name (lua/lib/fence.lua).
    case named(String)
    /// A row that names no half: written before halves had names, or for a half whose key was from then.
    case unnamed
    /// The row could not be read.
    case unknown

    init(_ recorded: String?) {
        self = recorded.map(LedgerHalf.named) ?? .unnamed
    }
}

/// What `StockRepository.apply` did.
public enum StockChangeOutcome: Sendable, Equatable {
    /// The change was applied; on-hand stock is now `stockAfter`, and the stock row's `version` the change made (nil
    /// when found applied after its COMMIT got no answer): a Redis item written from a read of the row before it
    /// (`mysql_version` below this) does not have the change (lua/admin_done.lua).
    case applied(stockAfter: Int64, version: Int64?)
    /// A change with the same source was applied before; nothing changed. `half`: the Redis half the ledger records
    /// for it.
    case duplicate(half: LedgerHalf)

    /// The stock row's version the change made, when it was applied now.
    public var version: Int64? {
        if case .applied(_, let version) = self { return version }
        return nil
    }
}

/// MySQL access for the stock table and its ledger.
public struct StockRepository: Sendable {
    /// Attempts of one change when InnoDB picks its transaction as a deadlock victim (two first-time upserts of
    /// the same item can deadlock on the insert-intention locks). The rollback undid everything, and the ledger's
    /// unique source keeps a retry from applying twice.
    static let deadlockAttempts = 3

    let client: MySQLClient

    /// Creates a repository on `client`.
    public init(client: MySQLClient) {
        self.client = client
    }

    /// Makes the item's stock row if it has none: stock 0, no settings (a PUT of a new item then moves it by its
    /// delta, like any other). Returns whether it made one.
    @discardableResult
    public func ensureRow(bizId: String, skuId: UInt64) async throws -> Bool {
        guard let sku = Self.skuValue(skuId) else {
            throw MySQLError(code: .queryFailed, sqlState: "22003", message: "skuId \(skuId) is above \(Int64.max)")
        }
        let result = try await client.query(
            """
            INSERT IGNORE INTO stock (biz_id, sku_id, stock, version, created_at, updated_at)
            VALUES (?, ?, 0, 1, NOW(3), NOW(3))
            """,
            [.string(bizId), sku]
        )
        return result.affectedRows == 1
    }

    /// The change the ledger recorded for `source` (its delta, reason and Redis half), nil when it has none.
    public func ledgerEntry(source: String) async throws -> (delta: Int64, reason: String, half: String?)? {
        let result = try await client.query(
            "SELECT delta, reason, half FROM stock_ledger WHERE source = ? LIMIT 1", [.string(source)]
        )
        guard let row = result.rows.first, let delta = row.int64("delta") else { return nil }
        return (delta, row.string("reason") ?? "", row.string("half"))
    }

    /// Applies `change` at most once per source, in one transaction: the ledger row first (its unique source
    /// catches a replay before anything else is touched), then the stock row, created if missing, then the
    /// ledger row's `stock_after`.
    ///
    /// `fences` and `drainMark` (the item's shard's, `KeyLayout.drainMark(item:)`): the change's Redis half is made,
    /// and the transaction raises Redis's drain mark before its COMMIT, as a journal batch does (`DrainMarkSQL`): a
    /// Redis that went back in time to before the change is then found out by the next check. One whose mark is behind
    /// already is forgotten (`BatchFences.forgetWentBack`, the change's Redis half with it) and the change is not
    /// applied (`unavailable`): its Redis half was decided on the old counts (a PUT's delta from the old on-hand, an
    /// adjustment's check against the old reserved), so only a retry against the rebuilt item may make it.
    public func apply(
        _ change: StockChange, fences: (any BatchFences)? = nil, drainMark: String? = nil
    ) async throws -> StockChangeOutcome {
        guard let skuId = Self.skuValue(change.skuId) else {
            throw MySQLError(code: .queryFailed, sqlState: "22003", message: "skuId \(change.skuId) is above \(Int64.max)")
        }
        var attempt = 1
        while true {
            do {
                let (stockAfter, version) = try await transaction(change, skuId: skuId, fences: fences, drainMark: drainMark)
                return .applied(stockAfter: stockAfter, version: version)
            } catch let wentBack as RedisWentBack {
                // (Whatever the forget meets, the change rolled back: its errors are not the change's outcome.)
                do {
                    try await fences?.forgetWentBack(wentBack.marks, journal: JournalRepository(client: client))
                } catch {
                    throw InventoryError.unavailable("Redis went back in time, and forgetting it failed (\(error)); nothing was changed")
                }
                throw InventoryError.unavailable("Redis went back in time and was forgotten; nothing was changed; retry")
            } catch is DuplicateSource {
                // (No row, the other transaction having rolled back since, cannot be told from one not read.)
                guard let entry = try? await ledgerEntry(source: change.source) else { return .duplicate(half: .unknown) }
                return .duplicate(half: LedgerHalf(entry.half))
            } catch let error as MySQLError where error.code == .deadlock && attempt < Self.deadlockAttempts {
                attempt += 1
            } catch let error as MySQLError where error.code == .commitOutcomeUnknown {
                return try await settle(change, unknownCommit: error)
            }
        }
    }

    /// `apply`'s transaction; with a drain mark, the mark's row locked after the stock row and Redis's mark raised
    /// before COMMIT. READ COMMITTED: the other shards' marks read beside it (`MySQLSession.raiseDrainMarks`) are the
    /// latest committed, not the snapshot the stock row's read fixed before the mark row's lock was waited for.
    private func transaction(
        _ change: StockChange, skuId: MySQLValue, fences: (any BatchFences)?, drainMark: String?
    ) async throws -> (Int64, Int64) {
        guard let fences, let drainMark else {
            return try await client.withTransaction { connection in
                let applied = try Self.apply(change, skuId: skuId, on: connection)
                try Self.refuseOneTimePool(change, skuId: skuId, on: connection)
                return applied
            }
        }
        return try await client.withTransaction(isolation: .readCommitted) { session in
            let applied = try await session.perform { connection in
                let applied = try Self.apply(change, skuId: skuId, on: connection)
                try Self.refuseOneTimePool(change, skuId: skuId, on: connection)
                return applied
            }
            // The stock row is held from the update above to the COMMIT, and a rebuild or a repair of the item reads it
            // FOR UPDATE and writes Redis before it lets go: a mark read now is the item's until the COMMIT.
            if let mark = change.itemMark, let now = try await fences.itemMark(StockItemID(bizId: change.bizId, skuId: change.skuId)),
                now != mark
            {
                throw HalfGone()
            }
            try await session.raiseDrainMarks([drainMark], fences: fences)
            // (The deadline again: the Redis call above took its time.)
            try await session.perform { connection in try Self.checkDeadline(change) }
            return applied
        }
    }

    /// A one-time pool's stock is its codes: a PUT or an adjustment whose Redis half was made before the item's pool
    /// reached Redis is refused where it meets the pool, after its upsert of the stock row. The pool is made holding
    /// that row FOR UPDATE, and refused while its stock is not 0 (CodePoolRepository.setPool): made before the upsert,
    /// it is read here (a locking read: the latest committed); after, it waits for this COMMIT and sees the stock.
    /// Before, MySQL got the stock, and the item, stock without codes, could be neither sold nor rebuilt whole (503
    /// for good). (A code upload's own change is how such a pool's stock grows: it does not come here.)
    static func refuseOneTimePool(_ change: StockChange, skuId: MySQLValue, on connection: MySQLConnection) throws {
        let pool = try connection.query(
            "SELECT kind FROM code_pools WHERE biz_id = ? AND sku_id = ? LOCK IN SHARE MODE", [.string(change.bizId), skuId]
        ).rows.first
        if pool?.string("kind") == CodePoolKind.oneTime.column { throw OneTimePool() }
    }

    /// Reads of the ledger `settle` tries before the outcome is left unknown (pauses 0.1, 0.4 s between), and for
    /// how long after the first one a failed read is tried again.
    static let settleAttempts = 3
    static let settleWindow = Duration.seconds(5)

    /// The COMMIT of `change` got no answer: its ledger row says whether it happened. The read locks the row's
    /// unique source, so a transaction the server is still finishing is waited for, not missed. Throws
    /// `NotApplied` when it did not happen, and the original error when the ledger cannot be read either. The read
    /// is tried `settleAttempts` times: what cut the commit's connection often takes the next one too (the pool's
    /// other connections, a server busy for a moment), and an answer saves the caller an unknown outcome.
    func settle(_ change: StockChange, unknownCommit: MySQLError) async throws -> StockChangeOutcome {
        var result: MySQLResult?
        let start = ContinuousClock.now
        for attempt in 1...Self.settleAttempts {
            do {
                // In a transaction of its own: a locking read outside one is documented to take no lock.
                result = try await client.withTransaction { connection in
                    try connection.query(
                        "SELECT delta, stock_after, half FROM stock_ledger WHERE source = ? LOCK IN SHARE MODE", [.string(change.source)]
                    )
                }
                break
            } catch {
                // Only while the change is young: its Redis half's fence lapses after a minute (lua/lib/fence.lua),
                // and an answer after a reconciler's repair could undo the change a second time.
                guard attempt < Self.settleAttempts, ContinuousClock.now - start < Self.settleWindow else { throw unknownCommit }
                try? await Task.sleep(for: .milliseconds(100 * attempt * attempt))
            }
        }
        guard let result else { throw unknownCommit }
        guard let row = result.rows.first else { throw NotApplied(underlying: unknownCommit) }
        // The row of another attempt's half (the source is the adjustment's; this change wrote its own half's name):
        // this change did not commit, it is a duplicate of that one.
        if let half = change.half, row.string("half") != half {
            return .duplicate(half: LedgerHalf(row.string("half")))
        }
        return .applied(stockAfter: row.int64("stock_after") ?? 0, version: nil)
    }

    /// The Redis half MySQL's ledger has the change of `source` from: nil when it has no such row, .some(nil) when its
    /// row names none. A locking read in a transaction of its own: a transaction writing the row is waited for.
    func lockedLedgerHalf(source: String) async throws -> String?? {
        let result = try await client.withTransaction { connection in
            try connection.query("SELECT half FROM stock_ledger WHERE source = ? LOCK IN SHARE MODE", [.string(source)])
        }
        guard let row = result.rows.first else { return nil }
        return .some(row.string("half"))
    }

    /// A change whose COMMIT got no answer, found not to be in MySQL: it did not take effect.
    public struct NotApplied: Error, CustomStringConvertible {
        public let underlying: MySQLError
        public var description: String { "stock change not applied (the ledger does not have it): \(underlying)" }
    }

    /// The item's row, or nil when MySQL has none.
    public func row(bizId: String, skuId: UInt64) async throws -> StockRow? {
        // A skuId apply cannot store cannot have a row.
        guard let sku = Self.skuValue(skuId) else { return nil }
        let result = try await client.query(
            "SELECT \(StockRow.columns) FROM stock WHERE biz_id = ? AND sku_id = ?", [.string(bizId), sku]
        )
        guard let row = result.rows.first else { return nil }
        return StockRow(row, bizId: bizId, skuId: skuId)
    }

    /// What the init path rebuilds a Redis item from, nil when MySQL has no such item.
    /// A live (RESERVED) journal line of an item: which order holds how much, and when the hold runs out (Unix ms).
    public typealias LiveHold = (orderId: String, quantity: Int64, expiresAtMilliseconds: Int64)

    // MARK: - Transaction body

    /// Thrown inside the transaction so that `withTransaction` rolls it back; `apply` turns it into `.duplicate`.
    struct DuplicateSource: Error {}

    /// Returns the stock after the change and the row's version.
    static func apply(_ change: StockChange, skuId: MySQLValue, on connection: MySQLConnection) throws -> (Int64, Int64) {
        try checkDeadline(change)
        let bizId = MySQLValue.string(change.bizId)
        let ledger: MySQLResult
        do {
            ledger = try connection.query(
                """
                INSERT INTO stock_ledger (biz_id, sku_id, delta, stock_after, reason, source, half, created_at)
                VALUES (?, ?, ?, 0, ?, ?, ?, NOW(3))
                """,
                [
                    bizId, skuId, .int(change.delta), .string(change.reason), .string(change.source),
                    change.half.map(MySQLValue.string) ?? .null,
                ]
            )
        } catch let error as MySQLError where error.code == .duplicateKey {
            throw DuplicateSource()
        }
        _ = try connection.query(
            """
            INSERT INTO stock (biz_id, sku_id, stock, is_infinite, danger_num, backorder_limit, user_limit,
                user_window_seconds, version, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, NOW(3), NOW(3))
            ON DUPLICATE KEY UPDATE
                stock = stock + ?,
                is_infinite = COALESCE(?, is_infinite),
                danger_num = COALESCE(?, danger_num),
                backorder_limit = COALESCE(?, backorder_limit),
                user_limit = COALESCE(?, user_limit),
                user_window_seconds = COALESCE(?, user_window_seconds),
                version = version + 1,
                updated_at = NOW(3)
            """,
            [
                bizId, skuId, .int(change.delta),
                .int(change.infinite == true ? 1 : 0), .int(change.dangerNum ?? 0), .int(change.backorderLimit ?? 0),
                .int(change.userLimit ?? 0), .int(change.userWindowSeconds ?? 0),
                .int(change.delta),
                change.infinite.map { .int($0 ? 1 : 0) } ?? .null,
                change.dangerNum.map(MySQLValue.int) ?? .null,
                change.backorderLimit.map(MySQLValue.int) ?? .null,
                change.userLimit.map(MySQLValue.int) ?? .null,
                change.userWindowSeconds.map(MySQLValue.int) ?? .null,
            ]
        )
        // The upsert holds the row's exclusive lock until commit, so this reads the value this change produced.
        let current = try connection.query("SELECT stock, version FROM stock WHERE biz_id = ? AND sku_id = ?", [bizId, skuId])
        guard let stockAfter = current.rows.first?.int64("stock"), let version = current.rows.first?.int64("version"),
            let ledgerId = Int64(exactly: ledger.lastInsertID)
        else {
            throw MySQLError(code: .queryFailed, message: "stock row or ledger id missing right after writing them")
        }
        _ = try connection.query("UPDATE stock_ledger SET stock_after = ? WHERE id = ?", [.int(stockAfter), .int(ledgerId)])
        // Last before COMMIT (a wait for a connection or a lock may have taken long).
        try checkDeadline(change)
        return (stockAfter, version)
    }

    /// Throws (rolling the transaction back) once `change` is past its deadline.
    static func checkDeadline(_ change: StockChange) throws {
        if let deadline = change.deadline, ContinuousClock.now >= deadline { throw PastDeadline() }
    }

    /// A change not committed because the item has a one-time code pool (made since its Redis half; rolled back).
    public struct OneTimePool: Error, CustomStringConvertible {
        public var description: String { "not committed: the item has a one-time code pool, whose stock is its codes" }
    }

    /// A PUT not committed because its Redis half is no longer in the item (`StockChange.itemMark`; rolled back: MySQL
    /// does not have it).
    public struct HalfGone: Error, CustomStringConvertible {
        public var description: String {
            "not committed: the item was rebuilt from MySQL while this change was under way; nothing was changed; retry"
        }
    }

    /// A change not committed because it was past its deadline (rolled back: MySQL does not have it).
    public struct PastDeadline: Error, CustomStringConvertible {
        public var description: String {
            "not committed: the change's Redis half is too old (a retry may have taken it over since); retry"
        }
    }

    /// sku_id is BIGINT UNSIGNED but `MySQLValue` carries signed integers; ids up to `Int64.max` (what the API
    /// accepts) bind exactly as `.int`.
    static func skuValue(_ skuId: UInt64) -> MySQLValue? {
        Int64(exactly: skuId).map(MySQLValue.int)
    }
}
