import Foundation
import Logging
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// Judging a page of items: Redis against what MySQL and the in-flight work say it must hold, the code pools, and the repair under the item's lock.
extension Reconciler {
    /// Redis at one instant for a page: counters and the in-flight entries touching it.
    struct Snapshot {
        var counters: [StockItemID: ReconcileDifference.Counters] = [:]
        var infinite: Set<StockItemID> = []
        var entries: [StockItemID: [Entry]] = [:]
        /// Items a stock change is between its Redis and MySQL halves on (lua/lib/fence.lua): in flight, not judged.
        var fenced: Set<StockItemID> = []
    }

    /// An outbox line in flight, as snapshot.lua reads it (`SnapshotCall.Line`; `absorbed`: of an epoch the item's
    /// rebuild absorbed: its hold moves the journal like any line in flight, but its confirm or refund is already in
    /// MySQL's stock and in no `*_unapplied` counter).
    typealias Entry = SnapshotCall.Line

    /// The MySQL side of the lines in flight: journal rows and ledger sources that exist now.
    struct Applied {
        /// (bizId, orderId, skuId) → (status, reserve_event) of the journal row: two businesses may have an order of
        /// the same id on the same SKU number.
        var rows: [String: (status: String, reserveEvent: String, quantity: Int64)] = [:]
        var ledger: Set<String> = []
        /// (bizId, orderId, skuId) → the line's duplicate holds (`reserve_duplicates`).
        var duplicates: [String: [ReconcileRepository.DuplicateRow]] = [:]

        static func key(_ bizId: String, _ orderId: String, _ sku: UInt64) -> String { "\(bizId)\u{0}\(orderId)\u{0}\(sku)" }

        /// The ledger source the journal writes for a confirm or refund line.
        static func source(_ kind: OutboxEvent.Kind, _ orderId: String, _ bizId: String, _ sku: UInt64) -> String {
            "\(kind.rawValue):\(orderId):\(bizId):\(sku)"
        }
    }

