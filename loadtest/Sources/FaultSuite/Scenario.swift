import Foundation
import Inventory
import LoadHarness
import NIOCore
import NIOPosix

/// One scenario: a fresh business line, the service started in one durability mode, the workload, the injections,
/// the drain and the checks.
struct ScenarioContext: Sendable {
    let profile: FaultProfile
    let inventoryd: String
    let directory: String
    let redis: PrivateRedis
    let mariadb: PrivateMariaDB
    let environment: ServiceEnvironment
    let group: MultiThreadedEventLoopGroup
    let log: @Sendable (String) -> Void

    func run(_ fault: Fault, durability: String, injections: Int) async throws -> FaultResult {
        let bizId = "f" + String(UUID().uuidString.prefix(8)).lowercased()
        let variables = environment.variables(durability: durability)
        let service = ChildProcess(
            name: "inventoryd", executable: inventoryd, arguments: ["serve"], environment: variables,
            logPath: "\(directory)/inventoryd-\(fault.rawValue)-\(durability).log"
        )
        let target = Target(name: "service", host: "127.0.0.1", port: environment.httpPort)
        let client = SetupClient(group: group, target: target, timeout: .seconds(10))
        try service.start()
        try await waitReady(client)
        do {
            let result = try await exercise(
                fault, durability: durability, injections: injections, bizId: bizId, service: service, client: client
            )
            await service.stop(signal: SIGTERM)
            return result
        } catch {
            await service.stop(signal: SIGKILL)
            throw error
        }
    }

    private func waitReady(_ client: SetupClient) async throws {
        try await waitUntil("inventoryd on port \(environment.httpPort)") {
            try await client.withConnection { try await $0.request(.GET, "/readyz").status } == 200
        }
    }

    private func exercise(
        _ fault: Fault, durability: String, injections: Int, bizId: String, service: ChildProcess, client: SetupClient
    ) async throws -> FaultResult {
        try await client.withConnection { connection in
            for sku in 1...profile.items {
                let (status, body) = try await connection.request(
                    .PUT, "/v1/stock/\(bizId)/\(sku)", json: #"{"stock":\#(profile.stockPerItem)}"#
                )
                guard status == 200 else { throw FaultSuiteError("PUT stock answered \(status): \(body)") }
            }
        }
        let start = ContinuousClock.now
        let ledger = Ledger()
        let stop = StopFlag()
        let workload = Workload(
            client: client, bizId: bizId, runId: bizId, items: profile.items, lanes: profile.lanes, start: start,
            ledger: ledger, stop: stop, retryLimit: .seconds(90)
        )
        let running = Task { await workload.run() }
        var faultTimes: [Double] = []
        try await Task.sleep(for: profile.loadBetween)
        func now() -> Double { (ContinuousClock.now - start).seconds }
        for index in 0..<injections {
            log("  \(fault.rawValue) (\(durability)): injection \(index + 1) of \(injections)")
            let injectedAt = now()
            try await inject(fault, service: service, client: client)
            // A FLUSHALL takes effect when its command returns; holds acknowledged before that are in the window.
            faultTimes.append(fault == .redisFlushall ? now() : injectedAt)
            try await Task.sleep(for: profile.loadBetween)
        }
        stop.set()
        await running.value
        try await drain()
        return try await check(
            fault, durability: durability, injections: injections, bizId: bizId, ledger: ledger, faultTimes: faultTimes
        )
    }

    private func inject(_ fault: Fault, service: ChildProcess, client: SetupClient) async throws {
        switch fault {
        case .sigkillService:
            await service.stop(signal: SIGKILL)
            try service.start()
            try await waitReady(client)
        case .redisRestart:
            await redis.kill()
            try await Task.sleep(for: .milliseconds(300))
            try await redis.start()
        case .redisFlushall:
            try redis.everyNode("FLUSHALL")
        case .mariadbStop:
            await mariadb.stop()
            try await Task.sleep(for: profile.mariadbDown)
            try await mariadb.start()
        case .redisSlow:
            try redis.cli("DEBUG", "SLEEP", String(profile.redisSleepSeconds))
        case .redisFull:
            try redis.everyNode("CONFIG", "SET", "maxmemory-policy", "noeviction")
            try redis.everyNode("CONFIG", "SET", "maxmemory", "1")
            try await Task.sleep(for: profile.redisFullFor)
            try redis.everyNode("CONFIG", "SET", "maxmemory", "0")
        }
    }

    /// Waits until the worker has applied every outbox entry.
    private func drain() async throws {
        let streams = KeyLayout(prefix: "inv", clustered: redis.clustered).outboxes
        try await waitUntil("the outbox to drain", within: 120) { try redis.length(of: streams) == 0 }
    }

