import Foundation
import Logging
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

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
    let redis: any RedisRouter
    let runner: RedisScriptRunner
    /// Every read and write of MySQL; the first, unlocked pass reads a replica when one is configured.
    let repository: ReconcileRepository
    let scripts: InventoryScripts
    let keys: KeyLayout
    let logger: Logger
    let pageSize: Int

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
        self.repository = ReconcileRepository(primary: mysql, reader: replica ?? mysql)
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
            _ = try? await run(LeaseCall.giveBack(key: keys.reconcileLease, owner: lease))
            return report
        } catch {
            _ = try? await run(LeaseCall.giveBack(key: keys.reconcileLease, owner: lease))
            throw error
        }
    }

    func reconcile(
        _ scope: Scope, fix: Bool, lease: String, started: ContinuousClock.Instant,
        progress: (@Sendable (ReconcileReport) -> Void)?
    ) async throws -> ReconcileReport {
        var report = ReconcileReport()
        var after: (bizId: String, skuId: UInt64)? = nil
        var lost = false
        while true {
            let page: [ReconcileRepository.StockRow]
            switch scope {
            case .item(let item): page = try await mysqlCall { try await self.repository.stockRow(item) }
            case .business(let biz):
                page = try await mysqlCall { [after] in
                    try await self.repository.stockPage(business: biz, after: after?.skuId, limit: self.pageSize)
                }
            case .all: page = try await mysqlCall { [after] in try await self.repository.stockPage(after: after, limit: self.pageSize) }
            }
            if page.isEmpty { break }
            do {
                try await renewLease(lease)
            } catch ReconcileError.leaseLost {
                // What this run found and fixed so far is reported and recorded like a whole run's, then it stops.
                lost = true
                break
            }
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
        if lost {
            logger.error(
                "reconcile stopped: another instance took its lease mid-run",
                metadata: ["items": "\(report.itemsChecked)", "differences": "\(report.differences.count)"]
            )
            throw ReconcileError.leaseLost(itemsChecked: report.itemsChecked)
        }
        return report
    }

    // Judging a page: Reconciler+Judging.swift; reading Redis and MySQL: Reconciler+Reads.swift.

    // MARK: - Lease and record

    /// One reconciliation at a time across all instances (lua/lease.lua, renewed every page).
    static let leaseMilliseconds = 60_000

    func acquireLease() async throws -> String {
        let owner = UUID().uuidString
        guard try await run(LeaseCall(key: keys.reconcileLease, owner: owner, milliseconds: Self.leaseMilliseconds)) else {
            throw ReconcileError.leaseHeld
        }
        return owner
    }

    /// Renews the lease before each page; a run whose lease another reconciler holds now (this one stalled past the
    /// lease's lifetime) stops with `leaseLost` instead of going on beside it.
    func renewLease(_ owner: String) async throws {
        guard try await run(LeaseCall(key: keys.reconcileLease, owner: owner, milliseconds: Self.leaseMilliseconds)) else {
            throw ReconcileError.leaseLost(itemsChecked: 0)
        }
    }

    func record(_ report: ReconcileReport) async {
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
            try await repository.recordRun(
                seconds: report.seconds, itemsChecked: report.itemsChecked,
                differences: report.differences.count + report.codeDifferences.count, details: details
            )
        } catch {
            logger.warning("reconcile result not recorded", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Helpers

    /// Runs one call of a script and decodes its reply; a reply the script does not document is a store error.
    func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply {
        let reply = try await redisCall { try await self.runner.run(self.scripts[Call.name], keys: call.keys, arguments: call.arguments) }
        do { return try Call.decode(reply) } catch { throw ReconcileError.store("Redis: \(error)") }
    }

    func redisCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            throw ReconcileError.store("Redis: \(error.message)")
        }
    }

    func mysqlCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as MySQLError where error.code != .deadlock {
            throw ReconcileError.store("MySQL: \(error)")
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