    func check(_ page: [ReconcileRepository.StockRow], fix: Bool, into report: inout ReconcileReport) async throws {
        let ids = page.map(\.id)
        let snapshot = try await snapshot(ids)
        let (live, applied) = try await journalSide(ids, snapshot, consistent: false)
        var suspicious: [ReconcileRepository.StockRow] = []
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
            let count = StockCount(redisInfinite: snapshot.infinite.contains(id), mysqlInfinite: row.infinite)
            if !Self.agrees(counters, expected, count) {
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
    func checkCodes(_ ids: [StockItemID], into report: inout ReconcileReport) async throws {
        guard !ids.isEmpty else { return }
        let pools = try await mysqlCall { try await self.repository.codePools(ids) }
        guard !pools.isEmpty else { return }
        report.poolsChecked += pools.count
        let oneTime = pools.filter { $0.1 == .oneTime }.map(\.0)
        for group in keys.scriptGroups(oneTime) {
            for (id, counts) in zip(group, try await run(PoolCountsCall(group, layout: keys))) {
                guard let stock = counts.stock, stock != counts.codes else { continue }
                report.codeDifferences.append(
                    CodeDifference(bizId: id.bizId, skuId: id.skuId, detail: "Redis: stock_num \(stock) but \(counts.codes) usable codes")
                )
            }
            for id in group {
                let (stock, codes, used) = try await mysqlCall { try await self.repository.oneTimePoolCounts(id) }
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
    func codesMySQLLacks(_ id: StockItemID) async throws -> [String] {
        var missing: [String] = []
        try await redisCall {
            try await self.redis.scanSet(self.keys.codes(id)) { page in
                let known = try await self.mysqlCall { try await self.repository.knownCodes(id, among: page) }
                missing += page.filter { !known.contains($0) }
            }
        }
        return missing
    }

    /// The exact check of one item: its stock row and RESERVED journal lines locked while Redis is read again.
    ///
    /// A repair writes only the counters it judged (fix_item.lua), and the row lock stops MySQL, not Redis: on an item
    /// reserved all the time a reserve lands between the read and the repair again and again. After five such tries
    /// the difference, found each time, is reported as not fixed, and the run goes on to the next item (before, the
    /// whole run stopped there, and reported and recorded nothing).
    func checkLocked(_ id: StockItemID, fix: Bool) async throws -> ReconcileDifference? {
        var judged: ReconcileDifference?
        for _ in 0..<5 {
            do {
                return try await checkLockedOnce(id, fix: fix)
            } catch let error as MySQLError where error.code == .deadlock {
                continue
            } catch RetryJudgement.moved(let difference) {
                judged = difference
                continue
            }
        }
        guard let judged else { throw ReconcileError.store("item \(id) kept deadlocking while it was being reconciled") }
        logger.warning("reconcile could not repair an item that kept changing; reported, not fixed", metadata: ["item": "\(id)"])
        return judged
    }

    /// The repair found the item changed since it was read: judge again. It carries the difference judged.
    enum RetryJudgement: Error { case moved(ReconcileDifference) }

    /// Runs before each repair of an item's counters (tests: a change landing between the read and the repair).
    @TaskLocal static var beforeRepair: (@Sendable (StockItemID) async throws -> Void)?

    func checkLockedOnce(_ id: StockItemID, fix: Bool) async throws -> ReconcileDifference? {
        try await mysqlCall {
            // The item's stock row is held FOR UPDATE from before the Redis snapshot until the judgement (and any
            // fix) is done: no confirm or refund can change MySQL's stock meanwhile.
            try await self.repository.withStockRowLocked(id) { row, version in
                guard let row else { return nil }
                let snapshot = try await self.snapshot([id])
                guard let counters = snapshot.counters[id], !snapshot.fenced.contains(id) else { return nil }
                // The journal and ledger as one consistent snapshot taken after Redis's.
                let (reserved, applied) = try await self.journalSide([id], snapshot, consistent: true)
                let live = reserved[id] ?? 0
                let expected = Self.expected(
                    dbStock: row.stock, journalReserved: live, entries: snapshot.entries[id] ?? [], applied: applied,
                    bizId: id.bizId, sku: id.skuId
                )
                let count = StockCount(redisInfinite: snapshot.infinite.contains(id), mysqlInfinite: row.infinite)
                if Self.agrees(counters, expected, count) { return nil }
                var difference = ReconcileDifference(
                    bizId: id.bizId, skuId: id.skuId, dbStock: row.stock, journalReserved: live, redis: counters,
                    expected: expected, fixed: false
                )
                if fix, count == .flagsDiffer {
                    // What the item's stock_num counts is not what MySQL's flag says: dropped, and rebuilt from MySQL
                    // (the rebuild waits for this row's lock).
                    _ = try await self.redisCall { try await self.redis.command("DEL", self.keys.item(id)) }
                    difference.fixed = true
                } else if fix {
                    var target = expected
                    target.stockNum = count.stockNum(expected) ?? counters.stockNum
                    try await Self.beforeRepair?(id)
                    switch try await self.run(FixItemCall(itemKey: self.keys.item(id), read: counters, target: target, version: version)) {
                    case .fixed:
                        difference.fixed = true
                    case .moved:
                        throw RetryJudgement.moved(difference)
                    case .fenced:
                        // A stock change's Redis half landed since the snapshot: in flight, judged next time.
                        return nil
                    case .missing:
                        break
                    }
                }
                return difference
            }
        }
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
        // A reserve taken back counts no hold in flight: its take-back wrote an undo entry (which then counts nothing
        // either), or its order had gone on with it and the item handed back the one hold too many it counted (the
        // earlier hold, whose row then stands for this one) or nothing (a hold of its own, released by its order's
        // confirm, cancel or expiry).
        let reservesInFlight = Set(
            entries.filter {
                $0.kind == .reserve && !$0.takenBack && applied.rows[Applied.key(bizId, $0.orderId, sku)]?.reserveEvent != $0.entryId
            }
            .map { $0.orderId + "\u{0}" + $0.entryId }
        )
        for entry in entries {
            let row = applied.rows[Applied.key(bizId, entry.orderId, sku)]
            switch entry.kind {
            case .reserve:
                guard reservesInFlight.contains(entry.orderId + "\u{0}" + entry.entryId) else { continue }
                // A duplicate of a live order: the item counts the earlier hold (its row's) beside it until its
                // take-back. Once the order's events moved that row on (committed), this reserve stands for that hold,
                // which may differ from its own (a partial order): as much as the row holds.
                let duplicate = applied.duplicates[Applied.key(bizId, entry.orderId, sku)]?.first { $0.reserveEvent == entry.entryId }
                if let row, row.status != "RESERVED", let duplicate, !duplicate.earlierEvent.isEmpty,
                    duplicate.earlierEvent == row.reserveEvent
                {
                    used += row.quantity
                } else {
                    used += entry.quantity
                }
            case .adopt:
                // What a journal row holds (lua/undo_reserve.lua handed the earlier hold back): no counter moves.
                continue
            case .undo:
                let rowStillLive = row?.reserveEvent == entry.reserveEvent && row?.status == "RESERVED"
                if rowStillLive || reservesInFlight.contains(entry.orderId + "\u{0}" + entry.reserveEvent) { used -= entry.quantity }
            case .confirm, .cancel, .expire:
                // Redis has released the hold; MySQL still counts it while the row is RESERVED, or will once the
                // reserve in flight before it lands: a new order's, or a duplicate hold of an order that had ended
                // (a retry after retention), whose hold no row counts. (A duplicate of a live order releases that
                // order's row; a retry after a failed sync commit is its row.)
                let rowLive = row?.status == "RESERVED"
                var holdInFlight = false
                if let hold = Self.latestReserve(before: entry, in: entries), reservesInFlight.contains(hold.orderId + "\u{0}" + hold.entryId) {
                    let duplicate = applied.duplicates[Applied.key(bizId, entry.orderId, sku)]?.first { $0.reserveEvent == hold.entryId }
                    holdInFlight = row == nil || (duplicate.map { $0.earlierEvent.isEmpty } ?? (row?.status != "RESERVED"))
                }
                if rowLive || holdInFlight { used -= entry.quantity }
                if entry.kind == .confirm, !entry.marked, !entry.absorbed {
                    confirmedInFlight += entry.quantity
                    if let source = committedSource(entry, entries: entries, applied: applied, bizId: bizId, sku: sku),
                        applied.ledger.contains(source)
                    {
                        committedUnsettled -= entry.quantity
                    }
                }
            case .refund:
                if !entry.marked && !entry.absorbed {
                    refundInFlight += entry.quantity
                    if let source = committedSource(entry, entries: entries, applied: applied, bizId: bizId, sku: sku),
                        applied.ledger.contains(source)
                    {
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

    /// Whether outbox entry `a` comes before `b` in their stream (true when either is not an entry id).
    static func before(_ a: String, _ b: String) -> Bool {
        guard let a = StreamPosition(a), let b = StreamPosition(b) else { return true }
        return a < b
    }

    /// The last reserve of the entry's order before it in the snapshot: the hold it belongs to, when that reserve is
    /// still in the outbox.
    static func latestReserve(before entry: Entry, in entries: [Entry]) -> Entry? {
        entries.filter { $0.kind == .reserve && $0.orderId == entry.orderId && before($0.entryId, entry.entryId) }
            .max { before($0.entryId, $1.entryId) }
    }

    /// The ledger source a confirm or refund entry is committed under: its order line's, or that of the duplicate
    /// hold that owns it (JournalBatchPlan+Duplicates.swift, the same rule); nil when it cannot be committed yet (the
    /// reserve of its order before it, neither the journal row's nor a recorded duplicate, is not).
    static func committedSource(
        _ entry: Entry, entries: [Entry], applied: Applied, bizId: String, sku: UInt64
    ) -> String? {
        let plain = Applied.source(entry.kind, entry.orderId, bizId, sku)
        let duplicates = applied.duplicates[Applied.key(bizId, entry.orderId, sku)] ?? []
        guard let row = applied.rows[Applied.key(bizId, entry.orderId, sku)] else { return plain }
        if let hold = latestReserve(before: entry, in: entries), hold.entryId != row.reserveEvent,
            !duplicates.contains(where: { $0.reserveEvent == hold.entryId })
        {
            return nil
        }
        guard let at = StreamPosition(entry.entryId) else { return plain }
        let candidates = duplicates.filter { $0.earlierEvent.isEmpty && $0.status != "UNTRACKED" }.compactMap {
            DuplicateCandidate(eventId: $0.reserveEvent, status: $0.status, endedEvent: $0.endedEvent)
        }
        return DuplicateCandidate.owner(at: at, among: candidates).map { plain + ":" + $0.eventId } ?? plain
    }

    /// What an item's stock_num counts, by Redis's is_infinite (the scripts move it by that flag) and MySQL's.
    enum StockCount {
        /// A finite item: what is left to sell (`expected.stockNum`).
        case available
        /// Infinite in Redis: its on-hand stock (a hold takes nothing from it; a sale does).
        case onHand
        /// Infinite in one store and finite in the other, no change between its halves (those are fenced): never
        /// agrees, and a repair drops the item for a rebuild from MySQL.
        case flagsDiffer

        init(redisInfinite: Bool, mysqlInfinite: Bool) {
            self = redisInfinite != mysqlInfinite ? .flagsDiffer : redisInfinite ? .onHand : .available
        }

        /// The stock_num Redis should hold (nil: none, the flags differ).
        func stockNum(_ expected: ReconcileDifference.Counters) -> Int64? {
            switch self {
            case .available: expected.stockNum
            case .onHand: expected.stockNum + expected.usedStockNum
            case .flagsDiffer: nil
            }
        }
    }

    static func agrees(_ redis: ReconcileDifference.Counters, _ expected: ReconcileDifference.Counters, _ count: StockCount) -> Bool {
        guard let stockNum = count.stockNum(expected) else { return false }
        return redis.usedStockNum == expected.usedStockNum && redis.confirmedUnapplied == expected.confirmedUnapplied
            && redis.refundUnapplied == expected.refundUnapplied && redis.stockNum == stockNum
    }
}
