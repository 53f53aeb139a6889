/// A single Redis: the order is one hash in its shard, and each script decides and moves it in one step (the
/// deadline, the state it may leave), so there is nothing to decide before the script runs.
struct SingleRedisPlacement: OrderPlacement {
    var decidesInDirectory: Bool { false }
    var leavesReservesUnderWay: Bool { false }

    func reserve(
        _ command: ReserveCommand, journalChecked: Bool, failpoint: String, reservations: Reservations
    ) async throws -> ReserveOutcome {
        try await reservations.reservePart(
            command, shard: reservations.keys.shard(of: command.orderName), fingerprint: command.fingerprint,
            journalChecked: journalChecked, failpoint: failpoint
        ).outcome
    }

    func recordCancel(_ orderId: String, shard: Int, reservations: Reservations) async throws {
        // rollback.lua of an order it does not know records the cancel (and its tombstone event).
        _ = try await reservations.stores.run(
            RollbackCall(
                orderId: orderId, shard: shard, bizId: "", lines: [], linesText: "", reason: .cancelled,
                retentionSeconds: reservations.configuration.retentionSeconds, layout: reservations.keys
            )
        )
    }

    func startConfirm(
        _ orderId: String, order: InventoryEngine.StoredOrder, reservations: Reservations
    ) async throws -> TransitionOutcome? { nil }

    func startRollback(
        _ orderId: String, order: InventoryEngine.StoredOrder?, reason: ReservationStatus, reservations: Reservations
    ) async throws -> RollbackStart {
        .move(transition: reason, decidedBefore: false)
    }

    func startRefund(_ orderId: String, reservations: Reservations) async throws {}

    func moveLeftBehind(_ orderId: String, decided state: ReservationStatus, reservations: Reservations) async throws {}

    func readOrder(_ orderId: String, reader: OrderReader) async throws -> InventoryEngine.StoredOrder? {
        try await reader.readPart(orderId, shard: reader.keys.shard(of: orderId))
    }

    func restoreRest(
        _ orderId: String, shards: [Int], from row: JournalRow, status: String, request: String, reader: OrderReader
    ) async throws {}

    func ownerKey(bareOrderId: String, keys: KeyLayout) -> String { keys.order(bareOrderId) }

    func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int, reservations: Reservations) async throws -> [String] {
        []
    }

    func abandon(named orderId: String, reservations: Reservations) async throws -> Bool { false }
}
