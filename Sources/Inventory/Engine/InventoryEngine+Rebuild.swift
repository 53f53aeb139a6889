import Foundation
import Logging
import MySQLClient
import RedisClient

/// The engine's face of the one init path (`ItemRebuilder`).
extension InventoryEngine {
    /// Counters of this engine.
    public var stats: EngineCounters { rebuilder.counters.withLockedValue { $0 } }

    /// Makes sure the item is in Redis, rebuilding it from MySQL when it is missing: one caller across all
    /// instances takes the init lock and rebuilds, the others wait (bounded) and then see the rebuilt item.
    /// Returns false when MySQL has no such item either (see `ItemRebuilder.ensureItem`).
    public func ensureItem(_ id: StockItemID, countsAsRebuild: Bool = true, madeInMySQL: Bool = false) async throws -> Bool {
        try await rebuilder.ensureItem(id, countsAsRebuild: countsAsRebuild, madeInMySQL: madeInMySQL)
    }
}
