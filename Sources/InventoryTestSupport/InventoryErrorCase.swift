import Inventory

extension InventoryError {
    /// The error's case without its details (the free text of `unavailable`, the amounts of a shortage), for tests
    /// that check which error a call threw, not only that it threw one.
    public enum Case: Sendable, Equatable {
        case insufficientStock, userLimitExceeded, userRequired, poolUnavailable, codeUnavailable, noCodePool
        case poolConflict, unknownItems, orderClosed, idempotencyConflict, notFound, invalidState, belowReserved
        case unavailable, notSupported, outcomeUnknown, madeUnread
    }

    public var `case`: Case {
        switch self {
        case .insufficientStock: .insufficientStock
        case .userLimitExceeded: .userLimitExceeded
        case .userRequired: .userRequired
        case .poolUnavailable: .poolUnavailable
        case .codeUnavailable: .codeUnavailable
        case .noCodePool: .noCodePool
        case .poolConflict: .poolConflict
        case .unknownItems: .unknownItems
        case .orderClosed: .orderClosed
        case .idempotencyConflict: .idempotencyConflict
        case .notFound: .notFound
        case .invalidState: .invalidState
        case .belowReserved: .belowReserved
        case .unavailable: .unavailable
        case .notSupported: .notSupported
        case .outcomeUnknown: .outcomeUnknown
        case .madeUnread: .madeUnread
        }
    }
}
