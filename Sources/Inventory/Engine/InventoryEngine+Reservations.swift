import Logging

/// The engine's order operations: each runs its flow in `Reservations` (holds, confirm, cancel, expiry, refund).
extension InventoryEngine {
    /// Holds stock for every item of an order, or for none.
    public func reserve(_ command: ReserveCommand) async throws -> ReserveOutcome {
        try await reservations.reserve(command, failpoint: "")
    }

    /// `reserve` that stops where a test's `failpoint` says (`after_first_part`, the scripts' own), as a crash would:
    /// a test-only seam, not part of `InventoryService`.
    func reserve(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        try await reservations.reserve(command, failpoint: failpoint)
    }

    /// Payment succeeded: the held stock is sold.
    public func confirm(orderId: String, bizId: String) async throws -> TransitionOutcome {
        try await OwnerCheck.$active.withValue(true) {
            try await reservations.confirm(named: OrderRef(bizId: bizId, orderId: orderId).name)
        }
    }

    /// Gives an order's held stock back. Cancelling an unknown order records it as cancelled, so that a reserve
    /// arriving later is refused (no hanging reservation).
    public func cancel(orderId: String, bizId: String) async throws -> TransitionOutcome {
        try await cancel(orderId: orderId, bizId: bizId, failpoint: "")
    }

    /// `cancel` that stops where a test's `failpoint` says (rollback.lua's `after_rollback_key`): a test-only seam.
    func cancel(orderId: String, bizId: String, failpoint: String) async throws -> TransitionOutcome {
        try await OwnerCheck.$active.withValue(true) {
            try await reservations.cancel(named: OrderRef(bizId: bizId, orderId: orderId).name, failpoint: failpoint)
        }
    }

    /// Refund before shipment: a confirmed order's stock becomes available again, in Redis now and in MySQL
    /// through the write-back worker.
    public func refund(orderId: String, bizId: String) async throws -> TransitionOutcome {
        try await OwnerCheck.$active.withValue(true) {
            try await reservations.refund(named: OrderRef(bizId: bizId, orderId: orderId).name)
        }
    }

    /// The order as Redis holds it.
    public func reservation(orderId: String, bizId: String) async throws -> Reservation {
        try await OwnerCheck.$active.withValue(true) {
            try await reservations.reservation(named: OrderRef(bizId: bizId, orderId: orderId).name)
        }
    }

    /// Releases an unconfirmed hold whose time is up (the expiry sweeper's step). Returns whether it expired now.
    /// `orderId`: the order's Redis name, as `expiredOrders` lists it.
    @discardableResult
    public func expire(named orderId: String) async throws -> Bool {
        try await reservations.expire(named: orderId)
    }
}
