import MySQLClient

/// Code pools (`CodePoolAdministration`).
extension InventoryEngine {
    var pools: CodePoolAdministration { CodePoolAdministration(stores: stores, rebuilder: rebuilder, repository: codePools) }

    /// Creates or changes the item's code pool (its kind is fixed once set), in MySQL, then in Redis.
    public func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool { try await pools.setPool(id, pool) }

    /// The item's code pool; `noCodePool` when it has none.
    public func pool(_ id: StockItemID) async throws -> CodePool { try await pools.pool(id) }

    /// Adds codes to the item's pool (MySQL, then Redis); `codes` must already be valid and distinct. Refused with
    /// nothing changed while Redis is full: MySQL would record codes Redis cannot take.
    public func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome {
        // (The item's node: Redis refuses per node.)
        if try await stores.redisCall({ try await redisMemoryUsedRatio(holding: keys.item(id)) }) > 1 {
            InventoryMetrics.redisFullRefusals.increment()
            throw EngineStores.redisFull("a code upload waits for room")
        }
        return try await pools.loadCodes(id, codes)
    }

    /// The pool's codes still unused, live from Redis, a page at a time (`CodePoolAdministration.exportCodes`).
    public func exportCodes(_ id: StockItemID) async throws -> CodeExport { try await pools.exportCodes(id) }

    /// Every unused code, sorted and each once: for tests and small pools.
    public func unusedCodes(_ id: StockItemID) async throws -> [String] { try await pools.unusedCodes(id) }

    static let oneTimeStock = CodePoolAdministration.oneTimeStock
}
