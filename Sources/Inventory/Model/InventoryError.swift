/// Why an inventory operation did not do what was asked. A small set, mapped once to HTTP by the API layer.
public enum InventoryError: Error, Sendable, Equatable {
    /// One line that could not be held in full.
    public struct Shortage: Sendable, Equatable {
        public let skuId: UInt64
        public let requested: Int64
        public let available: Int64

        public init(skuId: UInt64, requested: Int64, available: Int64) {
            self.skuId = skuId
            self.requested = requested
            self.available = available
        }
    }

    /// One line that would take the user past the item's per-user limit.
    public struct UserLimit: Sendable, Equatable {
        public let skuId: UInt64
        public let requested: Int64
        /// Units per user (per window, if the item has one).
        public let limit: Int64
        /// What the user holds or bought of it already (in the current window).
        public let used: Int64
    }

    /// Not enough stock; nothing was held.
    case insufficientStock([Shortage])
    /// The user would get more than a per-user limit allows; nothing was held.
    case userLimitExceeded([UserLimit])
    /// Items with a per-user limit, reserved by an order that names no user.
    case userRequired([UInt64])
    /// The item's code pool hands out nothing now: `reason` is "offline", "expired" or "empty" (a reusable pool
    /// without codes).
    case poolUnavailable(skuId: UInt64, reason: String)
    /// A code asked for is not in the item's pool, or not usable (held or used).
    case codeUnavailable(skuId: UInt64, code: String)
    /// The item has no code pool (codes uploaded or asked for an item without one).
    case noCodePool(UInt64)
    /// A change a code pool does not allow (its kind once set; the stock of a one-time pool, which is its codes).
    case poolConflict(String)
    /// Items that do not exist (not set up with `PUT /v1/stock`).
    case unknownItems([UInt64])
    /// The order was cancelled or expired, so it cannot be reserved or confirmed.
    case orderClosed(ReservationStatus)
    /// The same orderId (or adjustmentId) came with a different body.
    case idempotencyConflict
    /// No such order, or no such stock item.
    case notFound
    /// The order is in a state that does not allow this step (e.g. refund of an unconfirmed order).
    case invalidState(ReservationStatus)
    /// Setting or lowering on-hand stock below what live reservations hold.
    case belowReserved(reserved: Int64)
    /// A store could not be reached; nothing was changed.
    case unavailable(String)
    /// This engine does not offer the operation (the database-only baseline).
    case notSupported(String)
    /// A store stopped answering mid-call: the change may have been made. Retrying with the same id is safe.
    case outcomeUnknown(String)
    /// The change was made in both stores, but the stock level it left could not be read for the answer.
    case madeUnread(String)
}
