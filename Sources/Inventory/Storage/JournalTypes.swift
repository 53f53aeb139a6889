import MySQLClient

/// One event read from the Redis Stream outbox.
public struct OutboxEvent: Sendable, Equatable {
    /// What happened to the order in Redis.
    public enum Kind: String, Sendable {
        case reserve, confirm, cancel, expire, refund, undo
        /// A duplicate hold of a live order that its order went on with before its take-back (lua/undo_reserve.lua,
        /// settled): the order's journal row adopts the duplicate's hold, its quantities and codes (the earlier hold
        /// went back).
        case adopt
    }

    /// One stock item of the order and its quantity.
    public struct Line: Sendable, Equatable {
        /// The SKU, of the event's business line.
        public let skuId: UInt64
        /// The quantity the event moved; lines of quantity 0 (or less) change no row and no stock.
        public let quantity: Int64
        /// The epoch the item had in Redis when the event changed it ("" for an item that has none).
        public let epoch: String
        /// Reserve and adopt: the codes of the item's code pool the line holds (empty for an item without one).
        public let codes: [String]

        /// Creates a line.
        public init(skuId: UInt64, quantity: Int64, epoch: String = "", codes: [String] = []) {
            self.skuId = skuId
            self.quantity = quantity
            self.epoch = epoch
            self.codes = codes
        }
    }

    /// The stream entry id, "ms-seq".
    public let id: String
    /// The stream key the event came from.
    public let stream: String
    /// What happened.
    public let kind: Kind
    /// The order: its business's own id.
    public let orderId: String
    /// The business line of the order and of every line of the event.
    public let bizId: String
    /// The order's name in Redis as the event carries it (`OrderRef.name`).
    public let orderName: String
    /// The user who reserved; reserve only.
    public let userId: String?
    /// The lines; may be empty (a cancel of an order that never reserved).
    public let lines: [Line]
    /// When the hold runs out, Unix milliseconds; reserve only.
    public let expiresAtMilliseconds: Int64?
    /// When Redis applied the event, Unix milliseconds.
    public let atMilliseconds: Int64
    /// Undo: the id of the reserve event being undone; adopt: the reserve event of the journal row that adopts the hold.
    public let reserveEventId: String?
    /// Reserve only: the request's fingerprint (`ReserveCommand.fingerprint`), kept hashed with the journal's rows
    /// so that an order restored from them still tells a replay from another body; nil when the event has none.
    public let requestFingerprint: String?

    /// The epoch of its item each line was made in, by SKU (the first line of a SKU named twice).
    var lineEpochs: [UInt64: String] {
        Dictionary(lines.map { ($0.skuId, $0.epoch) }, uniquingKeysWith: { first, _ in first })
    }

    /// A copy with only the lines `keep` accepts.
    func filteringLines(_ keep: (Line) -> Bool) -> OutboxEvent {
        OutboxEvent(
            id: id, stream: stream, kind: kind, orderId: orderId, bizId: bizId, userId: userId,
            lines: lines.filter(keep), expiresAtMilliseconds: expiresAtMilliseconds, atMilliseconds: atMilliseconds,
            reserveEventId: reserveEventId, requestFingerprint: requestFingerprint, orderName: orderName
        )
    }

    /// Creates an event. `orderName`: the order's Redis name, if not the one (`bizId`, `orderId`) make.
    public init(
        id: String,
        stream: String,
        kind: Kind,
        orderId: String,
        bizId: String,
        userId: String?,
        lines: [Line],
        expiresAtMilliseconds: Int64?,
        atMilliseconds: Int64,
        reserveEventId: String?,
        requestFingerprint: String? = nil,
        orderName: String? = nil
    ) {
        self.id = id
        self.stream = stream
        self.kind = kind
        self.orderId = orderId
        self.bizId = bizId
        self.orderName = orderName ?? OrderRef(bizId: bizId, orderId: orderId).name
        self.userId = userId
        self.lines = lines
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.atMilliseconds = atMilliseconds
        self.reserveEventId = reserveEventId
        self.requestFingerprint = requestFingerprint
    }
}

