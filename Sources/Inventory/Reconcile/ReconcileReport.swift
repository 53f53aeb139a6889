/// One stock item on which Redis and MySQL disagree, with the numbers on both sides.
public struct ReconcileDifference: Sendable, Equatable, Encodable {
    public let bizId: String
    public let skuId: UInt64
    /// MySQL's stock (system of record).
    public let dbStock: Int64
    /// Sum of the item's RESERVED journal lines.
    public let journalReserved: Int64
    /// What Redis holds: stock_num, used_stock_num, confirmed_unapplied, refund_unapplied.
    public let redis: Counters
    /// What Redis should hold, given MySQL and the work in flight.
    public let expected: Counters
    /// Whether fix mode repaired it.
    public var fixed: Bool

    /// An item's four counters.
    public struct Counters: Sendable, Equatable, Encodable, CustomStringConvertible {
        public var stockNum: Int64
        public var usedStockNum: Int64
        public var confirmedUnapplied: Int64
        public var refundUnapplied: Int64

        var arguments: [String] {
            [String(stockNum), String(usedStockNum), String(confirmedUnapplied), String(refundUnapplied)]
        }

        public var description: String {
            "stock_num=\(stockNum) used_stock_num=\(usedStockNum) confirmed_unapplied=\(confirmedUnapplied) refund_unapplied=\(refundUnapplied)"
        }
    }

    public var item: StockItemID { StockItemID(bizId: bizId, skuId: skuId) }
}

/// A code pool whose codes do not agree with its counts, or with MySQL. Reported, not fixed: the repair is a
/// rebuild of the item from MySQL (drop its hash and code set once nothing of it is in flight).
public struct CodeDifference: Sendable, Equatable, Encodable {
    public let bizId: String
    public let skuId: UInt64
    /// What disagrees, with the numbers or codes.
    public let detail: String

    public var item: StockItemID { StockItemID(bizId: bizId, skuId: skuId) }
}

/// The outcome of one reconciliation.
public struct ReconcileReport: Sendable, Encodable {
    public var itemsChecked = 0
    /// Items MySQL has and Redis does not (cold or evicted): not a difference, the init path loads them on use.
    public var itemsNotLoaded = 0
    /// Items a stock change (PUT, adjustment) was between its Redis and MySQL halves on: not judged this time.
    public var itemsInFlight = 0
    public var differences: [ReconcileDifference] = []
    /// Code pools checked, and what disagreed about their codes.
    public var poolsChecked = 0
    public var codeDifferences: [CodeDifference] = []
    public var seconds = 0.0

    public var clean: Bool { differences.isEmpty && codeDifferences.isEmpty }
}

/// Why a reconciliation could not run.
public enum ReconcileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another reconciler holds the lease.
    case leaseHeld
    /// Another reconciler took the lease while this run was under way (it stalled past the lease's lifetime): it
    /// stopped after `itemsChecked` items, whose differences are logged and recorded.
    case leaseLost(itemsChecked: Int)
    /// A store failed.
    case store(String)

    public var description: String {
        switch self {
        case .leaseHeld: return "another reconciliation is running (lease held)"
        case .leaseLost(let items):
            return "stopped after \(items) items: another reconciliation took the lease mid-run (the differences found are recorded)"
        case .store(let detail): return detail
        }
    }
}
