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

// The commands beside `serve` that run against the stores: the worker alone, migrations, reconcile, warm-up.

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
                // The stores' clients first: shut down last, after the services using them.
                services: [.init(service: components.mysql), .init(service: components.redis)] + services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: components.logger
            )
        )
        components.logger.info("write-back worker starting", metadata: ["consumer": "\(settings.worker.consumer)"])
        try await group.run()
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
            // A run that lost its lease mid-way did run: its differences are logged and recorded.
            let stopped: Bool
            if case ReconcileError.leaseLost? = error as? ReconcileError { stopped = true } else { stopped = false }
            FileHandle.standardError.write(Data("reconcile: \(stopped ? "" : "could not run: ")\(error)\n".utf8))
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