/// What `JournalRepository.apply` did to MySQL.
public struct JournalBatchResult: Sendable, Equatable {
    /// A reserve line whose journal row already existed from another reserve event.
    public struct DuplicateLine: Sendable, Equatable {
        /// The order.
        public let orderId: String
        /// The business line.
        public let bizId: String
        /// The SKU.
        public let skuId: UInt64
        /// The quantity the duplicate reserve event holds in Redis.
        public let quantity: Int64
        /// The status of the row that was there first ("RESERVED", "CONFIRMED", ...).
        public let existingStatus: String
        /// The id of the duplicate reserve event (the one whose hold must be taken back).
        public let eventId: String
        /// The reserve event that created the existing row ("" for a row written before that was recorded).
        public let existingReserveEvent: String
        /// The earlier reserve event whose hold the item still counted when this duplicate was made (the existing
        /// row's while that order was live at the duplicate's place in the stream), "" once it had ended: what the
        /// take-back of the duplicate hands back (lua/undo_reserve.lua). Decided once, by the first delivery
        /// (`reserve_duplicates`).
        public let earlierHold: String

        /// Creates a duplicate line.
        public init(
            orderId: String,
            bizId: String,
            skuId: UInt64,
            quantity: Int64,
            existingStatus: String,
            eventId: String,
            existingReserveEvent: String,
            earlierHold: String
        ) {
            self.orderId = orderId
            self.bizId = bizId
            self.skuId = skuId
            self.quantity = quantity
            self.existingStatus = existingStatus
            self.eventId = eventId
            self.existingReserveEvent = existingReserveEvent
            self.earlierHold = earlierHold
        }
    }

    /// Reserve lines whose (order, biz, sku) row already existed from ANOTHER reserve event: a real duplicate hold
    /// in Redis (e.g. after Redis lost its data) that the caller must compensate. A redelivery of the same event
    /// (same reserve_event) is not a duplicate. In batch order.
    public var duplicates: [DuplicateLine]
    /// Journal rows created by reserve events.
    public var rowsInserted: Int
    /// Journal rows whose status changed (confirm, cancel, expire, refund).
    public var rowsUpdated: Int
    /// Journal rows removed by undo events.
    public var rowsDeleted: Int
    /// Stock ledger rows written, one per confirm or refund line applied to MySQL stock for the first time.
    public var stockChanges: Int
    /// Lines left out because Redis has rebuilt their item since the event changed it (see `apply(_:epochs:)`).
    public var staleLines: [StaleLine] = []
    /// Stock items that confirm or refund lines of this batch named but that have no stock row: their stock was not
    /// changed and no ledger row was written for them (a redelivery after the row exists applies them then). The
    /// journal rows were written all the same. Sorted by business line, then SKU.
    public var missingStockItems: [StockItemID]

    /// Creates a result; everything defaults to "nothing happened".
    public init(
        duplicates: [DuplicateLine] = [],
        rowsInserted: Int = 0,
        rowsUpdated: Int = 0,
        rowsDeleted: Int = 0,
        stockChanges: Int = 0,
        missingStockItems: [StockItemID] = []
    ) {
        self.duplicates = duplicates
        self.rowsInserted = rowsInserted
        self.rowsUpdated = rowsUpdated
        self.rowsDeleted = rowsDeleted
        self.stockChanges = stockChanges
        self.missingStockItems = missingStockItems
    }
}

/// A line of an event made in an earlier epoch of its item than Redis has now: Redis lost the data the event
/// changed and rebuilt the item from MySQL without it, so the line was not applied.
public struct StaleLine: Sendable, Equatable, Hashable {
    /// The outbox event.
    public let eventId: String
    /// What the event did.
    public let kind: OutboxEvent.Kind
    /// The order.
    public let orderId: String
    /// The stock item.
    public let item: StockItemID
    /// The quantity the line moved.
    public let quantity: Int64
}

/// The connection broke while COMMIT was in flight: the batch may or may not be in the journal.
public struct JournalCommitOutcomeUnknown: Error, CustomStringConvertible {
    public let underlying: MySQLError
    public var description: String { "journal commit outcome unknown: \(underlying)" }
}

/// The Redis side of a batch of outbox events the journal records: each item's epoch (the fence against lines whose
/// data Redis lost and rebuilt the item without), and the shards' drain marks (the fence against a Redis that went
/// back in time, migrations/0017, `DrainMarkSQL`).
public protocol BatchFences: Sendable {
    /// The epoch of each item Redis holds now; an item that is missing or still being rebuilt is left out.
    func currentEpochs(_ items: [StockItemID]) async throws -> [StockItemID: ItemEpoch]

