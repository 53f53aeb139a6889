import Foundation
import Logging
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// One stock item on which Redis and MySQL disagree, with the numbers on both sides.
public struct ReconcileDifference: Sendable, Equatable, Encodable {
    public let bizId: String
    public let skuId: UInt64
    /// MySQL's stock (system of record).
    public let dbStock: Int64
    /// Sum of the item's RESERVED journal lines.
    public let journalReserved: Int64
    /// What Redis holds: stock_num, used_stock_num, confirmed_unapplied, refund_unapplied.
    public let redis: Counters
    /// What Redis should hold, given MySQL and the work in flight.
    public let expected: Counters
    /// Whether fix mode repaired it.
    public var fixed: Bool

    /// An item's four counters.
    public struct Counters: Sendable, Equatable, Encodable, CustomStringConvertible {
        public var stockNum: Int64
        public var usedStockNum: Int64
        public var confirmedUnapplied: Int64
        public var refundUnapplied: Int64

        var arguments: [String] {
            [String(stockNum), String(usedStockNum), String(confirmedUnapplied), String(refundUnapplied)]
        }

        public var description: String {
            "stock_num=\(stockNum) used_stock_num=\(usedStockNum) confirmed_unapplied=\(confirmedUnapplied) refund_unapplied=\(refundUnapplied)"
        }
    }

    public var item: StockItemID { StockItemID(bizId: bizId, skuId: skuId) }
}

/// A code pool whose codes do not agree with its counts, or with MySQL. Reported, not fixed: the repair is a
/// rebuild of the item from MySQL (drop its hash and code set once nothing of it is in flight).
public struct CodeDifference: Sendable, Equatable, Encodable {
    public let bizId: String
    public let skuId: UInt64
    /// What disagrees, with the numbers or codes.
    public let detail: String

    public var item: StockItemID { StockItemID(bizId: bizId, skuId: skuId) }
}

/// The outcome of one reconciliation.
public struct ReconcileReport: Sendable, Encodable {
    public var itemsChecked = 0
    /// Items MySQL has and Redis does not (cold or evicted): not a difference, the init path loads them on use.
    public var itemsNotLoaded = 0
    /// Items a stock change (PUT, adjustment) was between its Redis and MySQL halves on: not judged this time.
    public var itemsInFlight = 0
    public var differences: [ReconcileDifference] = []
    /// Code pools checked, and what disagreed about their codes.
    public var poolsChecked = 0
    public var codeDifferences: [CodeDifference] = []
    public var seconds = 0.0

    public var clean: Bool { differences.isEmpty && codeDifferences.isEmpty }
}

/// Why a reconciliation could not run.
public enum ReconcileError: Error, Sendable, CustomStringConvertible {
    /// Another reconciler holds the lease.
    case leaseHeld
    /// A store failed.
    case store(String)

    public var description: String {
        switch self {
        case .leaseHeld: return "another reconciliation is running (lease held)"
        case .store(let detail): return detail
        }
    }
}

/// Proves Redis and MySQL agree, item by item, exactly:
/// `db_stock == stock_num + used_stock_num + confirmed_unapplied − refund_unapplied` once the confirms and refunds
/// MySQL has committed but Redis has not yet settled are counted, and `used_stock_num == Σ live reservations`
/// (the journal's RESERVED lines plus and minus the outbox entries the worker has not applied yet).
///
/// It streams through MySQL's stock table a page at a time (bounded memory). For each page one Lua script reads
/// the Redis counters and the in-flight outbox entries at one instant; MySQL is read afterwards, and anything the
/// worker applied in between is recognised by its identity (journal `reserve_event`, ledger `source`). An item
/// that looks different is checked again with its stock row and journal lines locked (FOR UPDATE), which stops
/// the worker from moving it while it is judged; only that check reports a difference, and in fix mode repairs
/// it (compare-and-set on the counters it judged).
public final class Reconciler: Sendable {
    private let redis: any RedisRouter
    private let runner: RedisScriptRunner
    private let mysql: MySQLClient
    /// Where the first, unlocked pass reads: a replica when one is configured, else the primary.
    private let reader: MySQLClient
    private let scripts: InventoryScripts
    private let keys: KeyLayout
    private let logger: Logger
    private let pageSize: Int

