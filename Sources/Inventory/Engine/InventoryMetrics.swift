import Dispatch
import Metrics
import NIOConcurrencyHelpers

/// The service's own metrics, through swift-metrics (exported for Prometheus by the binary). Every label set is
/// made once and kept, so the hot path only increments.
public enum InventoryMetrics {
    /// Reserve outcomes.
    public enum Outcome: String, CaseIterable, Sendable {
        case created, replayed, insufficientStock = "insufficient_stock", unknownItem = "unknown_item"
        case orderClosed = "order_closed", conflict, unavailable, userLimit = "user_limit", userRequired = "user_required"
    }

    private static let reservations: [Outcome: Counter] = Dictionary(
        uniqueKeysWithValues: Outcome.allCases.map {
            ($0, Counter(label: "inventory_reservations_total", dimensions: [("outcome", $0.rawValue)]))
        }
    )

    private static let limitedCounter = Counter(label: "inventory_hot_item_limited_total")

    /// A reserve refused by the hot-item limiter.
    public static func limited() { limitedCounter.increment() }

    private static let businessLimitedCounter = Counter(label: "inventory_business_limited_total")

    /// A request refused by the per-business admission limit.
    public static func businessLimited() { businessLimitedCounter.increment() }

    private static let bulkRefusedCounter = Counter(label: "inventory_bulk_refused_total")

    /// A code export or upload refused because the bulk gate's queue was full.
    public static func bulkRefused() { bulkRefusedCounter.increment() }

    static func reservation(_ outcome: Outcome) {
        reservations[outcome]?.increment()
    }

    static func reservation(for error: any Error) {
        switch error as? InventoryError {
        case .insufficientStock: reservation(.insufficientStock)
        case .unknownItems: reservation(.unknownItem)
        case .orderClosed: reservation(.orderClosed)
        case .idempotencyConflict: reservation(.conflict)
        case .userLimitExceeded: reservation(.userLimit)
        case .userRequired: reservation(.userRequired)
        default: reservation(.unavailable)
        }
    }

    private static let timers = NIOLockedValueBox<[String: Timer]>([:])
    private static let redisErrors = Counter(label: "inventory_redis_errors_total")
    private static let mysqlErrors = Counter(label: "inventory_mysql_errors_total")

    /// Times one script call (`inventory_redis_script_seconds{script}`).
    static func scriptTimer(_ name: String) -> Timer {
        timer("inventory_redis_script_seconds", ("script", name))
    }

    /// Times one kind of MySQL work (`inventory_mysql_seconds{operation}`).
    static func mysqlTimer(_ operation: String) -> Timer {
        timer("inventory_mysql_seconds", ("operation", operation))
    }

    /// A timer per label and dimension value, made on first use and kept.
    private static func timer(_ label: String, _ dimension: (String, String)) -> Timer {
        let key = "\(label)\u{0}\(dimension.1)"
        return timers.withLockedValue { timers in
            if let timer = timers[key] { return timer }
            let timer = Timer(label: label, dimensions: [dimension])
            timers[key] = timer
            return timer
        }
    }

    static func redisError() { redisErrors.increment() }
    /// A Redis node found to have gone back in time (`inventory_redis_went_back_total`), its keys then forgotten.
    static func redisWentBack() { redisWentBackCounter.increment() }
    private static let redisWentBackCounter = Counter(label: "inventory_redis_went_back_total")
    static func mysqlError() { mysqlErrors.increment() }

