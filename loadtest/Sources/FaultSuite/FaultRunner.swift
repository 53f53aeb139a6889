import Foundation
import Inventory
import LoadHarness
import NIOCore
import NIOPosix

/// The faults the suite injects under load (issue 6).
public enum Fault: String, Sendable, Codable, CaseIterable {
    /// SIGKILL of the service mid-load, then a restart.
    case sigkillService = "sigkill-service"
    /// SIGKILL of Redis, then a restart that replays the append-only file.
    case redisRestart = "redis-restart"
    /// Redis loses all its data (FLUSHALL) mid-load.
    case redisFlushall = "redis-flushall"
    /// MariaDB stopped for a while, then started.
    case mariadbStop = "mariadb-stop"
    /// Redis hangs (DEBUG SLEEP) for longer than the service's Redis timeout.
    case redisSlow = "redis-slow"
    /// Redis refuses writes (maxmemory reached, noeviction) for a while.
    case redisFull = "redis-full"
    /// Single keys the service owns deleted under load, a few a second (issue 17): item hashes, orders, reserve
    /// and rollback marks, per-user usage, adjustment marks (`KeyKind`).
    case keyDelete = "key-del"
    /// The code sets of two items deleted under load, one with a reusable code pool, one with a one-time pool
    /// (whose stock is its codes). Apart from `key-del` because it fails: see loadtest/RESULTS.md, 2026-12-04.
    case keyDeleteCodes = "key-del-codes"
    /// Redis with `maxmemory-policy allkeys-lru`: the service must refuse to start, naming the policy and
    /// `INVENTORY_ALLOW_EVICTION`; then the policy is set back to noeviction and the load runs.
    case evictingPolicy = "evicting-policy"
    /// A second instance whose clock is ahead (`INVENTORY_CLOCK_SKEW_MS`) serves every other lane throughout.
    case clockSkew = "clock-skew"
}

extension Fault {
    /// Redis loses data the journal may not have yet: in async mode the changes of the last moments before it (the
    /// documented window) may be lost, and an expiry may reach the journal only through the journal sweep, later.
    var losesRedisData: Bool { self == .redisFlushall || self == .keyDelete || self == .keyDeleteCodes }
}

/// How hard and how long: `quick` fits in the test command, `full` is the documented long run.
public struct FaultProfile: Sendable {
    public var lanes: Int
    public var items: Int
    public var stockPerItem: Int64
    /// Load before the first injection and between injections.
    public var loadBetween: Duration
    public var mariadbDown: Duration
    public var redisSleepSeconds: Int
    public var redisFullFor: Duration
    /// `key-del`: keys deleted per injection, and how many a second.
    public var keyDeletes: Int
    public var keyDeletesPerSecond: Int
    /// `clock-skew`: how far the second instance's clock is ahead.
    public var clockSkewMilliseconds: Int
    /// (fault, durability, injections) in the order they run.
    public var scenarios: [(fault: Fault, durability: String, injections: Int)]

    public static let quick = FaultProfile(
        lanes: 8, items: 3, stockPerItem: 400, loadBetween: .milliseconds(1500), mariadbDown: .seconds(5),
        redisSleepSeconds: 2, redisFullFor: .seconds(2), keyDeletes: 8, keyDeletesPerSecond: 4,
        clockSkewMilliseconds: 2000,
        scenarios: [
            (.sigkillService, "sync", 2), (.redisRestart, "sync", 1), (.redisFlushall, "sync", 1),
            (.redisFlushall, "async", 1), (.mariadbStop, "sync", 1), (.mariadbStop, "async", 1),
            (.keyDelete, "async", 1), (.keyDeleteCodes, "sync", 1),
            (.redisSlow, "async", 1), (.redisFull, "async", 1), (.evictingPolicy, "async", 1), (.clockSkew, "sync", 1),
        ]
    )

    public static let full = FaultProfile(
        lanes: 24, items: 8, stockPerItem: 2000, loadBetween: .seconds(5), mariadbDown: .seconds(30),
        redisSleepSeconds: 3, redisFullFor: .seconds(5), keyDeletes: 20, keyDeletesPerSecond: 4,
        clockSkewMilliseconds: 2000,
        scenarios: [
            (.sigkillService, "sync", 5), (.sigkillService, "async", 5), (.redisRestart, "sync", 3),
            (.redisRestart, "async", 3), (.redisFlushall, "sync", 2), (.redisFlushall, "async", 2),
            (.mariadbStop, "sync", 1), (.mariadbStop, "async", 1), (.redisSlow, "sync", 3), (.redisSlow, "async", 3),
            (.redisFull, "sync", 2), (.redisFull, "async", 2), (.keyDelete, "sync", 3), (.keyDelete, "async", 3),
            (.keyDeleteCodes, "sync", 1), (.evictingPolicy, "sync", 1), (.clockSkew, "sync", 3), (.clockSkew, "async", 3),
        ]
    )
}