    /// - Parameters:
    ///   - mysql: the primary; differences are confirmed there, with the row locked.
    ///   - replica: read by the first pass when given, to keep the bulk of the reading off the primary. A replica
    ///     that lags only produces items to check again on the primary, never a reported difference.
    public init(
        redis: any RedisRouter, mysql: MySQLClient, replica: MySQLClient? = nil, scripts: InventoryScripts, keys: KeyLayout,
        logger: Logger, pageSize: Int = 1000
    ) {
        self.redis = redis
        self.runner = RedisScriptRunner(client: redis)
        self.mysql = mysql
        self.reader = replica ?? mysql
        self.scripts = scripts
        self.keys = keys
        self.logger = logger
        self.pageSize = max(1, pageSize)
    }

    /// What one run covers.
    public enum Scope: Sendable {
        case all
        case business(String)
        case item(StockItemID)
    }

    /// Reconciles every item of the scope, holding the lease for the whole run.
    /// - Parameter progress: called after each page with the items checked so far.
    public func run(
        _ scope: Scope = .all, fix: Bool = false, progress: (@Sendable (ReconcileReport) -> Void)? = nil
    ) async throws -> ReconcileReport {
        let started = ContinuousClock.now
        let lease = try await acquireLease()
        do {
            let report = try await reconcile(scope, fix: fix, lease: lease, started: started, progress: progress)
            _ = try? await redis.send(Self.releaseLease(keys: keys, owner: lease), routingKey: keys.reconcileLease)
            return report
        } catch {
            _ = try? await redis.send(Self.releaseLease(keys: keys, owner: lease), routingKey: keys.reconcileLease)
            throw error
        }
    }

    private func reconcile(
        _ scope: Scope, fix: Bool, lease: String, started: ContinuousClock.Instant,
        progress: (@Sendable (ReconcileReport) -> Void)?
    ) async throws -> ReconcileReport {
        var report = ReconcileReport()
        var after: (String, UInt64)? = nil
        while true {
            let page: [StockPageRow]
            switch scope {
            case .item(let item): page = try await pageRows(only: item)
            case .business(let biz): page = try await pageRows(business: biz, after: after?.1)
            case .all: page = try await pageRows(after: after)
            }
            if page.isEmpty { break }
            try await renewLease(lease)
            try await check(page, fix: fix, into: &report)
            report.itemsChecked += page.count
            progress?(report)
            if case .item = scope { break }
            guard page.count == pageSize, let last = page.last else { break }
            after = (last.bizId, last.skuId)
        }
        report.seconds = Self.seconds(ContinuousClock.now - started)
        for difference in report.differences {
            logger.error(
                "reconcile difference",
                metadata: [
                    "item": "\(difference.item)", "dbStock": "\(difference.dbStock)", "redis": "\(difference.redis)",
                    "expected": "\(difference.expected)", "fixed": "\(difference.fixed)",
                ]
            )
        }
        for difference in report.codeDifferences {
            logger.error("reconcile code difference", metadata: ["item": "\(difference.item)", "detail": "\(difference.detail)"])
        }
        await record(report)
        InventoryMetrics.reconcileDifferences.increment(by: report.differences.count + report.codeDifferences.count)
        InventoryMetrics.reconcileFixed.increment(by: report.differences.filter(\.fixed).count)
        InventoryMetrics.reconcileLastDifferences.record(report.differences.count + report.codeDifferences.count)
        InventoryMetrics.reconcileItems.record(report.itemsChecked)
        return report
    }

    // MARK: - Pages