    /// The marks a check of `marks` reads as well (the write-back worker's, of its streams' marks): every other
    /// shard's on a single Redis (one node goes back in time with all of them), none on a cluster (the other shards'
    /// workers check theirs).
    func marks(checkedBeside marks: [String]) -> [String]

    /// Raises each mark of `raise` in Redis past MySQL's value of it (locked by the caller until its COMMIT) and
    /// checks those of `check` (values read without a lock). Returns the raised marks' new values, for MySQL to record;
    /// throws `RedisWentBack` naming the marks Redis has below MySQL's (a missing one counts as 0: lua/drain_mark.lua),
    /// raising none.
    func raiseDrainMarks(_ raise: [String: Int64], checking check: [String: Int64]) async throws -> [String: Int64]

    /// The item's mark in Redis ('epoch/repairs', lua/lib/fence.lua), nil when Redis has no such item.
    func itemMark(_ item: StockItemID) async throws -> String?

    /// The marks (of `values`, MySQL's, read before) that Redis has below MySQL's, raising none: the check between
    /// batches (a batch's own is `raiseDrainMarks`). On a single Redis not behind, it lifts the drain sequence to the
    /// highest mark read (a sequence that is missing, or from before it existed).
    func marksBehind(_ values: [String: Int64]) async throws -> [String]

    /// Redis went back in time (its marks `marks` behind): what it has is forgotten on every node, as after a data
    /// loss (`EngineStores.forgetWentBack`), then every shard's mark is raised to MySQL's, read with the rows locked
    /// (`JournalRepository.withLockedDrainMarks`).
    func forgetWentBack(_ marks: [String], journal: JournalRepository) async throws
}

/// Redis's drain marks were below MySQL's: Redis went back in time and lacks changes MySQL has recorded.
public struct RedisWentBack: Error, CustomStringConvertible {
    /// The marks (their Redis keys) that were behind.
    public let marks: [String]
    public var description: String { "Redis went back in time: its drain marks \(marks) are below MySQL's" }
}

/// An item's epoch in Redis, and the earlier epochs its rebuild absorbed: their outbox events were all in the
/// journal when it read MySQL (it applied those still in the outbox first; see `InventoryEngine.ensureItem`).
public struct ItemEpoch: Sendable, Equatable {
    public let current: String
    /// Earlier epochs whose events the item counts.
    public let absorbed: Set<String>

    public init(_ current: String, absorbed: Set<String> = []) {
        self.current = current
        self.absorbed = absorbed
    }

    /// Whether a line made in `epoch` is counted by the item as it is now: made in this epoch, or in one the
    /// rebuild absorbed. Any other line's data was lost by Redis before the journal had it (a stale line).
    public func counts(_ epoch: String) -> Bool { epoch == current || absorbed.contains(epoch) }
}

/// One row of the task journal.
public struct JournalRow: Sendable, Equatable {
    public let orderId: String
    public let bizId: String
    public let skuId: UInt64
    public let userId: String?
    public let quantity: Int64
    /// "RESERVED", "CONFIRMED", "CANCELLED", "EXPIRED" or "REFUNDED".
    public let status: String
    /// When the hold runs out, Unix milliseconds.
    public let expiresAtMilliseconds: Int64
    /// The id of the reserve event that created the row.
    public let reserveEvent: String
    /// The SHA-1 (hex) of the request that made the row (`OutboxEvent.requestFingerprint`); nil for rows written
    /// before it was kept.
    public var requestHash: String? = nil

    /// Creates a row value.
    public init(
        orderId: String,
        bizId: String,
        skuId: UInt64,
        userId: String?,
        quantity: Int64,
        status: String,
        expiresAtMilliseconds: Int64,
        reserveEvent: String
    ) {
        self.orderId = orderId
        self.bizId = bizId
        self.skuId = skuId
        self.userId = userId
        self.quantity = quantity
        self.status = status
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.reserveEvent = reserveEvent
    }
}

/// One line of a journal row's hold: its quantity, the codes assigned to it, and when it was reserved (Unix ms; nil
/// for a row written before rows kept it).
public struct HeldLine: Sendable, Equatable {
    public var quantity: Int64
    public var codes: [String]
    public var reservedAt: Int64?

    public init(quantity: Int64, codes: [String], reservedAt: Int64? = nil) {
        self.quantity = quantity
        self.codes = codes
        self.reservedAt = reservedAt
    }
}
