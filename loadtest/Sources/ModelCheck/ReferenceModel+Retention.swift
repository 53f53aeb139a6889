import Inventory

/// Orders Redis forgot: their keys' retention period ran out after they ended (`Step.retryAfterRetention`). The
/// journal keeps them; a call finds them there. A reserve of one is held anew when nothing makes Redis ask the
/// journal first (async durability, no journal window): a duplicate hold, taken back by the write-back worker
/// unless its order went on with it first (a confirm, a dispense), when it stands as a hold of its own beside the
/// journal's row (README, "What may vanish").
extension ReferenceModel {
    /// The journal row of an order whose current hold is a duplicate: the earlier order as it ended.
    public struct JournalState: Sendable, Equatable {
        public let status: ReservationStatus
        public let lines: [ReservationLine]
        public let fingerprint: String
        public let user: String?
        public let codes: [String]?
        /// Lines of a part that came back from the journal on a cluster (`Order.journalLines`) and moved with the
        /// order since (a refund): their rows' state, where it is no longer `status`.
        public var movedLines: [UInt64: ReservationStatus] = [:]

        init(_ order: Order) {
            status = order.status
            lines = order.lines
            fingerprint = order.fingerprint
            user = order.user
            codes = order.codes
            movedLines = order.journal?.movedLines ?? [:]
        }

        /// The state of the journal's row of `sku`.
        public func status(of sku: UInt64) -> ReservationStatus { movedLines[sku] ?? status }

        /// The state the rows decide together, as a restore of them all decides it (the furthest: a refunded line
        /// was confirmed first).
        public var decidedStatus: ReservationStatus {
            lines.map { status(of: $0.skuId) }.max { Self.rank($0) < Self.rank($1) } ?? status
        }

        static func rank(_ status: ReservationStatus) -> Int {
            switch status {
            case .reserved: 0
            case .refunded: 2
            default: 1
            }
        }
    }

    /// Whether the retention period of an order can run out now: it ended, and held something on every line (a line
    /// that held nothing has no journal row: a retry's hold of it would be a row of its own, not a duplicate).
    public func endedWithHolds(order id: Int) -> Bool {
        guard let order = orders[id], !order.lines.isEmpty, !order.tombstoneOnly, order.lines.allSatisfy({ $0.reserved > 0 })
        else { return false }
        return [.confirmed, .cancelled, .expired, .refunded].contains(order.status)
    }

    /// Whether the order is still held and its keys may vanish piece by piece (its hash, de-duplication keys and holds'
    /// keys, not its item's count of its hold), so that a reserve again holds anew beside it: a duplicate of a live
    /// order. Held in full on every line (reject mode: a retry holds the same or nothing), with no deadline of a
    /// second, and not already a duplicate's or forgotten.
    public func liveWithHolds(order id: Int, shortage: ShortageMode, options: ReserveOptions) -> Bool {
        guard let order = orders[id], order.status == .reserved, shortage == .reject, !options.contains(.shortLived),
            !order.shortLived, !order.forgotten, !order.tombstoneOnly, !order.hashDeleted, !order.foundByParts,
            order.journal == nil, !order.lines.isEmpty, order.lines.allSatisfy({ $0.reserved > 0 && $0.reserved == $0.requested })
        else { return false }
        return true
    }

    /// Redis forgot the order. `asksJournal`: a reserve of it asks the journal first (sync durability, or a journal
    /// window), and is answered from it; otherwise the order is absent until the worker has run
    /// (`duplicatesSettled`).
    public mutating func forget(order id: Int, asksJournal: Bool) {
        guard let current = orders[id] else { return }
        var earlier = current.journal.map(Order.init(journal:)) ?? current
        // as a call finds it again: in the journal, which keeps less than Redis did (asked now, it is found at once)
        earlier.forgotten = !asksJournal
        earlier.fingerprintLost = true
        earlier.hashDeleted = false
        earlier.foundByParts = false
        if asksJournal {
            orders[id] = earlier
        } else {
            forgottenEarlier[id] = earlier
            orders[id] = nil
        }
    }

    /// The write-back worker ran: a duplicate hold still reserved is taken back (its hold, codes and user's units
    /// given back) and the order is its journal row's again, still forgotten by Redis; one its order went on with
    /// stands: beside the earlier order's row when that one had ended, or, when it was still held, as the order
    /// itself (the item hands the earlier hold back, with its codes and user's units, and the journal row adopts the
    /// duplicate).
    public mutating func duplicatesSettled() {
        for (id, earlier) in forgottenEarlier {
            if let duplicate = orders[id], duplicate.status != .reserved {
                if earlier.status == .reserved {
                    giveBackCodes(earlier)
                    for line in earlier.lines {
                        items[line.skuId]!.reserved -= line.reserved
                        count(earlier.user, line.skuId, -line.reserved)
                    }
                } else {
                    orders[id]!.journal = JournalState(earlier)
                }
                continue
            }
            var earlier = earlier
            if let duplicate = orders[id] {
                // A code of the earlier order the duplicate took again was assigned to it, and its take-back removed
                // the assignment: the earlier order, restored, no longer lists it.
                if let taken = duplicate.codes, let codes = earlier.codes { earlier.codes = codes.filter { !taken.contains($0) } }
                giveBackCodes(duplicate)
                for line in duplicate.lines {
                    items[line.skuId]!.reserved -= line.reserved
                    count(duplicate.user, line.skuId, -line.reserved)
                }
            }
            orders[id] = earlier
        }
        forgottenEarlier = [:]
    }

    /// A retention period passed: a journal window a data loss opened has closed (a reserve of an order Redis does not
    /// know is held anew again).
    public mutating func retentionPassed() {
        journalWindow = false
    }

    /// A call found the order (in Redis, or in the journal, which put it back in Redis): Redis has it again.
    /// (A cancel made before any reserve, lost with Redis, is found only by a reserve or a cancel again: `byCancel`.)
    public mutating func remembered(order id: Int, byCancel: Bool = false) {
        guard let order = orders[id], order.forgotten, byCancel || !order.tombstoneOnly else { return }
        orders[id]!.forgotten = false
    }
}

extension ReferenceModel.Order {
    /// The order as its journal row keeps it (restored from the journal).
    init(journal: ReferenceModel.JournalState) {
        self.init(status: journal.decidedStatus, lines: journal.lines, fingerprint: journal.fingerprint, user: journal.user)
        codes = journal.codes
        fingerprintLost = true
        // Rows that no longer share one state stay told apart (the journal's check compares each).
        if !journal.movedLines.isEmpty {
            self.journal = journal
            journalLines = Set(journal.lines.map(\.skuId))
        }
    }
}