    struct StockPageRow {
        let bizId: String
        let skuId: UInt64
        let stock: Int64
        let infinite: Bool
    }

    private func pageRows(after: (String, UInt64)?) async throws -> [StockPageRow] {
        let result: MySQLResult
        if let after {
            result = try await mysqlCall {
                try await self.reader.query(
                    """
                    SELECT biz_id, sku_id, stock, is_infinite FROM stock
                    WHERE biz_id > ? OR (biz_id = ? AND sku_id > ?)
                    ORDER BY biz_id, sku_id LIMIT ?
                    """,
                    [.string(after.0), .string(after.0), skuValue(after.1), .int(Int64(pageSize))]
                )
            }
        } else {
            result = try await mysqlCall {
                try await self.reader.query(
                    "SELECT biz_id, sku_id, stock, is_infinite FROM stock ORDER BY biz_id, sku_id LIMIT ?",
                    [.int(Int64(pageSize))]
                )
            }
        }
        return result.rows.map(Self.pageRow)
    }

    private func pageRows(business: String, after: UInt64?) async throws -> [StockPageRow] {
        let result = try await mysqlCall {
            try await self.reader.query(
                """
                SELECT biz_id, sku_id, stock, is_infinite FROM stock
                WHERE biz_id = ? AND sku_id > ? ORDER BY sku_id LIMIT ?
                """,
                [.string(business), skuValue(after ?? 0), .int(Int64(self.pageSize))]
            )
        }
        return result.rows.map(Self.pageRow)
    }

    private func pageRows(only item: StockItemID) async throws -> [StockPageRow] {
        let result = try await mysqlCall {
            try await self.reader.query(
                "SELECT biz_id, sku_id, stock, is_infinite FROM stock WHERE biz_id = ? AND sku_id = ?",
                [.string(item.bizId), skuValue(item.skuId)]
            )
        }
        return result.rows.map(Self.pageRow)
    }

    private static func pageRow(_ row: MySQLRow) -> StockPageRow {
        StockPageRow(
            bizId: row.string("biz_id") ?? "", skuId: row.uint64("sku_id") ?? 0, stock: row.int64("stock") ?? 0,
            infinite: row.bool("is_infinite") ?? false
        )
    }

    // MARK: - Judging a page

    /// Redis at one instant for a page: counters and the in-flight entries touching it.
    struct Snapshot {
        var counters: [StockItemID: ReconcileDifference.Counters] = [:]
        var infinite: Set<StockItemID> = []
        var entries: [StockItemID: [Entry]] = [:]
        /// Items a stock change is between its Redis and MySQL halves on (lua/lib/fence.lua): in flight, not judged.
        var fenced: Set<StockItemID> = []
    }

    struct Entry {
        let kind: OutboxEvent.Kind
        let orderId: String
        let quantity: Int64
        let entryId: String
        let reserveEvent: String
        let marked: Bool
    }

    /// The MySQL side of the lines in flight: journal rows and ledger sources that exist now.
    struct Applied {
        /// (orderId, skuId) → (status, reserve_event) of the journal row.
        var rows: [String: (status: String, reserveEvent: String)] = [:]
        var ledger: Set<String> = []

        static func key(_ orderId: String, _ sku: UInt64) -> String { "\(orderId)\u{0}\(sku)" }

        /// The ledger source the journal writes for a confirm or refund line.
        static func source(_ kind: OutboxEvent.Kind, _ orderId: String, _ bizId: String, _ sku: UInt64) -> String {
            "\(kind.rawValue):\(orderId):\(bizId):\(sku)"
        }
    }

