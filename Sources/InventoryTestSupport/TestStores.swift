import Foundation
import Inventory
import Logging
import MySQLClient
import RedisClient

/// Real Redis and MariaDB for tests, as `scripts/setup.sh` starts them (settings from `INVENTORY_*`).
///
/// Every test gets its own key prefix and business id, so tests run in parallel without seeing each other's
/// keys or rows, against the same servers. With `cluster` (default: `INVENTORY_TEST_REDIS_CLUSTER=1`) Redis is the
/// local 3-master cluster of `scripts/cluster.sh` and the keys are laid out for it; a test that names `redisPort`
/// (a fault proxy in front of the single Redis) runs on the single Redis.
public struct TestStores: Sendable {
    public let redis: any RedisRouter
    public let mysql: MySQLClient
    public let engine: InventoryEngine
    public let keys: KeyLayout
    /// A business id no other test uses.
    public let bizId: String
    public let redisConfiguration: RedisConfiguration
    public let logger: Logger

    /// Opens clients, applies migrations once per process, and runs `body`; the clients are closed afterwards and
    /// this test's Redis keys deleted, whatever `body` did.
    public static func with<T: Sendable>(
        redisTimeoutMilliseconds: Int64 = 2000,
        redisPort: Int? = nil,
        mysqlPort: Int? = nil,
        durability: Durability = .async,
        cluster: Bool = clusterByDefault,
        clusterSeeds seeds: [String]? = nil,
        _ body: @Sendable (TestStores) async throws -> T
    ) async throws -> T {
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let tag = String(UUID().uuidString.prefix(8)).lowercased()
        // A test that names a Redis port puts a fault proxy in front of the single Redis (or runs one of its own):
        // it runs there. One that names cluster seeds runs on that cluster (one of its own).
        let cluster = seeds != nil || (cluster && redisPort == nil)
        let redisConfiguration = RedisConfiguration(
            host: redisAddress(environment).host,
            port: redisPort ?? redisAddress(environment).port,
            connections: 2,
            // Generous for a loaded CI machine (a cluster node took over 1 s to accept once); a store that is down
            // refuses at once, so no test waits for it.
            connectTimeoutMilliseconds: 5000,
            commandTimeoutMilliseconds: redisTimeoutMilliseconds,
            database: cluster ? 0 : redisTestDatabase(environment)
        )
        let redis: any RedisRouter =
            cluster
            ? RedisClusterClient(seeds: seeds ?? clusterSeeds(environment), configuration: redisConfiguration, logger: logger)
            : RedisClient(configuration: redisConfiguration, logger: logger)
        var mysqlSettings = mysqlConfiguration(environment)
        try await Migrations.once(configuration: mysqlSettings, logger: logger)
        if let mysqlPort {
            mysqlSettings.port = mysqlPort
            // The proxy cuts and refuses at once; these bound only a server slow under a loaded machine.
            mysqlSettings.connectTimeoutSeconds = 3
            mysqlSettings.readTimeoutSeconds = 5
            mysqlSettings.writeTimeoutSeconds = 5
        }
        let mysql = MySQLClient(configuration: mysqlSettings, logger: logger)
        let keys = KeyLayout(prefix: "t\(tag)", shards: cluster ? 8 : 4, clustered: cluster)
        var configuration = EngineConfiguration(durability: durability, keys: keys)
        // INVENTORY_REBUILD_CHUNK=1 runs every test (and the model check) with each rebuild in parts of one hold.
        if let chunk = ProcessInfo.processInfo.environment["INVENTORY_REBUILD_CHUNK"].flatMap({ Int($0) }), chunk > 0 {
            configuration.rebuildChunk = chunk
        }
        let engine = InventoryEngine(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), configuration: configuration, logger: logger
        )
        try await engine.loadScripts()
        let stores = TestStores(
            redis: redis, mysql: mysql, engine: engine, keys: keys, bizId: "t\(tag)",
            redisConfiguration: redisConfiguration, logger: logger
        )
        do {
            let result = try await body(stores)
            await stores.close()
            return result
        } catch {
            await stores.close()
            throw error
        }
    }

    /// The debug `inventoryd` that `swift build --build-tests` (scripts/test.sh) produces, for tests that run it as
    /// a process.
    public static var inventorydBinary: String {
        (ProcessInfo.processInfo.environment["INVENTORY_BUILD_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ProjectFiles.repositoryDirectory(".build")) + "/debug/inventoryd"
    }

    /// Whether tests use the local Redis Cluster unless they say (`INVENTORY_TEST_REDIS_CLUSTER=1`).
    public static var clusterByDefault: Bool { ProcessInfo.processInfo.environment["INVENTORY_TEST_REDIS_CLUSTER"] == "1" }

    /// The nodes of the local cluster `scripts/cluster.sh` starts (`INVENTORY_CLUSTER_PORT_BASE`, 3 masters).
    public static func clusterSeeds(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let base = Int(environment["INVENTORY_CLUSTER_PORT_BASE"] ?? "") ?? 7390
        return (0..<3).map { "127.0.0.1:\(base + $0)" }
    }

    /// Where the project's Redis listens.
    public static func redisAddress(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> (host: String, port: Int) {
        (environment["INVENTORY_REDIS_HOST"] ?? "127.0.0.1", Int(environment["INVENTORY_REDIS_PORT"] ?? "") ?? 6390)
    }

    /// The Redis database the tests use (`INVENTORY_REDIS_TEST_DB`, default 1), as MySQL has `inventory_test`: the
    /// service's data in database 0 (millions of keys after a load test) then never slows the tests' scans.
    public static func redisTestDatabase(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        Int(environment["INVENTORY_REDIS_TEST_DB"] ?? "") ?? 1
    }

    /// The environment for an `inventoryd` process run against this test's stores: the test databases, its key
    /// prefix and shards; callers add what the process needs besides.
    public func serviceEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        // The outer HTTP port (the service's, or CI's) is never a test process's: tests run many at once.
        environment["INVENTORY_HTTP_PORT"] = nil
        environment["INVENTORY_MYSQL_DATABASE"] = Self.mysqlConfiguration(environment).database
        environment["INVENTORY_REDIS_DB"] = String(redisConfiguration.database)
        environment["INVENTORY_KEY_PREFIX"] = keys.prefix
        environment["INVENTORY_SHARDS"] = String(keys.shards)
        if keys.clustered { environment["INVENTORY_REDIS_CLUSTER"] = Self.clusterSeeds().joined(separator: ",") }
        return environment
    }

    /// The MySQL settings of the test database.
    public static func mysqlConfiguration(_ environment: [String: String]) -> MySQLConfiguration {
        MySQLConfiguration(
            host: environment["INVENTORY_MYSQL_HOST"] ?? "127.0.0.1",
            port: Int(environment["INVENTORY_MYSQL_PORT"] ?? "") ?? 3390,
            user: environment["INVENTORY_MYSQL_USER"] ?? "inventory",
            password: environment["INVENTORY_MYSQL_PASSWORD"] ?? "inventory",
            database: environment["INVENTORY_MYSQL_TEST_DATABASE"] ?? "inventory_test",
            poolSize: 4,
            // A test's many concurrent callers on 4 connections, beside the whole suite on two cores, queued past the
            // service's 10 s (300 trivial queries in a CI run): the wait's own test sets its limit (`acquireTimeout`).
            acquireTimeoutSeconds: 120
        )
    }

    /// Another engine on this test's stores with some settings changed (`change` edits a copy of the test engine's),
    /// its scripts loaded.
    public func engine(changing change: (inout EngineConfiguration) -> Void) async throws -> InventoryEngine {
        var configuration = engine.configuration
        change(&configuration)
        let changed = InventoryEngine(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), configuration: configuration, logger: logger
        )
        try await changed.loadScripts()
        return changed
    }

    /// A write-back worker over this test's streams (not started).
    /// `redis`: the client of its own commands (leases, claims), this test's by default; `mysql`: the client of its
    /// journal, this test's by default.
    public func worker(
        batchSize: Int = 1000, claimIdleMilliseconds: Int = 30_000, consumer: String = "test", leaseMilliseconds: Int = 10_000,
        redis: (any RedisRouter)? = nil, readerConfiguration: RedisConfiguration? = nil, mysql: MySQLClient? = nil
    ) -> WriteBackWorker {
        WriteBackWorker(
            engine: engine, redis: redis ?? self.redis, readerConfiguration: readerConfiguration ?? redisConfiguration,
            journal: JournalRepository(client: mysql ?? self.mysql), keys: keys,
            configuration: WriteBackConfiguration(
                consumer: consumer, batchSize: batchSize, blockMilliseconds: 20, claimIdleMilliseconds: claimIdleMilliseconds,
                maxBackoffMilliseconds: 200, leaseMilliseconds: leaseMilliseconds
            ),
            logger: logger
        )
    }

    /// After a fault proxy cut the connections: pings every pooled connection until each answers again, so the
    /// test's next command does not land on a connection that is still being torn down.
    public func reconnected(within seconds: Double = 5) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var healthy = 0
        while healthy < redisConfiguration.connections * 2, ContinuousClock.now < deadline {
            do {
                for node in try await redis.dataNodes() { try await node.command("PING") }
                healthy += 1
            } catch {
                healthy = 0
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// Entries still in this test's outbox streams (the worker deletes what it has applied).
    public func outboxLength() async throws -> Int {
        var total = 0
        for stream in keys.outboxes {
            total += Int(try await redis.command("XLEN", stream).int ?? 0)
        }
        return total
    }

    /// Waits, bounded, until the worker has applied and deleted every outbox entry; false if it did not in time.
    public func drained(within seconds: Double = 30) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try await outboxLength() == 0 { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Runs a write-back worker until the outbox is empty (bounded), then stops it; false if it did not drain in time.
    public func drainWithWorker(within seconds: Double = 30) async throws -> Bool {
        let worker = worker()
        let running = Task { try await worker.run() }
        let drained = try await drained(within: seconds)
        worker.stop()
        try await running.value
        return drained
    }

    /// A reconciler over this test's stores (small pages, so a test's few items still span several).
    public func reconciler(pageSize: Int = 3) throws -> Reconciler {
        Reconciler(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), keys: keys, logger: logger,
            pageSize: pageSize
        )
    }

    /// The journal rows of this test's business (or of `business`), by order, as (order, sku, quantity, status).
    public func journalRows(of business: String? = nil) async throws -> [JournalLine] {
        let result = try await mysql.query(
            "SELECT order_id, sku_id, quantity, status FROM reservation_journal WHERE biz_id = ? ORDER BY order_id, sku_id",
            [.string(business ?? bizId)]
        )
        return result.rows.map { row in
            JournalLine(
                orderId: row.string("order_id") ?? "", skuId: UInt64(row.int64("sku_id") ?? 0),
                quantity: row.int64("quantity") ?? 0, status: row.string("status") ?? ""
            )
        }
    }

    /// MySQL's stock of one item of this test's business.
    public func mysqlStock(_ sku: UInt64) async throws -> Int64? {
        try await StockRepository(client: mysql).row(bizId: bizId, skuId: sku)?.stock
    }

    /// How many stock changes' halves hold a fence on the item (lua/lib/fence.lua): the open halves' times, or the
    /// count of before them. Lapsed ones included, as the item holds them.
    public func openFences(_ sku: UInt64) async throws -> Int {
        let fields = try await redis.command("HMGET", keys.item(item(sku)), "admin_open", "admin_pending").array ?? []
        let halves = fields.first?.text.map { $0.split(separator: " ").count } ?? 0
        return halves + (Int(fields.last?.text ?? "") ?? 0)
    }

    /// Moves every fence on the item `milliseconds` into the past (its halves' times, or the time of the count of
    /// before them), as if the changes that opened them were made that long ago; an adjustment key naming one of
    /// those halves moves with it. Returns the adjustment key's new time, if it names one.
    @discardableResult
    public func ageFences(_ sku: UInt64, by milliseconds: Int64 = 61_000, adjustmentKey: String? = nil) async throws -> Int64? {
        let itemKey = keys.item(item(sku))
        let fields = try await redis.command("HMGET", itemKey, "admin_open", "admin_since").array ?? []
        if let open = fields.first?.text {
            let moved = open.split(separator: " ").map { String(Int64($0)! - milliseconds) }.joined(separator: " ")
            _ = try await redis.command("HSET", itemKey, "admin_open", moved)
        }
        if let since = fields.last?.text, let at = Int64(since) {
            _ = try await redis.command("HSET", itemKey, "admin_since", String(at - milliseconds))
        }
        guard let adjustmentKey, let value = try await redis.command("GET", adjustmentKey).text else { return nil }
        // '<state>:<mark>:<ms>:<made>:<fingerprint>' (lua/lib/fence.lua; a key from before halves had names lacks
        // <made>); a done one or a bare fingerprint has no time. A half made at the owner's time is made a minute
        // earlier too (its name moves with it).
        var parts = value.split(separator: ":", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4, parts[0] == "pending" || parts[0] == "unsettled", let at = Int64(parts[2]) else { return nil }
        let moved = at - milliseconds
        if parts.count == 5, parts[3] == parts[2] { parts[3] = String(moved) }
        parts[2] = String(moved)
        _ = try await redis.command("SET", adjustmentKey, parts.joined(separator: ":"), "KEEPTTL")
        return moved
    }

    /// Retry tasks (`compensation_tasks`) of this test's keys not yet done.
    public func pendingRetryTasks() async throws -> Int64 {
        let result = try await mysql.query(
            "SELECT COUNT(*) AS n FROM compensation_tasks WHERE status = 'PENDING' AND payload LIKE ?",
            [.string("%\(keys.prefix):%")]
        )
        return result.rows.first?.int64("n") ?? -1
    }

    /// A stock item of this test's business.
    public func item(_ sku: UInt64) -> StockItemID { StockItemID(bizId: bizId, skuId: sku) }

    /// The raw fields of an item hash.
    public func itemFields(_ sku: UInt64) async throws -> [String: String] {
        let reply = try await redis.command("HGETALL", keys.item(item(sku)))
        var fields: [String: String] = [:]
        let values = reply.array ?? []
        for index in stride(from: 0, to: values.count - 1, by: 2) {
            fields[values[index].text ?? ""] = values[index + 1].text ?? ""
        }
        return fields
    }

    /// The Redis name (`OrderRef.name`) of this business's order `orderId`: what its keys and indexes carry.
    public func orderName(_ orderId: String) -> String { OrderRef(bizId: bizId, orderId: orderId).name }

    /// The shard of the part of an order of this business that holds `sku` (the order's own shard on a single Redis).
    public func partShard(_ orderId: String, sku: UInt64) -> Int { keys.partShard(orderId: orderName(orderId), item: item(sku)) }

    /// The hash of the part of an order that holds `sku` (the whole order on a single Redis).
    public func orderKey(_ orderId: String, sku: UInt64) -> String { keys.orderPart(orderName(orderId), item: item(sku)) }

    /// An item other than `sku` whose line of `orderId` falls in the same part of the order (on a cluster a part of
    /// another shard is an order of its own to the worker's duplicate check; on a single Redis any item: 2).
    public func skuSharingPart(_ orderId: String, with sku: UInt64) -> UInt64 {
        (2...64).first { $0 != sku && partShard(orderId, sku: $0) == partShard(orderId, sku: sku) } ?? 2
    }

    /// The outbox stream the events of the part of an order that holds `sku` go to.
    public func outboxKey(_ orderId: String, sku: UInt64) -> String { keys.outbox(shard: partShard(orderId, sku: sku)) }

    /// The expiry index of the part of an order that holds `sku`.
    public func expiryKey(_ orderId: String, sku: UInt64) -> String { keys.expiryIndex(shard: partShard(orderId, sku: sku)) }

    /// The undone marker of a reserve event of the part of an order that holds `sku`.
    public func undoneMarkerKey(_ orderId: String, eventId: String, sku: UInt64) -> String {
        keys.undoneMarker(orderId: orderName(orderId), eventId: eventId, shard: partShard(orderId, sku: sku))
    }

    /// Deletes every key of this test, as FLUSHALL would for this test only (other tests share the servers): one
    /// script per node, so no request sees half of a node's data gone (on a cluster each master loses its part at
    /// its own instant). Then the write-back worker's check runs, as a service's does within a second: Redis's drain
    /// marks went with the rest, so the service forgets what Redis made since (`InventoryEngine.forgetIfWentBack`).
    public func loseEverything() async throws {
        for node in try await redis.dataNodes() {
            _ = try await node.command(
                "EVAL",
                """
                local cursor = '0'
                repeat
                  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
                  cursor = page[1]
                  for _, key in ipairs(page[2]) do redis.call('DEL', key) end
                until cursor == '0'
                return 1
                """,
                "0", "\(keys.prefix):*"
            )
        }
        try await engine.forgetIfWentBack(journal: JournalRepository(client: mysql))
    }

    /// This test's keys of one item: `suffix` is a pattern after the item's common start ("rsv:*", "*"), which
    /// depends on the layout (single Redis or cluster).
    public func itemKeys(_ sku: UInt64, _ suffix: String) async throws -> [String] {
        let itemKey = keys.item(item(sku))
        let base = itemKey.dropFirst(keys.prefix.count + 1).dropLast("item".count)
        return try await self.keys(matching: base + suffix)
    }

    /// Scans this test's keys matching a pattern after the prefix (on every master of a cluster).
    public func keys(matching pattern: String) async throws -> [String] {
        var found: [String] = []
        for node in try await redis.dataNodes() {
            var cursor = "0"
            repeat {
                let reply = try await node.command("SCAN", cursor, "MATCH", "\(keys.prefix):\(pattern)", "COUNT", "1000")
                let parts = reply.array ?? []
                cursor = parts.first?.text ?? "0"
                found.append(contentsOf: (parts.count > 1 ? parts[1].array ?? [] : []).compactMap(\.text))
            } while cursor != "0"
        }
        return found.sorted()
    }

    private func close() async {
        if let leftovers = try? await keys(matching: "*"), !leftovers.isEmpty {
            if keys.clustered {
                // One slot per command on a cluster.
                for key in leftovers { _ = try? await redis.command("DEL", key) }
            } else {
                for chunk in stride(from: 0, to: leftovers.count, by: 500) {
                    let slice = Array(leftovers[chunk..<min(chunk + 500, leftovers.count)])
                    _ = try? await redis.send(["DEL"] + slice, routingKey: slice[0])
                }
            }
        }
        await redis.shutdown()
        await mysql.shutdown()
    }
}

/// One journal row, as tests compare them.
public struct JournalLine: Sendable, Equatable, CustomStringConvertible {
    public let orderId: String
    public let skuId: UInt64
    public let quantity: Int64
    public let status: String

    public init(orderId: String, skuId: UInt64, quantity: Int64, status: String) {
        self.orderId = orderId
        self.skuId = skuId
        self.quantity = quantity
        self.status = status
    }

    public var description: String { "\(orderId)/\(skuId)x\(quantity)=\(status)" }
}

/// Applies the migrations once per test process, however many tests start at once.
actor Migrations {
    static let shared = Migrations()
    private var done = false

    static func once(configuration: MySQLConfiguration, logger: Logger) async throws {
        try await shared.run(configuration: configuration, logger: logger)
    }

    private func run(configuration: MySQLConfiguration, logger: Logger) async throws {
        if done { return }
        let mysql = MySQLClient(configuration: configuration, logger: logger)
        let directory = ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR")
        do {
            _ = try await Migrator(client: mysql, directory: directory, logger: logger).migrate()
            await mysql.shutdown()
        } catch {
            await mysql.shutdown()
            throw error
        }
        done = true
    }
}
