import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing
@testable import Inventory

/// Infinite items: a hold takes nothing from their stock_num, which is their on-hand stock (see `ReservationTests`).
extension ReservationTests {
    @Test("an infinite item never runs out")
    func infiniteItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 0, infinite: true))
            _ = try await engine.reserve(command(stores, "i-1", [(1, 1000)]))
            let level = try await engine.stock(stores.item(1))
            #expect(level.infinite)
            #expect(level.available == 0)
            #expect(level.reserved == 1000)
            #expect(!level.soldOut)
            // Its settings change whatever is held (an infinite item's on-hand stock may be below it: it was 409).
            let changed = try await engine.setStock(stores.item(1), StockSettings(stock: 0, dangerNum: 5))
            #expect(changed.dangerNum == 5)
            #expect(!changed.soldOut)
            _ = try await engine.cancel(orderId: "i-1", bizId: stores.bizId)
            #expect(try await engine.stock(stores.item(1)).reserved == 0)
        }
    }

    /// An infinite item's stock_num is its on-hand stock (a hold moves only used_stock_num): a PUT's delta to MySQL and
    /// the stock it leaves in Redis must not count the held units a second time (a PUT of 20 with 4 held gave MySQL
    /// 16, and made the item finite at 12 available instead of 16).
    @Test("a PUT of an infinite item with holds moves MySQL to the stock asked for, and to finite with the holds apart")
    func putInfiniteWithHolds() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10, infinite: true))
            _ = try await engine.reserve(command(stores, "i-2", [(1, 4)]))
            let put = try await engine.setStock(item, StockSettings(stock: 20))
            #expect(put.onHand == 20, "what the PUT set, as GET reads it back")
            #expect(try await stores.mysqlStock(1) == 20)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            let finite = try await engine.setStock(item, StockSettings(stock: 20, infinite: false))
            #expect(!finite.infinite)
            #expect(finite.available == 16)
            #expect(finite.reserved == 4)
            #expect(try await stores.mysqlStock(1) == 20)
            // And back: infinite again, the on-hand stock whole.
            _ = try await engine.setStock(item, StockSettings(stock: 20, infinite: true))
            #expect(try await stores.mysqlStock(1) == 20)
            #expect(try await stores.itemFields(1)["stock_num"] == "20")
            _ = try await engine.cancel(orderId: "i-2", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// An infinite item's stock_num is its on-hand stock: a sale takes from it, a refund gives back, as in MySQL (a
    /// confirm left it at 10 against MySQL's 6, so a later PUT's delta was 4 short; a refund drove refund_unapplied to
    /// −4, a false difference on every reconciler run).
    @Test("an infinite item's stock_num follows its on-hand stock through a sale and a refund, as MySQL's does")
    func infiniteSaleAndRefund() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10, infinite: true))
            _ = try await engine.reserve(command(stores, "i-3", [(1, 4)]))
            _ = try await engine.confirm(orderId: "i-3", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 6)
            #expect(try await engine.stock(item).onHand == 6)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            _ = try await engine.refund(orderId: "i-3", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await engine.stock(item).onHand == 10)
            #expect(try await stores.itemFields(1)["refund_unapplied"] == "0")
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
            let finite = try await engine.setStock(item, StockSettings(stock: 10, infinite: false))
            #expect(finite.available == 10)
            #expect(try await stores.mysqlStock(1) == 10)
        }
    }

    /// A dispensed reserve sells at once, as a confirm does: an infinite item's on-hand stock loses the units (it kept
    /// them: 10 against MySQL's 6).
    @Test("a dispense of an infinite item takes the sale off its on-hand stock, as MySQL does")
    func infiniteDispense() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10, infinite: true))
            _ = try await engine.reserve(
                ReserveCommand(
                    orderId: "i-4", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 4)], ttlSeconds: 600,
                    shortage: .reject, dispense: true
                )
            )
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 6)
            #expect(try await engine.stock(item).onHand == 6)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    /// An item infinite in Redis and finite in MySQL (a PUT's half that stayed when its MySQL half did not) agreed with
    /// the reconciler whatever it sold; it is a difference now, and a repair drops it for a rebuild from MySQL.
    @Test("an item infinite in Redis but finite in MySQL is a difference, and the repair rebuilds it as MySQL has it")
    func infiniteFlagsDiffer() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await stores.redis.command("HSET", stores.keys.item(item), "is_infinite", "1")
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences.count == 1)
            let fixed = try await stores.reconciler().run(.business(stores.bizId), fix: true)
            #expect(fixed.differences.map(\.fixed) == [true])
            let level = try await engine.stock(item)
            #expect(!level.infinite)
            #expect(level.available == 10)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
