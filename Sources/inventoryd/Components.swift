import ArgumentParser
import Foundation
import Inventory
import InventoryBaseline
import InventoryAPI
import InventorySettings
import Logging
import MySQLClient
import Prometheus
import RedisClient
import ServiceLifecycle

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

    /// The write-back worker (when configured, or always with `alwaysWorker`), the expiry sweeper, and the engine's loops
    /// (`EngineLoop`: the retrier of stored compensations, the drain floors' refresher, the Redis memory gauge).
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
        services.append(EngineLoop.compensations(engine, logger: logger))
        services.append(EngineLoop.drainFloors(engine, logger: logger))
        services.append(EngineLoop.redisMemory(engine, logger: logger))
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

/// Logs as JSON lines (or text) on standard output, with the request and order ids of the task that logs.
func bootstrapLogging(_ settings: ServiceConfiguration) {
    let format = settings.logFormat
    LoggingSystem.bootstrap(
        { label, provider in
            if format == "text" { return StreamLogHandler.standardOutput(label: label, metadataProvider: provider) }
            return JSONLogHandler(label: label, metadataProvider: provider)
        },
        metadataProvider: RequestMetadata.provider
    )
}