/// One scenario's outcome: what was served and every invariant checked after the drain.
public struct FaultResult: Sendable, Codable {
    public var fault: Fault
    public var durability: String
    public var injections: Int
    /// Answers received, and those by status.
    public var answers: Int
    public var answersByStatus: [String: Int]
    public var transportErrors: Int
    /// Requests that got no answer within the client's timeout.
    public var hung: Int
    /// Steps retried for longer than the retry limit without a definite answer.
    public var gaveUp: Int
    /// Holds acknowledged (2xx) to clients.
    public var acknowledgedHolds: Int
    public var acknowledgedConfirms: Int
    public var acknowledgedCancels: Int
    /// Holds of a 1 s TTL whose reserve, sent again after it, was refused as expired.
    public var holdsSeenExpired: Int
    /// Units the journal counts as held or sold beyond the stock, plus any negative MySQL stock.
    public var oversoldUnits: Int64
    /// Acknowledged holds beyond the stock, counted from the clients' answers (holds not cancelled and not of a 1 s TTL).
    public var acknowledgedOverStock: Int64
    /// MySQL stock != initial − confirmed in the journal, per item.
    public var stockMismatches: [String]
    /// Acknowledged holds without a journal row.
    public var lostReservations: Int
    /// The first lost holds, with when they were acknowledged (seconds into the scenario).
    public var lostOrders: [String]
    /// When each injection started, seconds into the scenario.
    public var faultTimes: [Double]
    /// Acknowledged confirms or cancels the journal does not show.
    public var lostTransitions: Int
    /// The first of them: order, what the client was told, the journal's status.
    public var lostTransitionOrders: [String]
    /// For holds lost to a Redis data loss: the longest time between their acknowledgement and the loss, in ms.
    public var lossWindowMs: Double?
    /// Answers that contradicted an earlier answer (a replay that was not 200, a reserve after its cancel...).
    public var sequenceViolations: [String]
    /// `inventoryd reconcile` exit status after the drain (0 clean).
    public var reconcileExit: Int32
    /// `key-del`: keys deleted, by kind (`KeyKind`); stock adjustment pairs (-1, +1) applied beside the load.
    public var keysDeleted: [String: Int] = [:]
    public var adjustmentPairs = 0
    public var passed: Bool
    public var failures: [String]
}

/// Runs the suite: its own Redis and MariaDB, the real `inventoryd`, a steady workload, the faults, the checks.
public final class FaultRunner: Sendable {
    let profile: FaultProfile
    let inventoryd: String
    let directory: String
    let log: @Sendable (String) -> Void

    /// `inventoryd` is the binary to run; `directory` holds the servers' data and every process's log.
    public init(profile: FaultProfile, inventoryd: String, directory: String, log: @escaping @Sendable (String) -> Void) {
        self.profile = profile
        let here = FileManager.default.currentDirectoryPath
        self.inventoryd = inventoryd.hasPrefix("/") ? inventoryd : here + "/" + inventoryd
        self.directory = directory.hasPrefix("/") ? directory : here + "/" + directory
        self.log = log
    }