    private func check(_ page: [StockPageRow], fix: Bool, into report: inout ReconcileReport) async throws {
        let ids = page.map { StockItemID(bizId: $0.bizId, skuId: $0.skuId) }
        let snapshot = try await snapshot(ids)
        let live = try await journalReserved(ids, session: nil)
        let applied = try await appliedState(snapshot, session: nil)
        var suspicious: [StockPageRow] = []
        for row in page {
            let id = StockItemID(bizId: row.bizId, skuId: row.skuId)
            guard let counters = snapshot.counters[id] else {
                report.itemsNotLoaded += 1
                continue
            }
            if snapshot.fenced.contains(id) {
                report.itemsInFlight += 1
                continue
            }
            let expected = Self.expected(
                dbStock: row.stock, journalReserved: live[id] ?? 0, entries: snapshot.entries[id] ?? [], applied: applied,
                bizId: id.bizId, sku: id.skuId
            )
            if !Self.agrees(counters, expected, infinite: row.infinite || snapshot.infinite.contains(id)) {
                suspicious.append(row)
            }
        }
        for row in suspicious {
            if let difference = try await checkLocked(StockItemID(bizId: row.bizId, skuId: row.skuId), fix: fix) {
                report.differences.append(difference)
            }
        }
        try await checkCodes(ids, into: &report)
    }

    // MARK: - Code pools

    /// The codes of the page's code pools:
    /// - Redis: a one-time pool's code set has exactly stock_num codes (every script moves both at once);
    /// - MySQL: a one-time pool's stock is its codes not used (a CONFIRMED journal line holds a used code), in one
    ///   statement's snapshot (the worker writes a confirm's stock and its line status in one transaction);
    /// - every code Redis can hand out is one MySQL has (codes are recorded in MySQL before Redis gets them).
    private func checkCodes(_ ids: [StockItemID], into report: inout ReconcileReport) async throws {
        guard !ids.isEmpty else { return }
        var rows: [MySQLRow] = []
        // Padded: a one-tuple row IN would not use the primary key.
        for chunk in paddedChunks(ids) {
            rows += try await mysqlCall {
                try await self.reader.query(
                    "SELECT biz_id, sku_id, kind FROM code_pools WHERE (biz_id, sku_id) IN (\(tuples(chunk.count, "(?, ?)")))",
                    chunk.flatMap { [MySQLValue.string($0.bizId), skuValue($0.skuId)] }
                )
            }.rows
        }
        let pools = rows.compactMap { row -> (StockItemID, CodePoolKind)? in
            guard let biz = row.string("biz_id"), let sku = row.uint64("sku_id"),
                let kind = CodePoolKind(column: row.string("kind") ?? "")
            else { return nil }
            return (StockItemID(bizId: biz, skuId: sku), kind)
        }
        guard !pools.isEmpty else { return }
        report.poolsChecked += pools.count
        let oneTime = pools.filter { $0.1 == .oneTime }.map(\.0)
        // One script per shard on a cluster (one slot each).
        let groups = keys.clustered ? Array(Dictionary(grouping: oneTime, by: keys.itemShard).values) : [oneTime]
        for group in groups where !group.isEmpty {
            let reply = try await redisCall {
                try await self.runner.run(
                    self.scripts.poolCounts, keys: group.flatMap { [self.keys.item($0), self.keys.codes($0)] }, arguments: []
                )
            }
            for (id, counts) in zip(group, reply.array ?? []) {
                let parts = counts.array ?? []
                guard let stock = parts.first?.int, let size = parts[safe: 1]?.int, stock != size else { continue }
                report.codeDifferences.append(
                    CodeDifference(bizId: id.bizId, skuId: id.skuId, detail: "Redis: stock_num \(stock) but \(size) usable codes")
                )
            }
            for id in group {
                let row = try await mysqlCall {
                    try await self.mysql.query(
                        """
                        SELECT (SELECT stock FROM stock WHERE biz_id = ? AND sku_id = ?) AS stock,
                               (SELECT COUNT(*) FROM codes WHERE biz_id = ? AND sku_id = ?) AS codes,
                               (SELECT COUNT(*) FROM code_assignments a JOIN reservation_journal j
                                  ON j.order_id = a.order_id AND j.biz_id = a.biz_id AND j.sku_id = a.sku_id
                                 AND j.reserve_event = a.reserve_event
                                WHERE a.biz_id = ? AND a.sku_id = ? AND j.status = 'CONFIRMED') AS used
                        """,
                        Array(repeating: [MySQLValue.string(id.bizId), skuValue(id.skuId)], count: 3).flatMap { $0 }
                    )
                }.rows.first
                let stock = row?.int64("stock") ?? 0
                let codes = row?.int64("codes") ?? 0
                let used = row?.int64("used") ?? 0
                if stock != codes - used {
                    report.codeDifferences.append(
                        CodeDifference(
                            bizId: id.bizId, skuId: id.skuId,
                            detail: "MySQL: stock \(stock) but \(codes) codes of which \(used) used"
                        )
                    )
                }
            }
        }
        for (id, kind) in pools where kind != .batch {
            let unknown = try await codesMySQLLacks(id)
            if !unknown.isEmpty {
                report.codeDifferences.append(
                    CodeDifference(
                        bizId: id.bizId, skuId: id.skuId,
                        detail: "Redis has \(unknown.count) code(s) MySQL does not: \(unknown.prefix(5).joined(separator: ", "))"
                    )
                )
            }
        }
    }

