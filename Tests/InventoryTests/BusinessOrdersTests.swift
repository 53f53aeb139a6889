import Foundation
import Inventory
import InventoryTestSupport
import MySQLClient
import Testing

@testable import Inventory

/// Orders are scoped by business (issue 22 item 5): the same orderId in two businesses is two orders, in Redis, in
/// the journal, in the tombstones, and after Redis lost them.
@Suite("Orders scoped by business")
struct BusinessOrdersTests {
    func command(_ bizId: String, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)], ttlSeconds: 3600,
            shortage: .reject
        )
    }

    /// The test's business and a second one, each with item 1 at stock 10.
    func twoBusinesses(_ stores: TestStores) async throws -> (String, String) {
        let (a, b) = (stores.bizId, stores.bizId + "b")
        for biz in [a, b] { _ = try await stores.engine.setStock(StockItemID(bizId: biz, skuId: 1), StockSettings(stock: 10)) }
        return (a, b)
    }

    @Test("one orderId in two businesses: two orders, each confirmed or cancelled alone, two journal rows")
    func sameOrderIdTwoBusinesses() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let (a, b) = try await twoBusinesses(stores)
            // Before: b's reserve was a 422 (the orderId was taken by a's order with another body).
            guard case .created(let heldA) = try await engine.reserve(command(a, "o-1", 2)),
                case .created(let heldB) = try await engine.reserve(command(b, "o-1", 3))
            else {
                Issue.record("both reserves should hold")
                return
            }
            #expect([heldA.bizId, heldB.bizId] == [a, b])
            #expect([heldA.orderId, heldB.orderId] == ["o-1", "o-1"])
            let readA = try await engine.reservation(orderId: "o-1", bizId: a)
            #expect(readA.lines.map(\.reserved) == [2])
            #expect(readA.bizId == a && readA.orderId == "o-1")
            #expect(try await engine.reservation(orderId: "o-1", bizId: b).lines.map(\.reserved) == [3])
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: "o-1", bizId: a + "c") }

            _ = try await engine.confirm(orderId: "o-1", bizId: a)
            #expect(try await engine.reservation(orderId: "o-1", bizId: b).status == .reserved)
            _ = try await engine.cancel(orderId: "o-1", bizId: b)
            #expect(try await engine.reservation(orderId: "o-1", bizId: a).status == .confirmed)

            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows(of: a) == [JournalLine(orderId: "o-1", skuId: 1, quantity: 2, status: "CONFIRMED")])
            #expect(try await stores.journalRows(of: b) == [JournalLine(orderId: "o-1", skuId: 1, quantity: 3, status: "CANCELLED")])
            let levelA = try await engine.stock(StockItemID(bizId: a, skuId: 1))
            let levelB = try await engine.stock(StockItemID(bizId: b, skuId: 1))
            #expect([levelA.available, levelA.reserved, levelB.available, levelB.reserved] == [8, 0, 10, 0])
            #expect(try await StockRepository(client: stores.mysql).row(bizId: a, skuId: 1)?.stock == 8)
            #expect(try await StockRepository(client: stores.mysql).row(bizId: b, skuId: 1)?.stock == 10)
        }
    }

    @Test("a cancel of an unknown order blocks that orderId in its own business only, also after Redis lost everything")
    func cancelBeforeReserveIsPerBusiness() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let (a, b) = try await twoBusinesses(stores)
            let recorded = try await engine.cancel(orderId: "o-9", bizId: a)
            #expect(recorded.reservation.bizId == a && recorded.reservation.orderId == "o-9")
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.reserve(command(a, "o-9", 1)) }
            guard case .created = try await engine.reserve(command(b, "o-9", 4)) else {
                Issue.record("another business's order of the same id should hold")
                return
            }
            #expect(try await stores.drainWithWorker())
            let tombstones = try await stores.mysql.query(
                "SELECT biz_id FROM order_tombstones WHERE key_prefix = ? AND order_id = 'o-9'", [.string(stores.keys.prefix)]
            )
            #expect(tombstones.rows.map { $0.string("biz_id") } == [a])

            // A tombstone from before orders were scoped ('*') names no business: it refuses the id in every business.
            _ = try await stores.mysql.query(
                "INSERT INTO order_tombstones (key_prefix, biz_id, order_id) VALUES (?, '*', 'o-old')", [.string(stores.keys.prefix)]
            )
            // Redis forgets everything: the journal still tells the two orders apart.
            try await stores.loseEverything()
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.reserve(command(b, "o-old", 1)) }
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.reserve(command(a, "o-9", 1)) }
            let replay = try await engine.reserve(command(b, "o-9", 4))
            guard case .replayed(let restored) = replay else {
                Issue.record("b's order should be restored from the journal and replayed, got \(replay)")
                return
            }
            #expect(restored.bizId == b && restored.lines.map(\.reserved) == [4])
            let levelB = try await engine.stock(StockItemID(bizId: b, skuId: 1))
            #expect([levelB.available, levelB.reserved] == [6, 4])
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: "o-9", bizId: a + "c") }
        }
    }

    @Test("the reconciler tells two businesses' journal rows of one orderId and SKU apart (in-flight cancel counted)")
    func reconcilerKeysRowsByBusiness() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let (a, b) = (stores.bizId, stores.bizId + "b")
            let (itemA, itemB) = (StockItemID(bizId: a, skuId: 1), StockItemID(bizId: b, skuId: 1))
            for item in [itemA, itemB] { _ = try await engine.setStock(item, StockSettings(stock: 10)) }
            _ = try await engine.reserve(command(b, "o-1", 3))
            _ = try await engine.confirm(orderId: "o-1", bizId: b)
            _ = try await engine.reserve(command(a, "o-1", 2))
            #expect(try await stores.drainWithWorker())
            // a's cancel and b's refund wait in the outbox: MySQL still counts a's hold (its row RESERVED); b's row is
            // CONFIRMED. Both orders are in flight, so the reconciler reads both rows: one orderId, one SKU number.
            _ = try await engine.cancel(orderId: "o-1", bizId: a)
            _ = try await engine.refund(orderId: "o-1", bizId: b)
            let reconciler = try stores.reconciler()
            let snapshot = try await reconciler.snapshot([itemA, itemB])
            let (journal, applied) = try await reconciler.journalSide([itemA, itemB], snapshot, consistent: false)
            #expect(applied.rows[Reconciler.Applied.key(a, "o-1", 1)]?.status == "RESERVED")
            #expect(applied.rows[Reconciler.Applied.key(b, "o-1", 1)]?.status == "CONFIRMED")
            #expect(journal[itemA] == 2)
            let expected = Reconciler.expected(
                dbStock: 10, journalReserved: journal[itemA] ?? 0, entries: snapshot.entries[itemA] ?? [], applied: applied,
                bizId: a, sku: 1
            )
            // Redis has a's hold released: used 0, stock 10 (before, b's CONFIRMED row could stand for a's: used 2).
            #expect(expected.usedStockNum == 0)
            #expect(expected.stockNum == 10)
            #expect(try await reconciler.run(.business(a)).clean)
        }
    }

    @Test("an order held since before orders were scoped (bare name, another business): not business default's, and never copied under its new name")
    func oldOrderOfAnotherBusiness() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let acme = stores.bizId
            let bare = "old-\(stores.bizId)"
            // What the previous version left: the order under its bare orderId, its hash (or directory) naming acme.
            if stores.keys.clustered {
                _ = try await stores.redis.command(
                    "HSET", stores.keys.directory(bare), "state", "reserved", "fp", "", "biz", acme, "shards", ""
                )
            } else {
                _ = try await stores.redis.command(
                    "HSET", stores.keys.order(bare), "status", "reserved", "fp", "", "biz", acme, "lines", "1:2:2",
                    "expires_at", "9999999999999"
                )
            }
            // Business default's short paths do not reach it (before: they read, confirmed or cancelled acme's order).
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: bare, bizId: "default") }
            await #expect(throws: InventoryError.notFound) { try await engine.confirm(orderId: bare, bizId: "default") }
            // Nor does a cancel: 404, and nothing is recorded over acme's order (before, on a cluster, the directory
            // of acme's order was turned cancelled by business default's cancel of an "unknown" order).
            await #expect(throws: InventoryError.notFound) { try await engine.cancel(orderId: bare, bizId: "default") }
            let stateField = stores.keys.clustered ? "state" : "status"
            let storedKey = stores.keys.clustered ? stores.keys.directory(bare) : stores.keys.order(bare)
            #expect(try await stores.redis.command("HGET", storedKey, stateField).text == "reserved")
            // A reserve of that id in business default is not a replay of acme's order (an empty fingerprint, as an
            // order restored from rows written before the journal kept one, matches any body).
            _ = try await engine.setStock(StockItemID(bizId: "default", skuId: 990_001), StockSettings(stock: 0, infinite: true))
            let defaultReserve = ReserveCommand(
                orderId: bare, bizId: "default", userId: nil, items: [.init(skuId: 990_001, quantity: 1)], ttlSeconds: 60,
                shortage: .reject
            )
            await #expect(throws: InventoryError.idempotencyConflict) { try await engine.reserve(defaultReserve) }
            // acme's new name finds nothing, and no copy is restored beside the old one (both would release one hold).
            let thrown = await #expect(throws: InventoryError.self) { try await engine.reservation(orderId: bare, bizId: acme) }
            #expect(thrown?.case == .unavailable)
            #expect(try await stores.keys(matching: "*\(acme)/\(bare)*").isEmpty)
        }
    }

    @Test("an order's Redis name reads back into its business and id; business default keeps the bare orderId")
    func orderNames() {
        let cases = [
            OrderRef(bizId: "default", orderId: "o-1"), OrderRef(bizId: "shop", orderId: "o-1"),
            OrderRef(bizId: "shop", orderId: "a:b.c-d_e"), OrderRef(bizId: "x-y_z", orderId: "default"),
        ]
        for order in cases { #expect(OrderRef(name: order.name) == order) }
        #expect(OrderRef(bizId: "default", orderId: "o-1").name == "o-1")
        #expect(OrderRef(bizId: "shop", orderId: "o-1").name == "shop/o-1")
        // An orderId with ':' cannot be mistaken for a business: '/' is in neither alphabet.
        #expect(OrderRef(name: "shop:o-1") == OrderRef(bizId: "default", orderId: "shop:o-1"))
    }
}