    /// - Parameter cluster: run the service on a Redis Cluster of three masters instead of one Redis.
    public func run(only: Set<Fault>? = nil, durability: String? = nil, cluster: Bool = false) async throws -> [FaultResult] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let redis = try PrivateRedis(directory: directory + "/redis", cluster: cluster)
        log(
            "fault suite: starting \(cluster ? "a Redis Cluster on \(redis.ports)" : "Redis on \(redis.port)") and MariaDB"
                + " (data in \(directory))"
        )
        try await redis.start()
        let mariadb = try PrivateMariaDB(directory: directory + "/mariadb")
        try await mariadb.start()
        try mariadb.prepare(database: "inventory", user: "inventory", password: "inventory")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var results: [FaultResult] = []
        do {
            let base = ServiceEnvironment(
                redisPort: redis.port, mysqlPort: mariadb.port, httpPort: try Tools.freePort(),
                clusterPorts: cluster ? redis.ports : []
            )
            try Tools.run(inventoryd, ["migrate"], environment: base.variables(durability: "async"))
            for scenario in profile.scenarios
            where only?.contains(scenario.fault) ?? true && (durability == nil || durability == scenario.durability) {
                let context = ScenarioContext(
                    profile: profile, inventoryd: inventoryd, directory: directory, redis: redis, mariadb: mariadb,
                    environment: base, group: group, log: log
                )
                let result = try await context.run(scenario.fault, durability: scenario.durability, injections: scenario.injections)
                log(Self.line(result))
                results.append(result)
            }
        } catch {
            await redis.shutdown()
            await mariadb.stop()
            try? await group.shutdownGracefully()
            throw error
        }
        await redis.shutdown()
        await mariadb.stop()
        try? await group.shutdownGracefully()
        return results
    }

    /// One progress line per scenario.
    static func line(_ result: FaultResult) -> String {
        "\(result.passed ? "PASS" : "FAIL") \(result.fault.rawValue) (\(result.durability)) ×\(result.injections): "
            + "\(result.answers) answers, \(result.acknowledgedHolds) holds, oversold \(result.oversoldUnits), "
            + "lost \(result.lostReservations) holds / \(result.lostTransitions) transitions, reconcile exit \(result.reconcileExit)"
            + (result.keysDeleted.isEmpty ? "" : ", keys deleted \(result.keysDeleted.sorted { $0.key < $1.key })")
            + (result.failures.isEmpty ? "" : " — " + result.failures.joined(separator: "; "))
    }

    /// The README table: one row per scenario.
    public static func markdown(_ results: [FaultResult]) -> String {
        var lines = [
            "| fault | durability | injected | answers (2xx / 503) | holds acked | oversold units | acked holds lost | loss window | acked over stock | reconciler | result |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for result in results {
            let ok = result.answersByStatus.filter { $0.key.hasPrefix("2") }.values.reduce(0, +)
            let unavailable = result.answersByStatus["503"] ?? 0
            let window = result.lossWindowMs.map { String(format: "%.0f ms", $0) } ?? "–"
            lines.append(
                "| \(result.fault.rawValue) | \(result.durability) | \(result.injections) | \(ok) / \(unavailable) | "
                    + "\(result.acknowledgedHolds) | \(result.oversoldUnits) | \(result.lostReservations) | \(window) | "
                    + "\(result.acknowledgedOverStock) | \(result.reconcileExit == 0 ? "clean" : "exit \(result.reconcileExit)") | "
                    + "\(result.passed ? "pass" : "FAIL") |"
            )
        }
        return lines.joined(separator: "\n")
    }
}

/// The settings `inventoryd` runs with against the suite's servers.
struct ServiceEnvironment: Sendable {
    let redisPort: Int
    let mysqlPort: Int
    let httpPort: Int
    /// The cluster's nodes; empty for a single Redis.
    var clusterPorts: [Int] = []

    func variables(durability: String, prefix: String = "inv", httpPort: Int? = nil) -> [String: String] {
        var variables = [
            "INVENTORY_REDIS_HOST": "127.0.0.1", "INVENTORY_REDIS_PORT": String(redisPort),
            "INVENTORY_MYSQL_HOST": "127.0.0.1", "INVENTORY_MYSQL_PORT": String(mysqlPort),
            "INVENTORY_MYSQL_USER": "inventory", "INVENTORY_MYSQL_PASSWORD": "inventory",
            "INVENTORY_MYSQL_DATABASE": "inventory", "INVENTORY_HTTP_HOST": "127.0.0.1",
            "INVENTORY_HTTP_PORT": String(httpPort ?? self.httpPort), "INVENTORY_DURABILITY": durability,
            "INVENTORY_KEY_PREFIX": prefix, "INVENTORY_REDIS_TIMEOUT_MS": "500",
            "INVENTORY_WORKER_CONSUMER": "faults", "INVENTORY_WORKER_CLAIM_IDLE_MS": "2000",
            // A killed instance's streams are read again after 2 s, not 10 (the shortest lease there is).
            "INVENTORY_WORKER_LEASE_MS": "2000",
            "INVENTORY_LOG_FORMAT": "json", "INVENTORY_LOG_LEVEL": "notice",
        ]
        if !clusterPorts.isEmpty {
            variables["INVENTORY_REDIS_CLUSTER"] = clusterPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        }
        return variables
    }
}
