import Testing

@testable import Inventory

/// The parts that need no store: what the reconciler expects Redis to hold given MySQL and the lines in flight, and
/// how a write-back batch is planned from outbox events.
@Suite("Reconciler arithmetic and batch plans, without stores")
struct PureArithmeticTests {
    static let item = StockItemID(bizId: "b", skuId: 7)

    static func line(
        _ kind: OutboxEvent.Kind, _ order: String, _ quantity: Int64, entry: String, reserveEvent: String = "",
        marked: Bool = false, absorbed: Bool = false
    ) -> Reconciler.Entry {
        Reconciler.Entry(
            kind: kind, orderId: order, item: item, quantity: quantity, entryId: entry, reserveEvent: reserveEvent,
            marked: marked, absorbed: absorbed
        )
    }

    static func expected(
        db: Int64, reserved: Int64, _ entries: [Reconciler.Entry], rows: [String: (String, String)] = [:],
        ledger: Set<String> = []
    ) -> ReconcileDifference.Counters {
        var applied = Reconciler.Applied()
        for (order, row) in rows { applied.rows[Reconciler.Applied.key("b", order, 7)] = (row.0, row.1, 0) }
        applied.ledger = ledger
        return Reconciler.expected(
            dbStock: db, journalReserved: reserved, entries: entries, applied: applied, bizId: "b", sku: 7
        )
    }

    @Test("nothing in flight: used is the journal's holds, stock_num the rest of MySQL's stock")
    func settled() {
        let counters = Self.expected(db: 10, reserved: 3, [])
        #expect(counters == .init(stockNum: 7, usedStockNum: 3, confirmedUnapplied: 0, refundUnapplied: 0))
    }

    @Test("a reserve in flight counts once: before its journal row, not again after it")
    func reserveInFlight() {
        let reserve = Self.line(.reserve, "o1", 2, entry: "5-0")
        #expect(Self.expected(db: 10, reserved: 0, [reserve]).usedStockNum == 2)
        #expect(Self.expected(db: 10, reserved: 0, [reserve]).stockNum == 8)
        // The worker wrote the row (reserve_event = the entry) after the snapshot: the journal counts it already.
        let applied = Self.expected(db: 10, reserved: 2, [reserve], rows: ["o1": ("RESERVED", "5-0")])
        #expect(applied == .init(stockNum: 8, usedStockNum: 2, confirmedUnapplied: 0, refundUnapplied: 0))
        // A row of another reserve of the order (an earlier one, taken back) does not stand for this one.
        #expect(Self.expected(db: 10, reserved: 0, [reserve], rows: ["o1": ("CANCELLED", "4-0")]).usedStockNum == 2)
    }