    private func check(
        _ fault: Fault, durability: String, injections: Int, bizId: String, ledger: Ledger, faultTimes: [Double]
    ) async throws -> FaultResult {
        let told = ledger.snapshot
        let rows = try mariadb.query(
            "SELECT order_id, sku_id, quantity, status FROM reservation_journal WHERE biz_id = '\(bizId)'"
        )
        var journal: [String: (sku: Int, quantity: Int64, status: String)] = [:]
        var live: [Int: Int64] = [:]
        var confirmed: [Int: Int64] = [:]
        for row in rows where row.count == 4 {
            let sku = Int(row[1]) ?? 0
            let quantity = Int64(row[2]) ?? 0
            journal[row[0]] = (sku, quantity, row[3])
            if row[3] == "RESERVED" || row[3] == "CONFIRMED" { live[sku, default: 0] += quantity }
            if row[3] == "CONFIRMED" { confirmed[sku, default: 0] += quantity }
        }
        var dbStock: [Int: Int64] = [:]
        for row in try mariadb.query("SELECT sku_id, stock FROM stock WHERE biz_id = '\(bizId)'") where row.count == 2 {
            dbStock[Int(row[0]) ?? 0] = Int64(row[1]) ?? 0
        }

        var oversold: Int64 = 0
        var mismatches: [String] = []
        var acknowledgedLive: [Int: Int64] = [:]
        for order in told.orders.values where !order.cancelled && !order.expiring {
            acknowledgedLive[order.sku, default: 0] += order.quantity
        }
        var overStock: Int64 = 0
        for sku in 1...profile.items {
            oversold += max(0, (live[sku] ?? 0) - profile.stockPerItem)
            let stock = dbStock[sku] ?? 0
            oversold += max(0, -stock)
            if stock != profile.stockPerItem - (confirmed[sku] ?? 0) {
                mismatches.append("sku \(sku): MySQL stock \(stock), journal says \(profile.stockPerItem - (confirmed[sku] ?? 0))")
            }
            overStock += max(0, (acknowledgedLive[sku] ?? 0) - profile.stockPerItem)
        }

        var lost = 0
        var lostOrders: [String] = []
        var lostTransitions = 0
        var lostTransitionOrders: [String] = []
        var window: Double?
        for (orderId, order) in told.orders {
            guard let row = journal[orderId] else {
                lost += 1
                if lostOrders.count < 20 {
                    lostOrders.append("\(orderId) acknowledged at \(String(format: "%.3f", order.acknowledgedAt)) s")
                }
                if let loss = faultTimes.first(where: { $0 >= order.acknowledgedAt }) {
                    window = max(window ?? 0, (loss - order.acknowledgedAt) * 1000)
                }
                continue
            }
            if (order.confirmed && row.status != "CONFIRMED") || (order.cancelled && row.status != "CANCELLED") {
                lostTransitions += 1
                if lostTransitionOrders.count < 20 {
                    lostTransitionOrders.append(
                        "\(orderId) \(order.confirmed ? "confirmed" : "cancelled"), journal \(row.status)"
                    )
                }
            }
            // An expiry is the sweeper's, never waited for: after a data loss the journal sweep redoes it later.
            if order.expired && row.status != "EXPIRED" && fault != .redisFlushall { lostTransitions += 1 }
        }
        let reconcile = try Tools.status(
            inventoryd, ["reconcile", "--biz", bizId, "--json"], environment: environment.variables(durability: durability),
            logPath: "\(directory)/reconcile-\(bizId).json"
        )

        var failures: [String] = []
        let dataLoss = fault == .redisFlushall
        if oversold > 0 { failures.append("oversold \(oversold) units") }
        if !mismatches.isEmpty { failures.append(contentsOf: mismatches) }
        if reconcile != 0 { failures.append("reconciler exit \(reconcile)") }
        if told.hung > 0 { failures.append("\(told.hung) requests hung") }
        if told.gaveUp > 0 {
            failures.append("\(told.gaveUp) steps never got a definite answer: \(told.abandoned.joined(separator: "; "))")
        }
        let errors = told.statuses.filter { $0.key >= 500 && $0.key != 503 }.values.reduce(0, +)
        if errors > 0 { failures.append("\(errors) 5xx answers other than 503") }
        if durability == "sync" || !dataLoss {
            if lost > 0 { failures.append("\(lost) acknowledged holds lost") }
            if overStock > 0 { failures.append("acknowledged \(overStock) units over stock") }
        }
        // Sync mode answers a confirm or cancel after its journal row too: none may be lost, whatever the fault.
        if !dataLoss || durability == "sync" {
            if lostTransitions > 0 { failures.append("\(lostTransitions) acknowledged confirms/cancels lost") }
        }
        if !dataLoss {
            if !told.violations.isEmpty { failures.append("answers contradicting earlier ones: \(told.violations.prefix(5))") }
        }
        let acknowledgedCount = told.orders.count
        return FaultResult(
            fault: fault, durability: durability, injections: injections,
            answers: told.statuses.values.reduce(0, +),
            answersByStatus: Dictionary(uniqueKeysWithValues: told.statuses.map { (String($0.key), $0.value) }),
            transportErrors: told.transport, hung: told.hung, gaveUp: told.gaveUp,
            acknowledgedHolds: acknowledgedCount,
            acknowledgedConfirms: told.orders.values.filter(\.confirmed).count,
            acknowledgedCancels: told.orders.values.filter(\.cancelled).count,
            holdsSeenExpired: told.orders.values.filter(\.expired).count,
            oversoldUnits: oversold, acknowledgedOverStock: overStock, stockMismatches: mismatches,
            lostReservations: lost, lostOrders: lostOrders, faultTimes: faultTimes, lostTransitions: lostTransitions,
            lostTransitionOrders: lostTransitionOrders,
            lossWindowMs: window,
            sequenceViolations: told.violations, reconcileExit: reconcile, passed: failures.isEmpty, failures: failures
        )
    }
}

extension PrivateMariaDB {
    /// Rows of a query as tab-separated fields (the mariadb client's batch mode).
    func query(_ sql: String) throws -> [[String]] {
        let output = try Tools.run(
            try Tools.find("mariadb", "mysql"),
            ["--no-defaults", "--socket=\(directory)/mysqld.sock", "-uroot", "-N", "-B", "inventory", "-e", sql]
        )
        return output.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }
}
