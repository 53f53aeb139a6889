import ArgumentParser
import Foundation
import Inventory
import InventoryBaseline
import InventoryAPI
import Logging
import MySQLClient
import Prometheus
import RedisClient
import ServiceLifecycle

/// `inventoryd`: the service and its operational commands. Settings come from `INVENTORY_*` variables.
@main
struct Inventoryd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redis-first inventory reservation service.",
        subcommands: [Serve.self, Worker.self, Migrate.self, Reconcile.self, Warm.self, Token.self, Config.self],
        defaultSubcommand: Serve.self
    )
}

/// The clients and engine every long-running command builds from the settings.
struct Components {
    let settings: ServiceConfiguration
    let logger: Logger
    /// The single Redis, or the cluster when `INVENTORY_REDIS_CLUSTER` names its nodes.
    let redis: any RedisRouter & Service
    let mysql: MySQLClient
    let replica: MySQLClient?
    let engine: InventoryEngine

    init() throws {
        settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        bootstrapLogging(settings)
        var logger = Logger(label: "inventoryd")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        self.logger = logger
        if settings.redisCluster.isEmpty {
            redis = RedisClient(configuration: settings.redis, logger: logger)
        } else {
            redis = RedisClusterClient(seeds: settings.redisCluster, configuration: settings.redis, logger: logger)
        }
        mysql = MySQLClient(configuration: settings.mysql, logger: logger)
        replica = settings.mysqlReplica.map { MySQLClient(configuration: $0, logger: logger) }
        engine = InventoryEngine(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), configuration: settings.engine, logger: logger
        )
    }

    /// Refuses a Redis that may evict the service's keys (`maxmemory-policy` other than `noeviction`) unless
    /// `INVENTORY_ALLOW_EVICTION` is on; a policy that cannot be read (a managed Redis without `CONFIG`) or a Redis
    /// that is down at start is warned about, not fatal.
    func checkEvictionPolicy() async throws {
        let policies: [InventoryEngine.EvictionPolicy]
        do {
            policies = try await engine.evictionPolicies()
        } catch {
            logger.warning("Redis maxmemory-policy not checked: Redis did not answer", metadata: ["error": "\(error)"])
            return
        }
        for policy in policies {
            switch policy {
            case .safe:
                continue
            case .unknown(let node, let reason):
                logger.warning(
                    "Redis maxmemory-policy cannot be read; it must be noeviction, or Redis may drop holds and orders",
                    metadata: ["node": "\(node)", "reason": "\(reason)"]
                )
            case .evicting(let node, let name):
                let message =
                    "Redis at \(node) has maxmemory-policy \(name): it may evict holds, orders and journal events. "
                    + "Set it to noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf), "
                    + "or start with INVENTORY_ALLOW_EVICTION=on to run anyway"
                guard settings.allowEviction else { throw ConfigurationError(description: message) }
                logger.warning("\(message); running anyway (INVENTORY_ALLOW_EVICTION=on)")
            }
        }
    }

    /// Loads the scripts; a Redis that is down at start is not fatal (readiness stays false until it answers).
    func loadScripts() async {
        do {
            try await engine.loadScripts()
        } catch {
            logger.warning("scripts not loaded at start; /readyz stays false until Redis answers", metadata: ["error": "\(error)"])
        }
    }

    /// The write-back worker (when configured, or always with `alwaysWorker`) and the expiry sweeper.
    func backgroundServices(alwaysWorker: Bool = false) -> [any Service] {
        var services: [any Service] = []
        if settings.runWorker || alwaysWorker {
            services.append(
                WriteBackWorker(
                    engine: engine, redis: redis, readerConfiguration: settings.redis,
                    journal: JournalRepository(client: mysql), keys: settings.engine.keys, configuration: settings.worker,
                    logger: logger
                )
            )
        }
        if settings.sweepIntervalMilliseconds > 0 {
            services.append(ExpirySweeper(engine: engine, intervalMilliseconds: settings.sweepIntervalMilliseconds, logger: logger))
        }
        services.append(CompensationRetrier(engine: engine, logger: logger))
        return services
    }

    /// The reconciler, reading a replica first when `INVENTORY_MYSQL_REPLICA_HOST` is set.
    func reconciler() throws -> Reconciler {
        Reconciler(
            redis: redis, mysql: mysql, replica: replica, scripts: try InventoryScripts.load(), keys: settings.engine.keys,
            logger: logger
        )
    }

    /// Closes the clients of a one-shot command.
    func close() async {
        await redis.shutdown()
        await mysql.shutdown()
        await replica?.shutdown()
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP service, with the write-back worker and the expiry sweeper unless turned off."
    )

    func run() async throws {
        // Metrics first: swift-metrics binds every metric made from now on to this factory.
        let registry = bootstrapPrometheus()
        let components = try Components()
        let settings = components.settings
        try settings.checkExposure()
        if settings.tokens.isEmpty {
            components.logger.notice(
                "no access tokens configured: the API is open to this machine only (loopback); set INVENTORY_TOKENS or INVENTORY_TOKENS_FILE to listen elsewhere",
                metadata: ["http": "\(settings.httpHost):\(settings.httpPort)"]
            )
        } else {
            components.logger.info(
                "access tokens configured",
                metadata: [
                    "checkout": "\(settings.tokens.counts[.checkout] ?? 0)", "admin": "\(settings.tokens.counts[.admin] ?? 0)",
                    "openMetrics": "\(settings.openMetrics)",
                ]
            )
        }
        if settings.engineKind == "db" {
            try await serveDatabaseOnly(components, metrics: registry)
            return
        }
        try await components.checkEvictionPolicy()
        await components.loadScripts()
        var services: [any Service] = [components.redis] + components.backgroundServices()
        if settings.mallocTrimSeconds > 0 && MemoryReturner.available {
            services.append(MemoryReturner(intervalSeconds: settings.mallocTrimSeconds, logger: components.logger))
        }
        if settings.reconcileIntervalSeconds > 0 {
            services.append(
                ReconcilerService(
                    reconciler: try components.reconciler(), intervalSeconds: settings.reconcileIntervalSeconds,
                    fix: settings.reconcileFix, logger: components.logger
                )
            )
        }
        let app = try buildApplication(
            engine: components.engine, configuration: settings, services: services, metrics: registry,
            logger: components.logger
        )
        components.logger.info(
            "starting",
            metadata: [
                "http": "\(settings.httpHost):\(settings.httpPort)", "redis": settings.redisCluster.isEmpty
                    ? "\(settings.redis.host):\(settings.redis.port)" : "cluster \(settings.redisCluster.joined(separator: ","))",
                "mysql": "\(settings.mysql.host):\(settings.mysql.port)/\(settings.mysql.database)",
                "durability": "\(settings.engine.durability.rawValue)", "worker": "\(settings.runWorker)",
                "lua": "\(ProjectFiles.directory("lua", environmentVariable: "INVENTORY_LUA_DIR"))",
                "migrations": "\(ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR"))",
                "openapi": "\(ProjectFiles.directory("openapi", environmentVariable: "INVENTORY_OPENAPI_DIR"))",
            ]
        )
        try await app.runService()
        await components.mysql.shutdown()
    }
}

