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

// The commands that need no store: making a token, printing the settings.

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
