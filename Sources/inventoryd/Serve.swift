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
        // Listed first, the stores' clients are shut down last, after every service that uses them.
        var services: [any Service] = [components.mysql] + (components.replica.map { [$0] } ?? []) + [components.redis]
            + components.backgroundServices()
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
    }
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
