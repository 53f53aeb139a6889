import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// A rebuild re-stamps its item's live holds in parts (`EngineConfiguration.rebuildChunkHolds`): every part but the
/// last through restamp_holds.lua, the last with the item (init_item.lua), all under the item's init lock, so an item
/// with many live holds never stops Redis for one long script.
@Suite("Rebuilds in parts")
struct RebuildChunkTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    func orderKey(_ stores: TestStores, _ orderId: String) -> String {
        let name = OrderRef(bizId: stores.bizId, orderId: orderId).name
        return stores.keys.order(name, shard: stores.keys.partShard(orderId: name, item: stores.item(1)))
    }

    @Test("five holds in parts of two, rebuilt twice: every hold's records name the new epoch, and each still counts")
    func partsCountEveryHold() async throws {
        try await TestStores.with { stores in
            let engine = try await stores.engine { $0.rebuildChunkHolds = 2 }
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 20))
            for q in 1...5 { _ = try await engine.reserve(command(stores, "o-\(q)", Int64(q))) }
            #expect(try await stores.drainWithWorker())
            // A reserve key vanished alone: its part writes it anew.
            _ = try await stores.redis.command("DEL", stores.keys.reserveKey(item, orderId: "o-2"))
            let before = try await stores.itemFields(1)["epoch"]
            for _ in 0..<2 {
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                let level = try await engine.stock(item)
                #expect(level.reserved == 15)
                #expect(level.available == 5)
            }
            let epoch = try #require(try await stores.itemFields(1)["epoch"])
            #expect(epoch != before)
            for q in 1...5 {
                let reserveKey = stores.keys.reserveKey(item, orderId: "o-\(q)")
                #expect(try await stores.redis.command("GET", reserveKey).text == "\(q)@\(epoch)", "o-\(q)'s reserve key")
                #expect((try await stores.redis.command("TTL", reserveKey).int ?? -2) > 0)
                #expect(try await stores.redis.command("HGET", orderKey(stores, "o-\(q)"), "line_epochs").text == epoch)
            }
            // With their reserve keys gone too, the order's records say the holds count: a cancel gives back, a
            // confirm sells, exactly once.
            for q in [1, 4] { _ = try await stores.redis.command("DEL", stores.keys.reserveKey(item, orderId: "o-\(q)")) }
            _ = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            _ = try await engine.confirm(orderId: "o-4", bizId: stores.bizId)
            let level = try await engine.stock(item)
            #expect(level.reserved == 10)
            #expect(level.available == 6)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.mysqlStock(1) == 16)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a part re-stamps only under its caller's init lock: another caller's part writes nothing")
    func partNeedsTheLock() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 2))
            _ = try await engine.reserve(command(stores, "o-2", 3))
            let epoch = try #require(try await stores.itemFields(1)["epoch"])
            let holds: ArraySlice<StockRepository.LiveHold> = [
                (orderId: "o-1", quantity: 2, expiresAtMilliseconds: 0), (orderId: "o-2", quantity: 3, expiresAtMilliseconds: 0),
            ]
            func part(_ caller: String) -> RestampHoldsCall {
                RestampHoldsCall(
                    item, caller: caller, epoch: "new-epoch", holds: holds, now: 0, retentionSeconds: 60, lockMilliseconds: 5000,
                    layout: stores.keys
                )
            }
            // The item is whole: no part of a rebuild may write into it.
            #expect(try await engine.stores.run(part("c1")) == .lost)
            // Lost with the item: c1 takes the init lock; c2 (whose lock was taken over) writes nothing.
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            #expect(
                try await engine.stores.run(InitLockCall(item, caller: "c1", lockMilliseconds: 5000, layout: stores.keys)) == .locked
            )
            let lock = try await stores.redis.command("HGET", stores.keys.item(item), "lock_time").text
            #expect(try await engine.stores.run(part("c2")) == .lost)
            #expect(try await stores.redis.command("HGET", stores.keys.item(item), "lock_time").text == lock, "a lost part renews nothing")
            for orderId in ["o-1", "o-2"] {
                #expect(try await stores.redis.command("GET", stores.keys.reserveKey(item, orderId: orderId)).text?.hasSuffix("@\(epoch)") == true)
                #expect(try await stores.redis.command("HGET", orderKey(stores, orderId), "line_epochs").text == epoch)
            }
            // The lock's holder re-stamps both records and hears the epoch they named; the part renews its lock.
            _ = try await stores.redis.command("HSET", stores.keys.item(item), "lock_time", "1")
            _ = try await stores.redis.command("PERSIST", stores.keys.item(item))
            #expect(try await engine.stores.run(part("c1")) == .restamped(previousEpochs: [epoch]))
            let lockTime = try await stores.redis.command("HGET", stores.keys.item(item), "lock_time").text.flatMap { Int64($0) } ?? 0
            #expect(lockTime > 1_000_000_000_000, "the lock's time is now's (\(lockTime))")
            let lockTTL = try await stores.redis.command("PTTL", stores.keys.item(item)).int ?? -2
            #expect(lockTTL > 0 && lockTTL <= 10_000, "the lock-only hash lives twice the lock's lifetime (\(lockTTL) ms)")
            for (orderId, q) in [("o-1", 2), ("o-2", 3)] {
                #expect(try await stores.redis.command("GET", stores.keys.reserveKey(item, orderId: orderId)).text == "\(q)@new-epoch")
                #expect(try await stores.redis.command("HGET", orderKey(stores, orderId), "line_epochs").text == "new-epoch")
            }
        }
    }

    /// An order restored from the journal while its item is being rebuilt would write its hold with no epoch, after
    /// the part of the rebuild that re-stamped it: the rebuilt item would then take the hold for one it does not
    /// count. restore_order.lua answers `missing` instead, and the restore waits for the item.
    @Test("an order restored while its item is not whole writes nothing; through run(onItems:) it waits for the item")
    func restoreWaitsForItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 2))
            #expect(try await stores.drainWithWorker())
            let reserveKey = stores.keys.reserveKey(item, orderId: "o-1")
            let held = try await stores.redis.command("GET", reserveKey).text
            // The order's hash vanished, and its item is held by another caller's rebuild (only its lock is there).
            _ = try await stores.redis.command("DEL", orderKey(stores, "o-1"))
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            _ = try await stores.redis.command("HSET", stores.keys.item(item), "lock_user_id", "another", "lock_time", "1")
            let name = OrderRef(bizId: stores.bizId, orderId: "o-1").name
            let call = RestoreOrderCall(
                orderId: name, shard: stores.keys.partShard(orderId: name, item: item), bizId: stores.bizId, userId: nil,
                status: "reserved", lines: [.init(skuId: 1, quantity: 2)], codes: [], expiresAtMilliseconds: 0, request: "",
                retentionSeconds: 60, layout: stores.keys
            )
            let reply = try await engine.stores.runScript(engine.stores.scripts[.restoreOrder], keys: call.keys, arguments: call.arguments)
            #expect(ScriptReply(reply).tag == "missing")
            #expect(ScriptReply(reply).positions(1) == [1])
            #expect(try await stores.redis.command("EXISTS", orderKey(stores, "o-1")).int == 0, "no order written")
            #expect(try await stores.redis.command("GET", reserveKey).text == held, "the reserve key untouched")
            // The restore as the engine runs it (OrderReader): `missing` rebuilds the item (the lock's holder is long
            // gone: its lock is taken over), then the order is restored with the rebuilt item's epoch.
            #expect(try await engine.rebuilder.run(onItems: call))
            let epoch = try #require(try await stores.itemFields(1)["epoch"])
            #expect(try await stores.redis.command("HGET", orderKey(stores, "o-1"), "line_epochs").text == epoch)
            #expect(try await stores.redis.command("GET", reserveKey).text == "2@\(epoch)")
            #expect(try await engine.stock(item).reserved == 2)
            _ = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            let level = try await engine.stock(item)
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
