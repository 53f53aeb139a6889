/// An item's stock as Redis holds it.
public struct StockLevel: Sendable, Equatable {
    public let item: StockItemID
    /// What can still be reserved (`stock_num`); below zero only for backorders.
    public let available: Int64
    /// What live reservations hold (`used_stock_num`).
    public let reserved: Int64
    public let soldOut: Bool
    public let infinite: Bool
    public let dangerNum: Int64
    public let backorderLimit: Int64
    /// At most this many units per user (0: no limit).
    public var userLimit: Int64 = 0
    /// The per-user limit counts over windows of this many seconds (0: the item's whole life).
    public var userWindowSeconds: Int64 = 0

    /// At or below the low-stock threshold.
    public var lowStock: Bool { !infinite && available <= dangerNum }

    /// What is physically there and not yet sold: available plus reserved; for an infinite item `available` itself (its
    /// stock_num is its on-hand stock: a hold takes nothing from it), as a PUT of stock reads it.
    public var onHand: Int64 { infinite ? available : available + reserved }

    public init(
        item: StockItemID, available: Int64, reserved: Int64, soldOut: Bool, infinite: Bool, dangerNum: Int64,
        backorderLimit: Int64, userLimit: Int64 = 0, userWindowSeconds: Int64 = 0
    ) {
        self.item = item
        self.available = available
        self.reserved = reserved
        self.soldOut = soldOut
        self.infinite = infinite
        self.dangerNum = dangerNum
        self.backorderLimit = backorderLimit
        self.userLimit = userLimit
        self.userWindowSeconds = userWindowSeconds
    }
}

/// The settings a `PUT` of stock sets.
public struct StockSettings: Sendable, Equatable {
    /// On-hand stock: available plus reserved.
    public let stock: Int64
    public let infinite: Bool?
    public let dangerNum: Int64?
    public let backorderLimit: Int64?
    /// Units per user, 0 for none.
    public let userLimit: Int64?
    /// The window the per-user limit counts over, in seconds; 0 for the item's whole life.
    public let userWindowSeconds: Int64?

    public init(
        stock: Int64, infinite: Bool? = nil, dangerNum: Int64? = nil, backorderLimit: Int64? = nil,
        userLimit: Int64? = nil, userWindowSeconds: Int64? = nil
    ) {
        self.stock = stock
        self.infinite = infinite
        self.dangerNum = dangerNum
        self.backorderLimit = backorderLimit
        self.userLimit = userLimit
        self.userWindowSeconds = userWindowSeconds
    }
}

/// An idempotent change of on-hand stock.
public struct StockAdjustment: Sendable, Equatable {
    public let adjustmentId: String
    public let delta: Int64
    public let reason: String?

    public init(adjustmentId: String, delta: Int64, reason: String?) {
        self.adjustmentId = adjustmentId
        self.delta = delta
        self.reason = reason
    }

    var fingerprint: String { "\(delta)|\(reason ?? "")" }
}

/// How an adjustment ended when it did not fail.
public struct AdjustmentOutcome: Sendable, Equatable {
    public let level: StockLevel
    public let replayed: Bool
}
