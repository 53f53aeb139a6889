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
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP service.")

    func run() async throws {
        let settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        let logger = makeLogger(settings)
        let redis = RedisClient(configuration: settings.redis, logger: logger)
        let mysql = MySQLClient(configuration: settings.mysql, logger: logger)
        let engine = InventoryEngine(
            redis: redis, mysql: mysql, scripts: try InventoryScripts.load(), configuration: settings.engine,
            logger: logger
        )
        do {
            try await engine.loadScripts()
        } catch {
            logger.warning("scripts not loaded at start; /readyz stays false until Redis answers", metadata: ["error": "\(error)"])
        }
        let app = buildApplication(engine: engine, configuration: settings, services: [redis], logger: logger)
        logger.info(
            "starting",
            metadata: [
                "http": "\(settings.httpHost):\(settings.httpPort)", "redis": "\(settings.redis.host):\(settings.redis.port)",
                "mysql": "\(settings.mysql.host):\(settings.mysql.port)/\(settings.mysql.database)",
            ]
        )
        try await app.runService()
        await mysql.shutdown()
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the SQL files of migrations/ that are not applied yet.")

    func run() async throws {
        let settings = try ServiceConfiguration.fromEnvironment(ProcessInfo.processInfo.environment)
        let logger = makeLogger(settings)
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

func makeLogger(_ settings: ServiceConfiguration) -> Logger {
    var logger = Logger(label: "inventoryd")
    logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .info
    return logger
}