    /// Codes in the item's Redis code set that MySQL's `codes` does not have, streamed a SSCAN page at a time.
    private func codesMySQLLacks(_ id: StockItemID) async throws -> [String] {
        var missing: [String] = []
        try await redisCall {
            try await self.redis.scanSet(self.keys.codes(id)) { page in
                let known = Set(
                    try await self.mysqlCall {
                        try await self.reader.query(
                            "SELECT code FROM codes WHERE biz_id = ? AND sku_id = ? AND code IN (\(tuples(page.count, "?")))",
                            [.string(id.bizId), skuValue(id.skuId)] + page.map(MySQLValue.string)
                        )
                    }.rows.compactMap { $0.string("code") }
                )
                missing += page.filter { !known.contains($0) }
            }
        }
        return missing
    }

    /// The exact check of one item: its stock row and RESERVED journal lines locked while Redis is read again.
    private func checkLocked(_ id: StockItemID, fix: Bool) async throws -> ReconcileDifference? {
        for _ in 0..<5 {
            do {
                return try await checkLockedOnce(id, fix: fix)
            } catch let error as MySQLError where error.code == .deadlock {
                continue
            } catch RetryJudgement.moved {
                continue
            }
        }
        throw ReconcileError.store("item \(id) kept changing while it was being reconciled")
    }

    private enum RetryJudgement: Error { case moved }

