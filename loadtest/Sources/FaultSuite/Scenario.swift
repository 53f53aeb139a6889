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
        let refusal = fault == .evictingPolicy ? try await startRefused(durability: durability) : []
        let variables = environment.variables(durability: durability)
        let service = ChildProcess(
            name: "inventoryd", executable: inventoryd, arguments: ["serve"], environment: variables,
            logPath: "\(directory)/inventoryd-\(fault.rawValue)-\(durability).log"
        )
        let target = Target(name: "service", host: "127.0.0.1", port: environment.httpPort)
        var clients = [SetupClient(group: group, target: target, timeout: .seconds(10))]
        // clock-skew: a second instance, its clock ahead, serving every other lane (same stores).
        var skewed: ChildProcess?
        if fault == .clockSkew {
            let port = try Tools.freePort()
            var second = environment.variables(durability: durability, httpPort: port)
            second["INVENTORY_CLOCK_SKEW_MS"] = String(profile.clockSkewMilliseconds)
            second["INVENTORY_WORKER_CONSUMER"] = "faults-skewed"
            skewed = ChildProcess(
                name: "inventoryd-skewed", executable: inventoryd, arguments: ["serve"], environment: second,
                logPath: "\(directory)/inventoryd-\(fault.rawValue)-\(durability)-skewed.log"
            )
            clients.append(SetupClient(group: group, target: Target(name: "skewed", host: "127.0.0.1", port: port), timeout: .seconds(10)))
        }
        try service.start()
        try skewed?.start()
        for client in clients { try await waitReady(client) }
        do {
            var result = try await exercise(
                fault, durability: durability, injections: injections, bizId: bizId, service: service, clients: clients
            )
            await service.stop(signal: SIGTERM)
            await skewed?.stop(signal: SIGTERM)
            if !refusal.isEmpty {
                result.failures += refusal
                result.passed = false
            }
            return result
        } catch {
            await service.stop(signal: SIGKILL)
            await skewed?.stop(signal: SIGKILL)
            throw error
        }
    }

    /// `evicting-policy`: `inventoryd serve` against a Redis whose `maxmemory-policy` is allkeys-lru must exit
    /// non-zero naming the policy and the setting that overrides it. Returns what went wrong (nothing when it
    /// refused); the policy is noeviction again afterwards.
    private func startRefused(durability: String) async throws -> [String] {
        try redis.everyNode("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        let logPath = "\(directory)/inventoryd-\(Fault.evictingPolicy.rawValue)-\(durability)-refused.log"
        let refused = ChildProcess(
            name: "inventoryd-refused", executable: inventoryd, arguments: ["serve"],
            environment: environment.variables(durability: durability), logPath: logPath
        )
        try refused.start()
        let status = await refused.waitForExit(within: 30)
        if status == nil { await refused.stop(signal: SIGKILL) }
        try redis.everyNode("CONFIG", "SET", "maxmemory-policy", "noeviction")
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        var failures: [String] = []
        if status == nil { failures.append("inventoryd served on an allkeys-lru Redis (no exit within 30 s)") }
        if status == 0 { failures.append("inventoryd exited 0 on an allkeys-lru Redis") }
        for name in ["maxmemory-policy", "INVENTORY_ALLOW_EVICTION"] where !output.contains(name) {
            failures.append("its refusal does not name \(name)")
        }
        log("  evicting-policy (\(durability)): inventoryd exited \(status.map(String.init) ?? "no") on allkeys-lru")
        return failures
    }

    private func waitReady(_ client: SetupClient) async throws {
        try await waitUntil("inventoryd on port \(environment.httpPort)") {
            try await client.withConnection { try await $0.request(.GET, "/readyz").status } == 200
        }
    }

    private func exercise(
        _ fault: Fault, durability: String, injections: Int, bizId: String, service: ChildProcess, clients: [SetupClient]
    ) async throws -> FaultResult {
        let client = clients[0]
        // key-del: a per-user limit no lane reaches, so that reserves keep per-user usage hashes to delete.
        let limit = fault == .keyDelete ? #","perUserLimit":1000000"# : ""
        try await client.withConnection { connection in
            for sku in 1...profile.items {
                // key-del-codes: item 2's stock is the codes of its one-time pool.
                let stock = fault == .keyDeleteCodes && sku == 2 ? 0 : profile.stockPerItem
                let (status, body) = try await connection.request(
                    .PUT, "/v1/stock/\(bizId)/\(sku)", json: #"{"stock":\#(stock)\#(limit)}"#
                )
                guard status == 200 else { throw FaultSuiteError("PUT stock answered \(status): \(body)") }
            }
            if fault == .keyDeleteCodes {
                try await Self.addCodePool(bizId: bizId, sku: 1, kind: "reusable", codes: 20, on: connection)
                try await Self.addCodePool(bizId: bizId, sku: 2, kind: "one-time", codes: Int(profile.stockPerItem), on: connection)
            }
        }
        let start = ContinuousClock.now
        let ledger = Ledger()
        let stop = StopFlag()
        var workload = Workload(
            clients: clients, bizId: bizId, runId: bizId, items: profile.items, lanes: profile.lanes, start: start,
            ledger: ledger, stop: stop, retryLimit: .seconds(90)
        )
        workload.userIds = fault == .keyDelete
        let running = Task { [workload] in await workload.run() }
        let adjusting = fault == .keyDelete ? Task {
            await Adjuster(client: client, bizId: bizId, items: profile.items, ledger: ledger, stop: stop, retryLimit: .seconds(90))
                .run(seed: UInt64(truncatingIfNeeded: bizId.hashValue))
        } : nil
        var faultTimes: [Double] = []
        var keysDeleted: [KeyKind: Int] = [:]
        var random = SplitMix64(seed: UInt64(truncatingIfNeeded: bizId.hashValue) ^ 0x5eed)
        try await Task.sleep(for: profile.loadBetween)
        func now() -> Double { (ContinuousClock.now - start).seconds }
        for index in 0..<injections {
            log("  \(fault.rawValue) (\(durability)): injection \(index + 1) of \(injections)")
            let injectedAt = now()
            if fault == .keyDelete || fault == .keyDeleteCodes {
                let codes = fault == .keyDeleteCodes
                let deleter = KeyDeleter(
                    redis: redis, bizId: bizId, kinds: codes ? [.codes] : Set(KeyKind.allCases).subtracting([.codes]),
                    start: start, logPath: "\(directory)/keys-deleted-\(bizId).txt"
                )
                let (deleted, times) = codes
                    ? try deleter.deleteAll()
                    : try await deleter.run(count: profile.keyDeletes, perSecond: profile.keyDeletesPerSecond, random: &random)
                keysDeleted.merge(deleted, uniquingKeysWith: +)
                // Each delete is a loss of its own: a hold's loss window runs up to the next one.
                faultTimes += times
            } else {
                try await inject(fault, service: service, client: client)
                // A FLUSHALL takes effect when its command returns; holds acknowledged before that are in the window.
                faultTimes.append(fault == .redisFlushall ? now() : injectedAt)
            }
            try await Task.sleep(for: profile.loadBetween)
        }
        stop.set()
        await running.value
        let adjustmentPairs = await adjusting?.value ?? 0
        try await drain()
        var result = try await check(
            fault, durability: durability, injections: injections, bizId: bizId, ledger: ledger, faultTimes: faultTimes,
            client: client
        )
        result.keysDeleted = Dictionary(uniqueKeysWithValues: keysDeleted.map { ($0.key.rawValue, $0.value) })
        result.adjustmentPairs = adjustmentPairs
        if fault == .keyDelete || fault == .keyDeleteCodes {
            let stuck = try await probe(bizId: bizId, client: client, user: workload.userIds)
            if !stuck.isEmpty {
                result.failures += stuck
                result.passed = false
            }
        }
        return result
    }

    /// `key-del-codes`: a code pool on an item, so that it has a code set to delete. A reusable pool's item keeps
    /// its own stock (codes are handed out again); a one-time pool's stock is its codes.
    static func addCodePool(bizId: String, sku: Int, kind: String, codes count: Int, on connection: SetupConnection) async throws {
        let (status, body) = try await connection.request(.PUT, "/v1/stock/\(bizId)/\(sku)/pool", json: #"{"kind":"\#(kind)"}"#)
        guard status == 200 else { throw FaultSuiteError("PUT pool answered \(status): \(body)") }
        let codes = (1...count).map { "FAULT\(bizId.uppercased())S\(sku)C\($0)" }.joined(separator: "\n")
        let (loaded, answer) = try await connection.request(
            .POST, "/v1/stock/\(bizId)/\(sku)/codes", body: codes + "\n", contentType: "text/plain"
        )
        guard loaded == 200 else { throw FaultSuiteError("POST codes answered \(loaded): \(answer)") }
    }

    /// After the checks: every item that shows stock available still sells it (a reserve of one unit, cancelled
    /// again). A key that vanished must cost a rebuild, never leave an item refusing what it shows.
    private func probe(bizId: String, client: SetupClient, user: Bool) async throws -> [String] {
        try await client.withConnection { connection in
            var failures: [String] = []
            for sku in 1...profile.items {
                let (status, body) = try await connection.request(.GET, "/v1/stock/\(bizId)/\(sku)")
                guard status == 200, let available = Self.number("available", in: body), available > 0 else { continue }
                let order = "\(bizId)-probe-\(sku)"
                let userField = user ? #","userId":"probe""# : ""
                let (reserved, answer) = try await connection.request(
                    .POST, "/v1/reservations",
                    json: #"{"orderId":"\#(order)","bizId":"\#(bizId)"\#(userField),"items":[{"skuId":\#(sku),"quantity":1}]}"#
                )
                if reserved == 201 {
                    _ = try await connection.request(.POST, "/v1/businesses/\(bizId)/reservations/\(order)/cancel")
                } else {
                    failures.append("sku \(sku): \(available) available, but a reserve of 1 answered \(reserved): \(answer)")
                }
            }
            return failures
        }
    }

    /// An integer field of a JSON object (the stock answer), without decoding the rest.
    static func number(_ field: String, in json: String) -> Int64? {
        guard let range = json.range(of: "\"\(field)\":") else { return nil }
        return Int64(json[range.upperBound...].prefix { $0.isNumber || $0 == "-" })
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
        case .keyDelete, .keyDeleteCodes:
            break  // a run of deletes, in `exercise`
        case .evictingPolicy, .clockSkew:
            break  // the fault is the whole scenario's: the refused start before it, the skewed instance throughout
        }
    }

    /// Waits until the worker has applied every outbox entry.
    private func drain() async throws {
        let streams = KeyLayout(prefix: "inv", clustered: redis.clustered).outboxes
        try await waitUntil("the outbox to drain", within: 120) { try redis.length(of: streams) == 0 }
    }

    private func check(
        _ fault: Fault, durability: String, injections: Int, bizId: String, ledger: Ledger, faultTimes: [Double],
        client: SetupClient
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
        // A Redis killed while its append-only file's write waited for a background fsync loses what it answered
        // meanwhile (appendfsync everysec postpones the write up to 2 s; README "What async mode can lose"): in async
        // mode a hold, confirm or cancel answered that close before the kill may be lost, and is counted in the loss
        // window; one answered earlier may not.
        let lastWritesMayGo = fault == .redisRestart && durability == "async"
        var lostLastWrites = 0
        func inLastWrites(_ at: Double) -> Bool { lastWritesMayGo && faultTimes.contains { $0 >= at && $0 - at <= 2.5 } }
        // Such a loss is Redis's only if Redis lost it too: the service, asked now, must not show the hold (a lost
        // hold) or the confirm or cancel (a lost transition) the journal lacks; else the journal missed what Redis has.
        func redisLostToo(_ orderId: String, shown: Set<String>) async throws -> Bool {
            let answer = try await client.withConnection { connection in
                try await connection.request(.GET, "/v1/businesses/\(bizId)/reservations/\(orderId)")
            }
            guard answer.status == 200 else { return true }
            let status = (try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])?["status"] as? String
            return !shown.contains(status?.lowercased() ?? "")
        }
        for (orderId, order) in told.orders {
            guard let row = journal[orderId] else {
                lost += 1
                if inLastWrites(order.acknowledgedAt), try await redisLostToo(orderId, shown: ["reserved", "confirmed"]) {
                    lostLastWrites += 1
                }
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
                if let at = order.settledAt, inLastWrites(at),
                    try await redisLostToo(orderId, shown: [order.confirmed ? "confirmed" : "cancelled"])
                {
                    lostLastWrites += 1
                    if let loss = faultTimes.first(where: { $0 >= at }) { window = max(window ?? 0, (loss - at) * 1000) }
                }
                if lostTransitionOrders.count < 20 {
                    lostTransitionOrders.append(
                        "\(orderId) \(order.confirmed ? "confirmed" : "cancelled"), journal \(row.status)"
                    )
                }
            }
            // An expiry is the sweeper's, never waited for: after a data loss the journal sweep redoes it later.
            if order.expired && row.status != "EXPIRED" && !fault.losesRedisData { lostTransitions += 1 }
        }
        let reconcile = try Tools.status(
            inventoryd, ["reconcile", "--biz", bizId, "--json"], environment: environment.variables(durability: durability),
            logPath: "\(directory)/reconcile-\(bizId).json"
        )

        var failures: [String] = []
        let dataLoss = fault.losesRedisData
        if oversold > 0 { failures.append("oversold \(oversold) units") }
        if !mismatches.isEmpty { failures.append(contentsOf: mismatches) }
        if reconcile != 0 { failures.append("reconciler exit \(reconcile)") }
        if told.hung > 0 { failures.append("\(told.hung) requests hung") }
        if told.gaveUp > 0 {
            failures.append("\(told.gaveUp) steps never got a definite answer: \(told.abandoned.joined(separator: "; "))")
        }
        let errors = told.statuses.filter { $0.key >= 500 && $0.key != 503 }.values.reduce(0, +)
        if errors > 0 { failures.append("\(errors) 5xx answers other than 503") }
        // Every loss within the last writes a killed Redis may lose: the documented loss (a unit of a lost hold may
        // have been sold again, so over stock too).
        let excused = lostLastWrites > 0 && lost + lostTransitions == lostLastWrites
        if durability == "sync" || !dataLoss {
            if lost > 0 && !excused { failures.append("\(lost) acknowledged holds lost") }
            // A unit over stock for each lost hold or confirm at most (its unit sold again).
            if overStock > (excused ? lostLastWrites : 0) { failures.append("acknowledged \(overStock) units over stock") }
        }
        // Sync mode answers a confirm or cancel after its journal row too: none may be lost, whatever the fault.
        if !dataLoss || durability == "sync" {
            if lostTransitions > 0 && !excused { failures.append("\(lostTransitions) acknowledged confirms/cancels lost") }
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
