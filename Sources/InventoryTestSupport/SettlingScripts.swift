import Inventory

extension ScriptName {
    /// The scripts that run when Redis is full (`#!lua flags=allow-oom` as their first line, README "Redis full"):
    /// each settles what exists, none makes a hold. Redis never refuses them for memory; only their own record of an
    /// order never seen is refused (lua/lib/full.lua), and says so. The contract the tests hold the scripts to.
    public static let settlingWhenFull: [ScriptName] = [
        .confirm, .refund, .rollback, .undoReserve, .dirTransition, .dirClose, .undoStock, .adminDone, .unsettle, .applied,
        .drainMark, .raiseTo, .lease, .outboxGroup, .outboxRead, .outboxClaim,
    ]
}
