import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Synchronization
import Testing

@testable import Inventory

/// A rebuild writes its item's live holds, codes and per-user counts in parts (`EngineConfiguration.rebuildChunk`):
/// every part but the last through restamp_holds.lua or fill_part.lua, the last with the item (init_item.lua), all
/// under the item's init lock, so an item with many holds, codes or users never stops Redis for one long script.
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
            let engine = try await stores.engine { $0.rebuildChunk = 2 }
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

    @Test("a pool's codes and an item's user counts in parts of two, rebuilt twice: exactly what MySQL has, and both count")
    func codesAndUsersInParts() async throws {
        try await TestStores.with { stores in
            let engine = try await stores.engine { $0.rebuildChunk = 2 }
            let pool = stores.item(1)
            let limited = stores.item(2)
            _ = try await engine.setPool(pool, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(pool, (1...7).map { "K\($0)" })
            _ = try await engine.setStock(limited, StockSettings(stock: 20, userLimit: 2))
            for u in 1...5 {
                _ = try await engine.reserve(
                    ReserveCommand(
                        orderId: "u-\(u)", bizId: stores.bizId, userId: "user-\(u)", items: [.init(skuId: 2, quantity: 1)],
                        ttlSeconds: 600, shortage: .reject
                    )
                )
            }
            _ = try await engine.reserve(command(stores, "p-1", 2))
            #expect(try await stores.drainWithWorker())
            let unused = try await engine.unusedCodes(pool)
            #expect(unused.count == 5)
            let usage = try await stores.redis.command("HGETALL", stores.keys.userUsage(limited)).array?.compactMap(\.text) ?? []
            #expect(usage.count == 10)
            for _ in 0..<2 {
                for item in [pool, limited] { _ = try await stores.redis.command("DEL", stores.keys.item(item)) }
                #expect(try await engine.stock(pool).available == 5)
                #expect(try await engine.stock(limited).available == 15)
            }
            let codes = try await stores.redis.command("SMEMBERS", stores.keys.codes(pool)).array?.compactMap(\.text) ?? []
            #expect(codes.sorted() == unused)
            #expect(try await stores.itemFields(1)["codes_n"] == "5")
            let rebuilt = try await stores.redis.command("HGETALL", stores.keys.userUsage(limited)).array?.compactMap(\.text) ?? []
            #expect(Self.pairs(rebuilt) == Self.pairs(usage))
            // The set and the hash expire with their items: the last script set all three, at one instant.
            for (set, item) in [(stores.keys.codes(pool), pool), (stores.keys.userUsage(limited), limited)] {
                let itemExpiry = try await stores.redis.command("PEXPIRETIME", stores.keys.item(item)).int
                #expect(try await stores.redis.command("PEXPIRETIME", set).int == itemExpiry)
            }
            // user-1 has 1 of its 2 units: one more is held, the next refused.
            func reserveMore(_ orderId: String) async throws {
                _ = try await engine.reserve(
                    ReserveCommand(
                        orderId: orderId, bizId: stores.bizId, userId: "user-1", items: [.init(skuId: 2, quantity: 1)],
                        ttlSeconds: 600, shortage: .reject
                    )
                )
            }
            try await reserveMore("u-1b")
            await #expect(throws: InventoryError.self) { try await reserveMore("u-1c") }
            _ = try await engine.reserve(command(stores, "p-2", 5))
            #expect(try await engine.unusedCodes(pool) == [])
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    static func pairs(_ flat: [String]) -> [String: String] {
        var pairs: [String: String] = [:]
        for k in stride(from: 0, to: flat.count - 1, by: 2) { pairs[flat[k]] = flat[k + 1] }
        return pairs
    }

    @Test("a code set that lost members between two parts fails the part and drops the lock; init_item likewise")
    func shortSetStartsOver() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            let lock = { (caller: String) in InitLockCall(item, caller: caller, lockMilliseconds: 5000, layout: stores.keys) }
            func part(_ caller: String, _ codes: ArraySlice<String>, before: Int) -> FillPartCall {
                FillPartCall(
                    item, caller: caller, lockMilliseconds: 5000, codes: codes, before: before, itemTTLSeconds: 600, layout: stores.keys
                )
            }
            #expect(try await engine.stores.run(lock("c1")) == .locked)
            _ = try await stores.redis.command("SADD", stores.keys.codes(item), "OLD")
            #expect(try await engine.stores.run(part("c1", ["A", "B"], before: 0)), "the first part empties the set first")
            #expect(try await stores.redis.command("SMEMBERS", stores.keys.codes(item)).array?.compactMap(\.text).sorted() == ["A", "B"])
            let ttl = try await stores.redis.command("PTTL", stores.keys.codes(item)).int ?? -2
            #expect(ttl > 10_000 && ttl <= 600_000, "a part's set lives as long as the item would (\(ttl) ms)")
            #expect(try await !engine.stores.run(part("c2", ["C"], before: 2)), "not the lock's holder")
            // Evicted between two parts: the next part writes nothing and drops the lock, so a rebuild starts at once.
            _ = try await stores.redis.command("SREM", stores.keys.codes(item), "A")
            #expect(try await !engine.stores.run(part("c1", ["C", "D"], before: 2)))
            #expect(try await stores.redis.command("SCARD", stores.keys.codes(item)).int == 1)
            #expect(try await stores.redis.command("EXISTS", stores.keys.item(item)).int == 0)
            #expect(try await engine.stores.run(lock("c2")) == .locked)
            // The item's last call checks the same: one code before, the set has two.
            #expect(try await engine.stores.run(part("c2", ["E"], before: 0)))
            _ = try await stores.redis.command("SADD", stores.keys.codes(item), "F")
            let snapshot = StockRepository.InitSnapshot(
                row: StockRow(bizId: stores.bizId, skuId: 1, stock: 3, infinite: false, dangerNum: 0, backorderLimit: 0),
                liveHolds: [], userWindow: 0, usage: [], pool: CodePool(kind: .oneTime), codes: ["E", "G", "H"]
            )
            let last = InitItemCall(
                item, caller: "c2", snapshot: snapshot, epoch: "ep", drainedEpochs: [], outboxes: stores.keys.outboxes(holding: item),
                now: 0, itemTTLSeconds: 0, retentionSeconds: 60, layout: stores.keys, before: RebuildParts(codes: 1)
            )
            #expect(try await !engine.stores.run(last))
            #expect(try await stores.redis.command("EXISTS", stores.keys.item(item)).int == 0, "no item written, its lock dropped")
            // A usage hash likewise (HLEN).
            #expect(try await engine.stores.run(lock("c3")) == .locked)
            func users(_ ids: [String], before: Int) -> FillPartCall {
                FillPartCall(
                    item, caller: "c3", lockMilliseconds: 5000, usage: ids.map { UserUsage(userId: $0, units: 1) }[...], window: 0,
                    before: before, itemTTLSeconds: 600, layout: stores.keys
                )
            }
            #expect(try await engine.stores.run(users(["u1", "u2"], before: 0)))
            #expect(try await stores.redis.command("HGET", stores.keys.userUsage(item), "u1").text == "0:1")
            _ = try await stores.redis.command("HDEL", stores.keys.userUsage(item), "u2")
            #expect(try await !engine.stores.run(users(["u3"], before: 2)))
            #expect(try await stores.redis.command("HLEN", stores.keys.userUsage(item)).int == 1)
            #expect(try await stores.redis.command("EXISTS", stores.keys.item(item)).int == 0)
        }
    }

    /// A rebuild whose init lock is taken over before it writes the item answers `lost`; the caller must not take
    /// the item for ready then (a GET answered 404 for an item MySQL has): it looks again, and here, the taker being
    /// gone, takes the lock back and rebuilds.
    @Test("a rebuild that lost its lock looks again instead of answering the item is not there")
    func lostRebuildLooksAgain() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            let level = try await stores.mysql.withTransaction(isolation: nil) { session in
                // The stock row held: the rebuild takes the init lock, then waits for the row before it writes.
                _ = try await session.query(
                    "SELECT stock FROM stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE", [.string(stores.bizId), .int(1)]
                )
                let read = Task { try await engine.stock(item) }
                try await waitFor("the rebuild's init lock") {
                    try await stores.redis.command("HGET", stores.keys.item(item), "lock_user_id").text != nil
                }
                // Taken over by a caller that then died (its lock long expired).
                _ = try await stores.redis.command("HSET", stores.keys.item(item), "lock_user_id", "another", "lock_time", "1")
                return read
            }
            let rebuilt = try await level.value
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 3)
        }
    }

    /// The engine's restore (OrderReader) makes sure the order's items are whole, reads the journal and the codes,
    /// then restores: an item that vanishes in between must be rebuilt and the restore run again (`run(onItems:)`),
    /// not answered 503. The test holds `code_assignments` locked while the restore reads it, and deletes the item
    /// meanwhile.
    @Test("an order's restore whose item vanished after the restore made sure of it rebuilds the item and restores")
    func restoreAfterItemVanished() async throws {
        try await TestStores.with { stores in
            let item = stores.item(1)
            _ = try await stores.engine.setStock(item, StockSettings(stock: 10))
            _ = try await stores.engine.reserve(command(stores, "o-1", 2))
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", orderKey(stores, "o-1"))
            // The reader on a MySQL connection of its own, whose wait the process list shows.
            var settings = stores.mysql.configuration
            settings.poolSize = 1
            let client = MySQLClient(configuration: settings, logger: stores.logger)
            let reader = InventoryEngine(
                redis: stores.redis, mysql: client, scripts: try InventoryScripts.load(), configuration: stores.engine.configuration,
                logger: stores.logger
            )
            do {
                try await reader.loadScripts()
                let session = try #require(try await client.query("SELECT CONNECTION_ID() AS id").rows.first?.int64("id"))
                let read = try await stores.mysql.withSession { lock in
                    try await lock.execute("LOCK TABLES code_assignments WRITE")
                    let read = Task { try await reader.reservation(orderId: "o-1", bizId: stores.bizId) }
                    do {
                        try await waitFor("the restore waiting for code_assignments") {
                            try await stores.mysql.query(
                                "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND STATE LIKE '%metadata lock%'",
                                [.int(session)]
                            ).rows.first?.int64("n") == 1
                        }
                        _ = try await stores.redis.command("DEL", stores.keys.item(item))
                    } catch {
                        // The pooled connection must not keep the table locked for every other test.
                        try? await lock.execute("UNLOCK TABLES")
                        throw error
                    }
                    try await lock.execute("UNLOCK TABLES")
                    return read
                }
                let order = try await read.value
                #expect(order.status == .reserved)
                let level = try await stores.engine.stock(item)
                #expect(level.reserved == 2)
                #expect(level.available == 8)
                _ = try await stores.engine.cancel(orderId: "o-1", bizId: stores.bizId)
                #expect(try await stores.engine.stock(item).available == 10)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    /// A rebuild's lock is taken over only after the rebuild went a whole lock lifetime without a part, by then its
    /// wait for another caller (`initWaitMilliseconds`) has long run out: the wait for the taker's rebuild is one of
    /// its own (it used to answer 503 at once, while the taker was about to finish).
    @Test("a rebuild whose lock a live caller took over waits for it anew, then rebuilds when that caller is gone")
    func lostRebuildWaitsAnew() async throws {
        try await TestStores.with { stores in
            let engine = try await stores.engine { $0.initWaitMilliseconds = 1000 }
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "o-1", 3))
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            let started = ContinuousClock.now
            let read = try await stores.mysql.withTransaction(isolation: nil) { session in
                _ = try await session.query(
                    "SELECT stock FROM stock WHERE biz_id = ? AND sku_id = ? FOR UPDATE", [.string(stores.bizId), .int(1)]
                )
                let read = Task { try await engine.stock(item) }
                try await waitFor("the rebuild's init lock") {
                    try await stores.redis.command("HGET", stores.keys.item(item), "lock_user_id").text != nil
                }
                try await waitFor("the rebuild's first wait run out") { ContinuousClock.now > started + .milliseconds(1100) }
                // Taken over by a caller whose lock runs out 300 ms from now (it dies before it writes).
                let now = try await engine.stores.redisNow(routingKey: stores.keys.item(item))
                _ = try await stores.redis.command(
                    "HSET", stores.keys.item(item), "lock_user_id", "another", "lock_time",
                    String(now - engine.configuration.initLockMilliseconds + 300)
                )
                return read
            }
            let rebuilt = try await read.value
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 3)
        }
    }

    /// A pool's settings written while the item is being rebuilt would go into the hash that holds only the lock:
    /// set_pool.lua answers `missing` like every script that changes items (it wrote into any hash that existed).
    @Test("a pool's settings are not written into an item that holds only a rebuild's lock")
    func setPoolWaitsForWholeItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setStock(item, StockSettings(stock: 10))
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            #expect(try await engine.stores.run(InitLockCall(item, caller: "c1", lockMilliseconds: 5000, layout: stores.keys)) == .locked)
            #expect(try await !engine.stores.run(SetPoolCall(item, CodePool(kind: .reusable), layout: stores.keys)))
            #expect(try await stores.itemFields(1)["pool_kind"] == nil)
        }
    }

    /// Between two parts the code set holds only some of the pool's codes and its item only the lock: an export that
    /// starts then must send none of them (it used to send the set's pages, then fail).
    @Test("an export that starts while its item is being rebuilt sends nothing")
    func exportWaitsForWholeItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(item, ["A", "B", "C"])
            let export = try await engine.exportCodes(item)
            _ = try await stores.redis.command("DEL", stores.keys.item(item))
            #expect(try await engine.stores.run(InitLockCall(item, caller: "c1", lockMilliseconds: 5000, layout: stores.keys)) == .locked)
            let sent = Mutex<[String]>([])
            await #expect(throws: InventoryError.self) {
                try await export.forEachPage { page in sent.withLock { $0 += page } }
            }
            #expect(sent.withLock { $0 } == [])
        }
    }
}
