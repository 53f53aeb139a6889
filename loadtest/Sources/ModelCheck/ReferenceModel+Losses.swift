import Inventory

/// What the model makes of state the service lost: Redis's keys all gone, its generation markers, an order's hash or
/// (on a cluster) its directory.
extension ReferenceModel {
    /// Redis lost every key after a drain: every order comes back from the journal when next used.
    public mutating func redisLostEverything() {
        journalWindow = true
        for id in orders.keys {
            if let journal = orders[id]!.journal { orders[id] = Order(journal: journal) }
            // Redis has none of them until a call finds it in the journal (`remembered`).
            orders[id]!.forgotten = true
            orders[id]!.fingerprintLost = true
            if orders[id]!.lines.isEmpty { orders[id]!.tombstoneOnly = true }
        }
        for sku in items.keys { itemRebuilt(sku: sku) }
    }

    /// The generation markers vanished: the service takes it for a data loss (a reserve of an order Redis does not
    /// know asks the journal and its tombstones for a retention period), though nothing else was lost.
    public mutating func generationLost() {
        journalWindow = true
    }

    /// On a cluster, an order's directory vanished alone: a cancel made before any reserve (recorded only there) is
    /// as good as its hash on one Redis; an order with parts is found again through them (not its parts that hold
    /// nothing).
    public mutating func directoryLost(order id: Int) {
        guard let order = orders[id] else { return }
        if order.lines.isEmpty {
            orderHashLost(order: id)
            return
        }
        // A reserve under its id naming none of the items it holds cannot tell it existed (`unspecified`), as after
        // its hash was deleted alone on one Redis.
        orders[id]!.hashDeleted = true
        if order.lines.contains(where: { $0.reserved == 0 }) { orders[id]!.foundByParts = true }
    }

    /// An order's hash vanished alone: a held order comes back from the journal (after what the outbox still has of
    /// it), with what the journal keeps; a cancel made before any reserve is forgotten (its tombstone is asked only
    /// after a data loss: a known limit), unless it is `recordedElsewhere` (on a cluster, the order's directory
    /// records such a cancel: there is no part hash to lose).
    /// `part`: on a cluster, the items of the part that was lost (nil: the order's hash on one Redis).
    public mutating func orderHashLost(order id: Int, recordedElsewhere: Bool = false, part: Set<UInt64>? = nil) {
        // A duplicate hold's hash gone: the order comes back from the journal, as its earlier order. On a cluster
        // only the lost part does: its lines are the earlier order's again, the parts that survived stay the
        // duplicate's, and so does the order's state, which its directory keeps (`partLossUnspecified` leaves out a
        // loss where the two orders ended differently).
        if let journal = orders[id]?.journal {
            guard let part else {
                orders[id] = Order(journal: journal)
                orders[id]!.forgotten = true
                return
            }
            var order = orders[id]!
            guard order.lines.contains(where: { part.contains($0.skuId) }) else { return }
            order.lines = order.lines.map { line in
                guard part.contains(line.skuId) else { return line }
                return journal.lines.first { $0.skuId == line.skuId } ?? line
            }
            if part.contains(Features.codeItem) { order.codes = journal.codes }
            order.journalLines.formUnion(order.lines.map(\.skuId).filter(part.contains))
            order.fingerprintLost = true
            order.forgotten = true
            orders[id] = order
            return
        }
        guard let order = orders[id] else { return }
        if order.lines.isEmpty && recordedElsewhere { return }
        if order.lines.isEmpty && !journalWindow {
            orders[id] = nil
        } else {
            orders[id]!.fingerprintLost = true
            orders[id]!.hashDeleted = !order.lines.isEmpty
            if order.lines.isEmpty { orders[id]!.tombstoneOnly = true }
        }
    }

    /// A loss of one part of the order on a cluster the service is not specified to answer rightly (a known limit,
    /// README "Model check"): the order is a duplicate hold that went on beside its earlier order, which ended
    /// otherwise (cancelled or expired, say, where the duplicate was sold): the lost part comes back in the earlier
    /// order's state under a directory in the duplicate's. The driver leaves such a step out.
    public func partLossUnspecified(order id: Int, clustered: Bool) -> Bool {
        guard clustered, let order = orders[id], let journal = order.journal else { return false }
        return journal.status != order.status
    }

    /// The items the order holds or held, its journal's earlier order's too.
    public func skusEverHeld(order id: Int) -> [UInt64] {
        guard let order = orders[id] else { return [] }
        return Array(Set(order.lines.map(\.skuId) + (order.journal?.lines.map(\.skuId) ?? [])))
    }

    /// A reserve the service is not specified to answer rightly (a known limit, README "Model check"): another body
    /// under the id of an order whose hash was deleted alone, naming none of the items it holds. Redis cannot tell
    /// the order existed; the hold it makes is taken back by the write-back worker (logged at error level). The
    /// driver leaves such a step out.
    /// A cancelled or expired order is the same (cluster seed 200064): what records it is left only in its parts,
    /// which a body naming none of its items never meets.
    public func unspecified(order id: Int, lines: [Line]) -> Bool {
        // Forgotten by Redis (its retention ran out): held anew, and taken back by the worker (specified only as a
        // step of its own, `Step.retryAfterRetention`, which runs the worker after it).
        // (On sync durability too: it holds first, and a refusal for stock or codes is a new order's.)
        if let order = orders[id], order.forgotten, !journalWindow { return true }
        guard let order = orders[id], order.hashDeleted else { return false }
        switch order.status {
        case .reserved, .confirmed:
            let held = Set(order.lines.filter { $0.reserved > 0 }.map(\.skuId))
            return held.isDisjoint(with: lines.map(\.sku))
        case .cancelled, .expired:
            return Set(order.lines.map(\.skuId)).isDisjoint(with: lines.map(\.sku))
        default:
            return false
        }
    }
}
