/// One stock item: a business line's SKU.
public struct StockItemID: Sendable, Hashable, CustomStringConvertible {
    public let bizId: String
    public let skuId: UInt64

    public init(bizId: String, skuId: UInt64) {
        self.bizId = bizId
        self.skuId = skuId
    }

    public var description: String { "\(bizId):\(skuId)" }
}

/// What a caller may do when an item has less available than requested.
public enum ShortageMode: String, Sendable, CaseIterable {
    /// Hold nothing and report the shortage (the default).
    case reject
    /// Hold what is available, down to zero, on each item.
    case partial
    /// Hold everything, letting available go below zero down to the item's backorder limit.
    case backorder
}

/// A reservation's state. `reserved` → `confirmed` | `cancelled` | `expired`; `confirmed` → `refunded`.
public enum ReservationStatus: String, Sendable {
    case reserved
    case confirmed
    case cancelled
    case expired
    case refunded
}
