/// What the HTTP API needs from an engine. The Redis-first `InventoryEngine` is the service; the
/// `DatabaseOnlyEngine` implements the same operations the way the old design did, for side-by-side benchmarks.
public protocol InventoryService: Sendable {
    /// Hold time of a reservation that does not say.
    var defaultTTLSeconds: Int { get }
    func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome
    /// Orders are scoped by business (`OrderRef`): each order operation names the business and its own orderId.
    func confirm(orderId: String, bizId: String) async throws -> TransitionOutcome
    func cancel(orderId: String, bizId: String) async throws -> TransitionOutcome
    func refund(orderId: String, bizId: String) async throws -> TransitionOutcome
    func reservation(orderId: String, bizId: String) async throws -> Reservation
    func stock(_ id: StockItemID) async throws -> StockLevel
    func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel
    func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome
    /// Named checks (store reachable, scripts loaded, …) and whether each passes.
    func readinessChecks() async -> [(name: String, ok: Bool)]
    /// What the status page shows, with at most `lowStockLimit` low items; throws `InventoryError.unavailable`
    /// only when the store that holds the stock cannot be asked.
    func status(lowStockLimit: Int) async throws -> EngineStatus
    /// One business's low items, at most `limit`, and how many there are (its own status; nothing of the others).
    func lowStock(of bizId: String, limit: Int) async throws -> (levels: [StockLevel], count: Int)
    /// Code pools (see `InventoryEngine`); engines without them answer `notSupported`.
    func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool
    func pool(_ id: StockItemID) async throws -> CodePool
    func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome
    func exportCodes(_ id: StockItemID) async throws -> CodeExport
}

extension InventoryService {
    public func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool {
        throw InventoryError.notSupported("code pools need the Redis-first engine")
    }
    public func pool(_ id: StockItemID) async throws -> CodePool {
        throw InventoryError.notSupported("code pools need the Redis-first engine")
    }
    public func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome {
        throw InventoryError.notSupported("code pools need the Redis-first engine")
    }
    public func exportCodes(_ id: StockItemID) async throws -> CodeExport {
        throw InventoryError.notSupported("code pools need the Redis-first engine")
    }

    /// An engine that tracks nothing for the status page shows nothing (the database-only baseline).
    public func status(lowStockLimit: Int) async throws -> EngineStatus { EngineStatus() }
    public func lowStock(of bizId: String, limit: Int) async throws -> (levels: [StockLevel], count: Int) { ([], 0) }
}

extension InventoryEngine: InventoryService {
    public var defaultTTLSeconds: Int { configuration.defaultTTLSeconds }

    public func readinessChecks() async -> [(name: String, ok: Bool)] {
        let state = await readiness()
        return [("redis", state.redis), ("scripts", state.scripts), ("mysql", state.mysql)]
    }
}