    /// Journal lag: event appended in Redis → its row committed in MySQL.
    static let journalLag = Timer(label: "inventory_journal_lag_seconds")
    /// Outbox entries per write-back batch.
    static let batchSize = Recorder(label: "inventory_writeback_batch_events", aggregate: true)
    /// Entries waiting in the outbox streams.
    static let outboxEntries = Gauge(label: "inventory_outbox_entries")
    /// The highest share of its maxmemory a Redis node uses (`InventoryEngine.recordRedisMemory`).
    static let redisMemoryUsedRatio = Gauge(label: "inventory_redis_memory_used_ratio")
    /// Calls refused because Redis is full (README "Redis full").
    static let redisFullRefusals = Counter(label: "inventory_redis_full_refusals_total")
    /// Outbox entries applied to MySQL.
    static let eventsApplied = Counter(label: "inventory_writeback_events_total")
    /// Differences the reconciler found (and how many it fixed).
    static let reconcileDifferences = Counter(label: "inventory_reconcile_differences_total")
    static let reconcileFixed = Counter(label: "inventory_reconcile_fixed_total")
    static let reconcileLastDifferences = Gauge(label: "inventory_reconcile_last_differences")
    static let reconcileItems = Gauge(label: "inventory_reconcile_last_items")
    /// Holds released by the expiry sweeper.
    static let expired = Counter(label: "inventory_expired_total")
    /// Items rebuilt from MySQL.
    static let itemRebuilds = Counter(label: "inventory_item_rebuilds_total")
    /// Outbox lines left out of the journal because Redis lost them and rebuilt their item first.
    static let staleLines = Counter(label: "inventory_writeback_stale_lines_total")

    /// The items the low-stock gauges track, and how many of them each business has.
    private struct LowStockTable {
        var gauges: [StockItemID: (Gauge, Gauge)] = [:]
        var perBusiness: [String: Int] = [:]
    }

    private static let lowStock = NIOLockedValueBox(LowStockTable())
    /// Items tracked by the low-stock gauges at most: a sale has a few hot items, not millions.
    static let lowStockLimit = 1000
    /// Items of one business tracked at most: one business's many low items cannot take every slot from the others.
    static let lowStockPerBusiness = 100

    /// Records an item's available and reserved while it is at or below its low-stock threshold
    /// (`inventory_low_stock_available{biz,sku}`, `inventory_low_stock_reserved{biz,sku}`); returns true the first
    /// time the item is seen low, so the caller can log it once.
    @discardableResult
    static func lowStock(_ item: StockItemID, available: Int64, reserved: Int64) -> Bool {
        let (gauges, first) = lowStock.withLockedValue { table -> ((Gauge, Gauge)?, Bool) in
            if let gauges = table.gauges[item] { return (gauges, false) }
            guard table.gauges.count < lowStockLimit, table.perBusiness[item.bizId, default: 0] < lowStockPerBusiness else {
                return (nil, false)
            }
            let labels = [("biz", item.bizId), ("sku", String(item.skuId))]
            let gauges = (
                Gauge(label: "inventory_low_stock_available", dimensions: labels),
                Gauge(label: "inventory_low_stock_reserved", dimensions: labels)
            )
            table.gauges[item] = gauges
            table.perBusiness[item.bizId, default: 0] += 1
            return (gauges, true)
        }
        gauges?.0.record(available)
        gauges?.1.record(reserved)
        return first
    }

    /// An item no longer low: its gauges go (no stale "sold out" after a restock) and its slot is free again.
    static func recovered(_ item: StockItemID) {
        let gauges = lowStock.withLockedValue { table -> (Gauge, Gauge)? in
            guard let gauges = table.gauges.removeValue(forKey: item) else { return nil }
            let left = table.perBusiness[item.bizId, default: 1] - 1
            table.perBusiness[item.bizId] = left > 0 ? left : nil
            return gauges
        }
        gauges?.0.destroy()
        gauges?.1.destroy()
    }

    /// The items the low-stock gauges track (at most `lowStockLimit`, `lowStockPerBusiness` of one business): those
    /// seen low and not seen recovered since; of `bizId` only, when given.
    static func lowStockItems(of bizId: String? = nil) -> [StockItemID] {
        lowStock.withLockedValue { table in
            guard let bizId else { return Array(table.gauges.keys) }
            return table.gauges.keys.filter { $0.bizId == bizId }
        }
    }

    /// Nanoseconds since `start` (a `DispatchTime.now().uptimeNanoseconds`).
    static func since(_ start: UInt64) -> Int64 {
        Int64(DispatchTime.now().uptimeNanoseconds &- start)
    }
}
