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

/// `inventoryd`: the service and its operational commands. Settings come from `INVENTORY_*` variables.
@main
struct Inventoryd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redis-first inventory reservation service.",
        subcommands: [Serve.self, Worker.self, Migrate.self, Reconcile.self, Warm.self, Token.self, Config.self],
        defaultSubcommand: Serve.self
    )
}
