import Logging
import MySQLClient
import RedisClient

/// The journal from the engine's side: sync mode's commits before the answer (`SyncJournal`), and the worker's calls
/// back into Redis (undo, acknowledge, applied).
extension InventoryEngine {
    var syncJournal: SyncJournal { reservations.syncJournal }

    /// Thrown by `commitJournal` when the order's rows were in the journal already and its new hold was taken back:
    /// the reserve is answered from the order restored from the journal (a replay, or a conflict for another body).
    struct JournalHasOrder: Error {}

    /// Takes back a hold made by the reserve event `eventId` (compensation: sync-mode journal failure, or a
    /// duplicate the worker found in the journal). When Redis cannot be reached it becomes a durable retry task.
    /// `orderId`: the business's own id.
    public func undoReserve(
        orderId: String, bizId: String, lines: [ReservationLine], eventId: String, earlierEventId: String = "",
        epochs: [UInt64: String] = [:], routine: Bool = false
    ) async {
        await compensator.undoReserve(
            orderId: orderId, bizId: bizId, lines: lines, eventId: eventId, earlierEventId: earlierEventId, epochs: epochs,
            routine: routine
        )
    }

    /// The worker committed these outbox entries: acknowledge and delete them in one step.
    public func acknowledge(stream: String, group: String, ids: [String]) async throws {
        var offset = 0
        while offset < ids.count {
            let chunk = Array(ids[offset..<min(offset + 1000, ids.count)])
            _ = try await run(AckCall(stream: stream, group: group, ids: chunk))
            offset += chunk.count
        }
    }

    /// The worker committed a confirm or refund line: stop counting it as in flight, once per line, unless the
    /// item was rebuilt since the line was made (`epoch`), from a MySQL that had it already.
    public func markApplied(
        _ id: StockItemID, orderId: String, kind: OutboxEvent.Kind, quantity: Int64, epoch: String
    ) async throws {
        _ = try await run(
            AppliedCall(
                id, orderId: orderId, kind: kind, quantity: quantity, epoch: epoch,
                retentionSeconds: configuration.retentionSeconds, layout: keys
            )
        )
    }

    /// The Redis side of a journal batch (items. epochs, drain marks), for the write-back worker.
    public var batchFences: any BatchFences { stores.batchFences }

    /// Whether Redis went back in time where the drain marks `marks` are (nil: every shard's), their values below
    /// MySQL's: forgotten there if so (`BatchFences.forgetWentBack`). Returns the marks found behind. The write-back
    /// worker's check between batches.
    @discardableResult
    public func forgetIfWentBack(marks: [String]? = nil, journal: JournalRepository) async throws -> [String] {
        try await stores.forgetIfWentBack(marks: marks ?? keys.drainMarks, journal: journal)
    }

    /// Reads every shard's drain mark from MySQL into this instance's floors, which its scripts check Redis against
    /// (`DrainFloors`; `EngineLoop.drainFloors` runs it about once a second).
    public func refreshDrainFloors() async throws {
        do {
            try await stores.refreshFloors(journal: journal)
        } catch {
            throw stores.mapMySQL(error)
        }
    }

    /// A fresh epoch for an item being created or rebuilt in Redis: random, so two rebuilds never share one.
    /// `bornAt`: Redis's time (ms) now; an epoch starts with it (base 36), so a rebuild can tell whether the
    /// outbox streams were intact since the epoch began (init_item.lua).
    static func newEpoch(bornAt milliseconds: Int64) -> String {
        String(milliseconds, radix: 36) + "-" + String(UInt64.random(in: 1...UInt64.max), radix: 36)
    }
}