    private func checkLockedOnce(_ id: StockItemID, fix: Bool) async throws -> ReconcileDifference? {
        try await mysqlCall {
            try await self.mysql.withSession { locking in
                // Session one holds the item's stock row FOR UPDATE from before the Redis snapshot until the
                // judgement (and any fix) is done: no confirm or refund can change MySQL's stock meanwhile.
                try await locking.execute("START TRANSACTION")
                let stock = try await locking.query(
                    "SELECT stock, is_infinite FROM stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE",
                    [.string(id.bizId), skuValue(id.skuId)]
                )
                guard let row = stock.rows.first else {
                    try await locking.execute("COMMIT")
                    return nil
                }
                let dbStock = row.int64("stock") ?? 0
                let snapshot = try await self.snapshot([id])
                guard let counters = snapshot.counters[id], !snapshot.fenced.contains(id) else {
                    try await locking.execute("COMMIT")
                    return nil
                }
                // Session two reads the journal and ledger as one consistent snapshot taken after Redis's: every
                // entry the worker committed before it is recognised as applied, every later one is in flight.
                let (live, applied) = try await self.mysql.withSession { reading in
                    try await reading.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    try await reading.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    let live = try await self.journalReserved([id], session: reading)[id] ?? 0
                    let applied = try await self.appliedState(snapshot, session: reading)
                    try await reading.execute("COMMIT")
                    return (live, applied)
                }
                let expected = Self.expected(
                    dbStock: dbStock, journalReserved: live, entries: snapshot.entries[id] ?? [], applied: applied,
                    bizId: id.bizId, sku: id.skuId
                )
                let infinite = (row.bool("is_infinite") ?? false) || snapshot.infinite.contains(id)
                if Self.agrees(counters, expected, infinite: infinite) {
                    try await locking.execute("COMMIT")
                    return nil
                }
                var difference = ReconcileDifference(
                    bizId: id.bizId, skuId: id.skuId, dbStock: dbStock, journalReserved: live, redis: counters,
                    expected: expected, fixed: false
                )
                if fix {
                    var target = expected
                    if infinite { target.stockNum = counters.stockNum }
                    let arguments: [String] = counters.arguments + target.arguments
                    let itemKey = self.keys.item(id)
                    let reply = try await self.redisCall {
                        try await self.runner.run(self.scripts.fixItem, keys: [itemKey], arguments: arguments)
                    }
                    switch reply.array?.first?.text {
                    case "ok":
                        difference.fixed = true
                    case "moved":
                        try await locking.execute("ROLLBACK")
                        throw RetryJudgement.moved
                    case "fenced":
                        // A stock change's Redis half landed since the snapshot: in flight, judged next time.
                        try await locking.execute("COMMIT")
                        return nil
                    default:
                        break
                    }
                }
                try await locking.execute("COMMIT")
                return difference
            }
        }
    }

    struct LockedRead: Sendable {
        let dbStock: Int64
        let infinite: Bool
    }

    /// What Redis should hold for an item, given MySQL now and the entries in flight at the snapshot.
    static func expected(
        dbStock: Int64, journalReserved: Int64, entries: [Entry], applied: Applied, bizId: String, sku: UInt64
    ) -> ReconcileDifference.Counters {
        var used = journalReserved
        var confirmedInFlight: Int64 = 0
        var refundInFlight: Int64 = 0
        var committedUnsettled: Int64 = 0
        // By order and entry id: entry ids repeat across streams, and an undo names a reserve of its own order.
        let reservesInFlight = Set(
            entries.filter { $0.kind == .reserve && applied.rows[Applied.key($0.orderId, sku)]?.reserveEvent != $0.entryId }
                .map { $0.orderId + "\u{0}" + $0.entryId }
        )
        for entry in entries {
            let row = applied.rows[Applied.key(entry.orderId, sku)]
            switch entry.kind {
            case .reserve:
                if reservesInFlight.contains(entry.orderId + "\u{0}" + entry.entryId) { used += entry.quantity }
            case .undo:
                let rowStillLive = row?.reserveEvent == entry.reserveEvent && row?.status == "RESERVED"
                if rowStillLive || reservesInFlight.contains(entry.orderId + "\u{0}" + entry.reserveEvent) { used -= entry.quantity }
            case .confirm, .cancel, .expire:
                // Redis has released the hold; MySQL still counts it while the row is RESERVED, or will once the
                // reserve in flight before it lands.
                let rowLive = row?.status == "RESERVED"
                let rowComing = row == nil && entries.contains {
                    $0.kind == .reserve && $0.orderId == entry.orderId && reservesInFlight.contains($0.orderId + "\u{0}" + $0.entryId)
                }
                if rowLive || rowComing { used -= entry.quantity }
                if entry.kind == .confirm, !entry.marked {
                    confirmedInFlight += entry.quantity
                    if applied.ledger.contains(Applied.source(.confirm, entry.orderId, bizId, sku)) {
                        committedUnsettled -= entry.quantity
                    }
                }
            case .refund:
                if !entry.marked {
                    refundInFlight += entry.quantity
                    if applied.ledger.contains(Applied.source(.refund, entry.orderId, bizId, sku)) {
                        committedUnsettled += entry.quantity
                    }
                }
            }
        }
        // db = stock_num + used + confirmed_unapplied − refund_unapplied + (committed but not yet settled), so:
        let stockNum = dbStock - used - confirmedInFlight + refundInFlight - committedUnsettled
        return .init(
            stockNum: stockNum, usedStockNum: used, confirmedUnapplied: confirmedInFlight, refundUnapplied: refundInFlight
        )
    }

