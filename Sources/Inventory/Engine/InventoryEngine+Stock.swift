/// Stock administration (`StockAdministration`).
extension InventoryEngine {
    var stockAdministration: StockAdministration {
        StockAdministration(stores: stores, rebuilder: rebuilder, stockRepository: stockRepository, compensator: compensator)
    }

    /// The item's stock (rebuilt from MySQL first if Redis does not have it).
    public func stock(_ id: StockItemID) async throws -> StockLevel { try await stockAdministration.stock(id) }

    /// The item's stock as Redis has it now; nil when Redis does not have the item.
    func readStock(_ id: StockItemID) async throws -> StockLevel? { try await stockAdministration.readStock(id) }

    /// Sets on-hand stock (available + reserved) and the item's settings in Redis and MySQL.
    public func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel {
        try await stockAdministration.setStock(id, settings)
    }

    /// Adds or removes on-hand stock once per adjustment id, in Redis and MySQL.
    public func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        try await stockAdministration.adjustStock(id, adjustment)
    }
}
