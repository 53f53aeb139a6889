/// What the status page shows of an engine: the items at or near zero, the outbox and the last reconciliation.
public struct EngineStatus: Sendable, Equatable {
    /// Items at or below their low-stock threshold (or at zero), as the store has them now, lowest first; at
    /// most the limit asked for.
    public var lowStock: [StockLevel]
    /// How many tracked items are low in all; `lowStock` may show fewer.
    public var lowStockCount: Int
    /// Entries waiting in the outbox streams for the write-back worker; nil for an engine without an outbox.
    public var outboxEntries: Int?
    /// The last recorded reconciliation; nil when there is none or MySQL could not be asked.
    public var lastReconcile: ReconcileSummary?

    public init(lowStock: [StockLevel] = [], lowStockCount: Int = 0, outboxEntries: Int? = nil, lastReconcile: ReconcileSummary? = nil) {
        self.lowStock = lowStock
        self.lowStockCount = lowStockCount
        self.outboxEntries = outboxEntries
        self.lastReconcile = lastReconcile
    }
}
