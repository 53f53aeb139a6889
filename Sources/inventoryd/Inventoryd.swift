import ArgumentParser
import Foundation
import Inventory
import InventoryAPI
import Logging
import MySQLClient
import RedisClient
import ServiceLifecycle

/// `inventoryd`: the service and its operational commands. Settings come from `INVENTORY_*` variables.
@main
struct Inventoryd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redis-first inventory reservation service.",
        subcommands: [Serve.self, Worker.self, Migrate.self],
        defaultSubcommand: Serve.self
    )
}

/// The clients and engine every long-running command builds from the settings.
struct Components {
    let settings: ServiceConfiguration
    let logger: Logger
    let redis: RedisClient
    let mysql: MySQLClient
    let engine: InventoryEngine

    init() throws {
        settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        var logger = Logger(label: "inventoryd")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
        self.logger = logger
        redis = RedisClient(configuration: settings.redis, logger: logger)
        mysql = MySQLClient(configuration: settings.mysql, logger: logger)
        engine = InventoryEngine(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), configuration: settings.engine, logger: logger
        )
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
        return services
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP service, with the write-back worker and the expiry sweeper unless turned off."
    )

    func run() async throws {
        let components = try Components()
        await components.loadScripts()
        let settings = components.settings
        let app = buildApplication(
            engine: components.engine, configuration: settings,
            services: [components.redis] + components.backgroundServices(), logger: components.logger
        )
        components.logger.info(
            "starting",
            metadata: [
                "http": "\(settings.httpHost):\(settings.httpPort)", "redis": "\(settings.redis.host):\(settings.redis.port)",
                "mysql": "\(settings.mysql.host):\(settings.mysql.port)/\(settings.mysql.database)",
                "durability": "\(settings.engine.durability.rawValue)", "worker": "\(settings.runWorker)",
            ]
        )
        try await app.runService()
        await components.mysql.shutdown()
    }
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the write-back worker and the expiry sweeper (no HTTP)."
    )

    func run() async throws {
        let components = try Components()
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