/// Logs as JSON lines (or text) on standard output, with the request and order ids of the task that logs.
private func bootstrapLogging(_ settings: ServiceConfiguration) {
    let format = settings.logFormat
    LoggingSystem.bootstrap(
        { label, provider in
            if format == "text" { return StreamLogHandler.standardOutput(label: label, metadataProvider: provider) }
            return JSONLogHandler(label: label, metadataProvider: provider)
        },
        metadataProvider: RequestMetadata.provider
    )
}

/// The database-only baseline: the same API over one MySQL transaction per reservation; no Redis, no worker.
private func serveDatabaseOnly(_ components: Components, metrics: PrometheusCollectorRegistry) async throws {
    let settings = components.settings
    let engine = DatabaseOnlyEngine(mysql: components.mysql, defaultTTLSeconds: settings.engine.defaultTTLSeconds)
    let app = try buildApplication(engine: engine, configuration: settings, metrics: metrics, logger: components.logger)
    components.logger.info(
        "starting the database-only engine (baseline for benchmarks)",
        metadata: ["http": "\(settings.httpHost):\(settings.httpPort)", "mysql": "\(settings.mysql.host):\(settings.mysql.port)"]
    )
    try await app.runService()
    await components.mysql.shutdown()
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the write-back worker and the expiry sweeper (no HTTP)."
    )

    func run() async throws {
        let components = try Components()
        try await components.checkEvictionPolicy()
        await components.loadScripts()
        let settings = components.settings
        let services = components.backgroundServices(alwaysWorker: true)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: components.redis)] + services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: components.logger
            )
        )
        components.logger.info("write-back worker starting", metadata: ["consumer": "\(settings.worker.consumer)"])
        try await group.run()
        await components.mysql.shutdown()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the SQL files of migrations/ that are not applied yet.")

    func run() async throws {
        let settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        var logger = Logger(label: "inventoryd")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        let mysql = MySQLClient(configuration: settings.mysql, logger: logger)
        let directory = ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR")
        do {
            let applied = try await Migrator(client: mysql, directory: directory, logger: logger).migrate()
            print(applied.isEmpty ? "migrations: up to date" : "migrations: applied \(applied.joined(separator: ", "))")
            await mysql.shutdown()
        } catch {
            await mysql.shutdown()
            throw error
        }
    }
}

struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that Redis and MySQL agree on every stock item (or one).",
        discussion: "Exit status: 0 clean, 1 differences found, 2 could not run."
    )

    @Flag(help: "Check every stock item (the default).")
    var all = false

    @Option(help: "Check one item, as BIZ:SKU.")
    var item: String?

    @Option(help: "Check the items of one business line.")
    var biz: String?

    @Flag(help: "Repair what differs (rebuild the Redis counters from MySQL and the work in flight).")
    var fix = false

    @Flag(help: "Print the report as JSON on stdout.")
    var json = false

    func run() async throws {
        let scope: Reconciler.Scope
        if let item {
            let parts = item.split(separator: ":")
            guard parts.count == 2, let sku = UInt64(parts[1]) else {
                throw ValidationError("--item must be BIZ:SKU, like default:42")
            }
            scope = .item(StockItemID(bizId: String(parts[0]), skuId: sku))
        } else if let biz {
            scope = .business(biz)
        } else {
            scope = .all
        }
        let components: Components
        do {
            components = try Components()
        } catch {
            FileHandle.standardError.write(Data("reconcile: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let started = ContinuousClock.now
        let outcome: Result<ReconcileReport, any Error>
        do {
            let reconciler = try components.reconciler()
            let report = try await reconciler.run(scope, fix: fix) { report in
                if ContinuousClock.now - started > .seconds(2) {
                    FileHandle.standardError.write(
                        Data("reconcile: \(report.itemsChecked) items checked, \(report.differences.count) differences\n".utf8)
                    )
                }
            }
            outcome = .success(report)
        } catch {
            outcome = .failure(error)
        }
        await components.close()
        switch outcome {
        case .failure(let error):
            FileHandle.standardError.write(Data("reconcile: could not run: \(error)\n".utf8))
            throw ExitCode(2)
        case .success(let report):
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(
                    "reconcile: \(report.itemsChecked) items checked (\(report.itemsNotLoaded) not loaded in Redis), "
                        + "\(report.differences.count) differences, \(report.differences.filter(\.fixed).count) fixed, "
                        + "\(report.poolsChecked) code pools, \(report.codeDifferences.count) code differences, "
                        + String(format: "%.2f s", report.seconds)
                )
                for difference in report.codeDifferences {
                    print("  \(difference.item): \(difference.detail) (not fixed: rebuild the item)")
                }
                for difference in report.differences {
                    print(
                        "  \(difference.item): db stock \(difference.dbStock), journal reserved \(difference.journalReserved); "
                            + "redis \(difference.redis); expected \(difference.expected)\(difference.fixed ? " (fixed)" : "")"
                    )
                }
            }
            // Differences found is 1 even when --fix repaired them: the run found something; a second run tells.
            if !report.clean { throw ExitCode(1) }
        }
    }
}

struct Warm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Preload stock items into Redis before a sale: one BIZ:SKU per line, from a file or stdin."
    )

    @Argument(help: "File with one BIZ:SKU per line; stdin when absent.")
    var file: String?

    func run() async throws {
        let text: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read \(file)")
            }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        var items: [StockItemID] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(separator: ":")
            guard parts.count == 2, let sku = UInt64(parts[1]) else {
                throw ValidationError("line \(number + 1): expected BIZ:SKU, got '\(trimmed)'")
            }
            items.append(StockItemID(bizId: String(parts[0]), skuId: sku))
        }
        let components = try Components()
        await components.loadScripts()
        var loaded = 0
        var unknown: [StockItemID] = []
        var failed = 0
        for (index, item) in items.enumerated() {
            do {
                if try await components.engine.ensureItem(item) { loaded += 1 } else { unknown.append(item) }
            } catch {
                failed += 1
                FileHandle.standardError.write(Data("warm: \(item): \(error)\n".utf8))
            }
            if (index + 1) % 1000 == 0 {
                FileHandle.standardError.write(Data("warm: \(index + 1)/\(items.count)\n".utf8))
            }
        }
        await components.close()
        print("warm: \(loaded) items in Redis, \(unknown.count) unknown to MySQL, \(failed) failed")
        for item in unknown { print("  unknown: \(item)") }
        if failed > 0 || !unknown.isEmpty { throw ExitCode(1) }
    }
}

/// `inventoryd token`: makes a new random bearer token and prints it with the entry that configures it.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a new access token: the token (give it to the client) and its INVENTORY_TOKENS entry (digest only)."
    )

    @Option(help: "The token's role: checkout (reservations, stock reads) or admin (everything).")
    var role = "checkout"

    @Option(name: .customLong("business"), help: "A business the token may touch (repeat for several); none: every business.")
    var businesses: [String] = []

    func run() throws {
        guard let role = AccessTokens.Role(rawValue: role) else { throw ValidationError("--role is checkout or admin") }
        if let bad = businesses.first(where: { !AccessTokens.isBusinessName($0) }) {
            throw ValidationError("--business \(bad): a business is 1-32 of a-z 0-9 _ -")
        }
        let made = AccessTokens.generate(role: role, businesses: businesses)
        print("token: \(made.token)")
        print("entry: \(made.entry)")
    }
}

/// `inventoryd config`: the effective settings (environment and defaults), secrets masked; exit 1 on a setting that
/// cannot be used, with the message `serve` would stop with.
struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the effective settings, secrets masked.")

    func run() throws {
        let settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        let rows = settings.described()
        let width = rows.map(\.name.count).max() ?? 0
        for row in rows {
            print(row.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + row.value)
        }
        do {
            try settings.checkExposure()
        } catch {
            print("")
            print("serve would refuse to start: \(error)")
            throw ExitCode(1)
        }
    }
}