    static func agrees(_ redis: ReconcileDifference.Counters, _ expected: ReconcileDifference.Counters, infinite: Bool) -> Bool {
        redis.usedStockNum == expected.usedStockNum && redis.confirmedUnapplied == expected.confirmedUnapplied
            && redis.refundUnapplied == expected.refundUnapplied && (infinite || redis.stockNum == expected.stockNum)
    }

    // MARK: - Reads

    /// On a single Redis one script reads the page's items and every outbox at one instant. On a cluster one
    /// script per shard reads the shard's items and its one outbox, the only stream with entries of those items.
    private func snapshot(_ ids: [StockItemID]) async throws -> Snapshot {
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

    private func read(_ ids: [StockItemID], streams: [String], into snapshot: inout Snapshot) async throws {
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
    private func journalReserved(_ ids: [StockItemID], session: MySQLSession?) async throws -> [StockItemID: Int64] {
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
    private func appliedState(_ snapshot: Snapshot, session: MySQLSession?) async throws -> Applied {
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
    private func query(_ session: MySQLSession?, _ sql: String, _ binds: [MySQLValue]) async throws -> MySQLResult {
        try await mysqlCall {
            if let session { return try await session.query(sql, binds) }
            return try await self.reader.query(sql, binds)
        }
    }

    // MARK: - Lease and record

    private func acquireLease() async throws -> String {
        let owner = UUID().uuidString
        let reply = try await redisCall {
            try await self.redis.send(
                ["SET", self.keys.reconcileLease, owner, "NX", "PX", "60000"], routingKey: self.keys.reconcileLease
            )
        }
        guard reply == .status("OK") else { throw ReconcileError.leaseHeld }
        return owner
    }

    private func renewLease(_ owner: String) async throws {
        _ = try await redisCall {
            try await self.redis.send([
                "EVAL",
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], 60000) end return 0",
                "1", self.keys.reconcileLease, owner,
            ], routingKey: self.keys.reconcileLease)
        }
    }

    private static func releaseLease(keys: KeyLayout, owner: String) -> [String] {
        [
            "EVAL", "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", "1",
            keys.reconcileLease, owner,
        ]
    }

    private func record(_ report: ReconcileReport) async {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Count differences, then code differences ({bizId, skuId, detail}), in one array.
        var parts: [String] = []
        for difference in report.differences {
            if let data = try? encoder.encode(difference) { parts.append(String(decoding: data, as: UTF8.self)) }
        }
        for difference in report.codeDifferences {
            if let data = try? encoder.encode(difference) { parts.append(String(decoding: data, as: UTF8.self)) }
        }
        let details = "[" + parts.joined(separator: ",") + "]"
        do {
            _ = try await mysql.query(
                """
                INSERT INTO reconcile_results (started_at, finished_at, items_checked, differences, details)
                VALUES (NOW(3) - INTERVAL ? MICROSECOND, NOW(3), ?, ?, ?)
                """,
                [
                    .int(Int64(report.seconds * 1_000_000)), .int(Int64(report.itemsChecked)),
                    .int(Int64(report.differences.count + report.codeDifferences.count)), .string(details),
                ]
            )
        } catch {
            logger.warning("reconcile result not recorded", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Helpers

    private func redisCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            throw ReconcileError.store("Redis: \(error.message)")
        }
    }

    private func mysqlCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as MySQLError where error.code != .deadlock {
            throw ReconcileError.store("MySQL: \(error)")
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
