/// Where an order lives in Redis and what decides its state: the topology, chosen once when the engine is made
/// (`InventoryEngine.init`), so that the reservation flows (`Reservations`: holds, transitions, expiry) and the order
/// reader hold no topology check of their own. They ask their placement at each point where the two differ.
/// - `SingleRedisPlacement`: the order is one hash in its shard; each script decides and moves it in one step.
/// - `ClusterPlacement`: the order is a directory in its own shard, which decides its state first, and one part per
///   shard its items are in, which follow the directory.
protocol OrderPlacement: Sendable {
    /// Whether a transition is decided in the order's directory before its parts move; the parts' scripts then
    /// follow that decision (confirm.lua leaves the deadline to it, rollback.lua moves an expiry it decided).
    var decidesInDirectory: Bool { get }

    /// Holds stock for every item of the order, or for none. `journalChecked`: the journal was asked about the
    /// order, so an order Redis does not know is new.
    func reserve(
        _ command: ReserveCommand, journalChecked: Bool, failpoint: String, reservations: Reservations
    ) async throws -> ReserveOutcome

    /// Records in Redis, again, the cancel of an order the journal knows only by its tombstone (a cancel before any
    /// reserve, which Redis forgot), so that the reserve, run again, finds the order closed. `shard`: the shard
    /// whose generation marker sent the reserve to the journal.
    func recordCancel(_ orderId: String, shard: Int, reservations: Reservations) async throws

    /// A confirm's decision before its parts move: nil to move them, or the answer without moving any.
    func startConfirm(
        _ orderId: String, order: InventoryEngine.StoredOrder, reservations: Reservations
    ) async throws -> TransitionOutcome?

    /// A cancel's or an expiry's decision before its parts move. `order`: nil when Redis (and the journal) have none.
    func startRollback(
        _ orderId: String, order: InventoryEngine.StoredOrder?, reason: ReservationStatus, reservations: Reservations
    ) async throws -> RollbackStart

    /// A refund's decision before its parts move.
    func startRefund(_ orderId: String, reservations: Reservations) async throws

    /// An expiry found the order decided `state` (not reserved): what its parts still lack of that decision is made
    /// (a confirm or cancel that stopped half-way).
    func moveLeftBehind(_ orderId: String, decided state: ReservationStatus, reservations: Reservations) async throws

    /// The order as Redis holds it, nil when Redis has not all of it.
    func readOrder(_ orderId: String, reader: OrderReader) async throws -> InventoryEngine.StoredOrder?

    /// After an order's parts were restored from the journal (`shards`: the shards of its rows), what else the order
    /// needs to be whole again.
    func restoreRest(
        _ orderId: String, shards: [Int], from row: JournalRow, status: String, request: String, reader: OrderReader
    ) async throws

    /// The key whose `biz` field names the business of an order kept under its bare orderId (before orders were
    /// scoped).
    func ownerKey(bareOrderId: String, keys: KeyLayout) -> String

    /// Reserves still under way past their deadline in one shard (their callers stopped half-way), at most `limit`.
    /// Only a placement that keeps reserves of several steps has any.
    var leavesReservesUnderWay: Bool { get }
    func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int, reservations: Reservations) async throws -> [String]
    /// Gives up on one of them; whether it was given up now.
    func abandon(named orderId: String, reservations: Reservations) async throws -> Bool
}

/// What a cancel or an expiry does once its placement has decided.
enum RollbackStart {
    /// Move the order's parts to `transition`: the reason, or (`decidedBefore`) what the directory had decided
    /// already (a cancel of an order that expired answers the expiry's replay).
    case move(transition: ReservationStatus, decidedBefore: Bool)
    /// The answer is known without moving any part.
    case answer(TransitionOutcome)
}

extension InventoryEngine {
    /// The placement of this engine's topology: a cluster keeps orders in directories and parts.
    static func placement(for keys: KeyLayout) -> any OrderPlacement {
        keys.clustered ? ClusterPlacement() : SingleRedisPlacement()
    }
}