    @Test("a confirm in flight: released from used, counted as confirmed_unapplied until MySQL's stock has it")
    func confirmInFlight() {
        let confirm = Self.line(.confirm, "o1", 2, entry: "6-0")
        // Row still RESERVED, stock not deducted in MySQL yet.
        #expect(
            Self.expected(db: 10, reserved: 2, [confirm], rows: ["o1": ("RESERVED", "5-0")])
                == .init(stockNum: 8, usedStockNum: 0, confirmedUnapplied: 2, refundUnapplied: 0)
        )
        // Committed (row CONFIRMED, ledger has it, MySQL's stock 8) but not settled in Redis (no applied marker).
        #expect(
            Self.expected(
                db: 8, reserved: 0, [confirm], rows: ["o1": ("CONFIRMED", "5-0")], ledger: ["confirm:o1:b:7"]
            ) == .init(stockNum: 8, usedStockNum: 0, confirmedUnapplied: 2, refundUnapplied: 0)
        )
        // Settled (marked): no counter holds it any more.
        let marked = Self.line(.confirm, "o1", 2, entry: "6-0", marked: true)
        #expect(
            Self.expected(db: 8, reserved: 0, [marked], rows: ["o1": ("CONFIRMED", "5-0")], ledger: ["confirm:o1:b:7"])
                == .init(stockNum: 8, usedStockNum: 0, confirmedUnapplied: 0, refundUnapplied: 0)
        )
    }

    @Test("a refund in flight is refund_unapplied, and stock_num has the units back before MySQL does")
    func refundInFlight() {
        let refund = Self.line(.refund, "o1", 2, entry: "7-0")
        #expect(
            Self.expected(db: 8, reserved: 0, [refund], rows: ["o1": ("CONFIRMED", "5-0")])
                == .init(stockNum: 10, usedStockNum: 0, confirmedUnapplied: 0, refundUnapplied: 2)
        )
        #expect(
            Self.expected(db: 10, reserved: 0, [refund], rows: ["o1": ("REFUNDED", "5-0")], ledger: ["refund:o1:b:7"])
                == .init(stockNum: 10, usedStockNum: 0, confirmedUnapplied: 0, refundUnapplied: 2)
        )
    }

    @Test("a cancel in flight releases a hold MySQL still counts; a take-back (undo) cancels its reserve in flight")
    func cancelAndUndo() {
        let cancel = Self.line(.cancel, "o1", 2, entry: "6-0")
        #expect(Self.expected(db: 10, reserved: 2, [cancel], rows: ["o1": ("RESERVED", "5-0")]).usedStockNum == 0)
        // The row is CANCELLED already: the journal no longer counts it, nothing to subtract.
        #expect(Self.expected(db: 10, reserved: 0, [cancel], rows: ["o1": ("CANCELLED", "5-0")]).usedStockNum == 0)
        // The reserve and its cancel both in flight, no row yet: they cancel out.
        let reserve = Self.line(.reserve, "o1", 2, entry: "5-0")
        #expect(Self.expected(db: 10, reserved: 0, [reserve, cancel]).usedStockNum == 0)
        let undo = Self.line(.undo, "o1", 2, entry: "6-1", reserveEvent: "5-0")
        #expect(Self.expected(db: 10, reserved: 0, [reserve, undo]) == .init(stockNum: 10, usedStockNum: 0, confirmedUnapplied: 0, refundUnapplied: 0))
        #expect(Self.expected(db: 10, reserved: 2, [undo], rows: ["o1": ("RESERVED", "5-0")]).usedStockNum == 0)
    }

    @Test("an infinite item's stock_num is its on-hand stock; an item infinite in one store only never agrees")
    func agreesInfinite() {
        let expected = ReconcileDifference.Counters(stockNum: 8, usedStockNum: 2, confirmedUnapplied: 0, refundUnapplied: 0)
        var redis = expected
        #expect(Reconciler.agrees(redis, expected, .available))
        #expect(!Reconciler.agrees(redis, expected, .onHand))
        redis.stockNum = 10
        #expect(Reconciler.agrees(redis, expected, .onHand), "8 left to sell and 2 held: 10 on hand")
        #expect(!Reconciler.agrees(redis, expected, .available))
        #expect(!Reconciler.agrees(redis, expected, .flagsDiffer))
        #expect(Reconciler.StockCount(redisInfinite: true, mysqlInfinite: false) == .flagsDiffer)
        #expect(Reconciler.StockCount(redisInfinite: false, mysqlInfinite: true) == .flagsDiffer)
        #expect(Reconciler.StockCount(redisInfinite: true, mysqlInfinite: true) == .onHand)
        #expect(Reconciler.StockCount(redisInfinite: false, mysqlInfinite: false) == .available)
    }

    static func event(
        _ id: String, _ kind: OutboxEvent.Kind, _ order: String, _ lines: [(UInt64, Int64)], reserveEvent: String? = nil
    ) -> OutboxEvent {
        OutboxEvent(
            id: id, stream: "inv:{s1}:outbox", kind: kind, orderId: order, bizId: "b", userId: nil,
            lines: lines.map { OutboxEvent.Line(skuId: $0.0, quantity: $0.1) }, expiresAtMilliseconds: 1_000,
            atMilliseconds: 500, reserveEventId: reserveEvent
        )
    }

    @Test("a batch plan: one journal row per line, status changes and ledger lines once, an undone reserve left out")
    func batchPlan() {
        let plan = BatchPlan([
            Self.event("1-0", .reserve, "o1", [(7, 2), (8, 1)]),
            Self.event("2-0", .confirm, "o1", [(7, 2), (8, 1)]),
            Self.event("3-0", .confirm, "o1", [(7, 2), (8, 1)]),  // delivered twice
            Self.event("4-0", .reserve, "o2", [(7, 5)]),
            Self.event("5-0", .undo, "o2", [(7, 5)], reserveEvent: "4-0"),
            Self.event("6-0", .cancel, "o3", []),
        ])
        #expect(plan.reserves.map { "\($0.key.orderId)/\($0.key.skuId)x\($0.quantity)" } == ["o1/7x2", "o1/8x1"])
        #expect(plan.undos.map(\.reserveEventId) == ["4-0"])
        let confirmed = plan.statusChanges.first { $0.to == "CONFIRMED" }
        #expect(confirmed?.keys.map(\.skuId) == [7, 8])
        #expect(plan.ledger.map(\.source) == ["confirm:o1:b:7", "confirm:o1:b:8"])
        #expect(plan.ledger.map(\.delta) == [-2, -1])
        #expect(plan.tombstones.map(\.orderId) == ["o3"])
        #expect(plan.tombstones.map(\.prefix) == ["inv"])
    }
}

@Suite("What the topology decides, from the key layout")
struct TopologyLayoutTests {
    @Test("script groups: every item in one on a single Redis, one per shard on a cluster, in the items' order")
    func scriptGroups() {
        let items = (1...40).map { StockItemID(bizId: "b", skuId: UInt64($0)) }
        let single = KeyLayout(prefix: "u", shards: 8, clustered: false)
        #expect(single.scriptGroups(items) == [items])
        #expect(single.scriptGroups([]).isEmpty)
        let cluster = KeyLayout(prefix: "u", shards: 8, clustered: true)
        let groups = cluster.scriptGroups(items)
        #expect(groups.count == Set(items.map(cluster.itemShard)).count)
        #expect(groups.count > 1)
        for group in groups { #expect(Set(group.map(cluster.itemShard)).count == 1) }
        #expect(groups.flatMap { $0 }.sorted { $0.skuId < $1.skuId } == items)
        #expect(groups.map { $0[0] } == groups.map { $0[0] }.sorted { $0.skuId < $1.skuId })
    }

    @Test("outboxes: an item's events in every stream on a single Redis, its shard's on a cluster; an order's the reverse")
    func outboxes() {
        let item = StockItemID(bizId: "b", skuId: 3)
        let single = KeyLayout(prefix: "u", shards: 4, clustered: false)
        #expect(single.outboxes(holding: item) == single.outboxes)
        #expect(single.outboxes(ofOrder: "o1") == [single.outbox(forOrder: "o1")])
        let cluster = KeyLayout(prefix: "u", shards: 4, clustered: true)
        #expect(cluster.outboxes(holding: item) == [cluster.outbox(shard: cluster.itemShard(item))])
        #expect(cluster.outboxes(ofOrder: "o1") == cluster.outboxes)
    }
}
