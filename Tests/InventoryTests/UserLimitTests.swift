import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// Per-user limits against the real stores: checked in the reserve script, given back by cancel and expiry,
/// rebuilt from the journal with the item.
@Suite("Per-user limits on real Redis")
struct UserLimitTests {
    /// The longest per-user window the API takes (366 days), for tests that count within one window.
    static let longWindow: Int64 = 366 * 86_400

    func command(
        _ stores: TestStores, _ orderId: String, user: String?, _ items: [(UInt64, Int64)],
        shortage: ShortageMode = .reject, ttl: Int = 1800
    ) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: user,
            items: items.map { ReserveCommand.Item(skuId: $0.0, quantity: $0.1) }, ttlSeconds: ttl, shortage: shortage
        )
    }

    /// Reserves concurrently, one task per (orderId, user, quantity), and counts the outcomes.
    func reserveConcurrently(
        _ stores: TestStores, _ requests: [(String, String, Int64)], sku: UInt64
    ) async -> [String: Int] {
        await withTaskGroup(of: String.self, returning: [String: Int].self) { group in
            for (orderId, user, quantity) in requests {
                group.addTask {
                    do {
                        _ = try await stores.engine.reserve(command(stores, orderId, user: user, [(sku, quantity)]))
                        return "ok"
                    } catch InventoryError.userLimitExceeded {
                        return "limit"
                    } catch InventoryError.insufficientStock {
                        return "short"
                    } catch {
                        return "error: \(error)"
                    }
                }
            }
            var counts: [String: Int] = [:]
            for await result in group { counts[result, default: 0] += 1 }
            return counts
        }
    }

    @Test("200 concurrent reserves of 1 by one user, limit 3: exactly 3 held, 197 refused with the limit")
    func concurrentOneUser() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 1000, userLimit: 3))
            let results = await reserveConcurrently(stores, (0..<200).map { ("a-\($0)", "alice", 1) }, sku: 1)
            #expect(results == ["ok": 3, "limit": 197])
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.available == 997)
            #expect(level.reserved == 3)
            #expect(level.userLimit == 3)
            #expect(try await stores.redis.command("HGET", stores.keys.userUsage(stores.item(1)), "alice").text == "0:3")
        }
    }

    @Test("10 users × 20 concurrent reserves of 1, limit 3, stock 25: 25 held, nobody above 3")
    func concurrentManyUsers() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(2), StockSettings(stock: 25, userLimit: 3))
            var requests: [(String, String, Int64)] = []
            for attempt in 0..<20 {
                for user in 0..<10 { requests.append(("m-\(user)-\(attempt)", "user\(user)", 1)) }
            }
            let results = await reserveConcurrently(stores, requests, sku: 2)
            #expect(results["ok"] == 25)
            #expect(results["ok", default: 0] + results["limit", default: 0] + results["short", default: 0] == 200)
            let level = try await stores.engine.stock(stores.item(2))
            #expect(level.available == 0)
            #expect(level.reserved == 25)
            var held: [String: Int] = [:]
            for key in try await stores.itemKeys(2, "rsv:*") {
                let orderId = String(key.split(separator: ":").last ?? "")
                held[String(orderId.split(separator: "-")[1]), default: 0] += 1
            }
            #expect(held.values.reduce(0, +) == 25)
            #expect(held.values.allSatisfy { $0 <= 3 })
        }
    }

    @Test("cancel and expiry give the units back; confirm keeps them counted")
    func givenBack() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(3), StockSettings(stock: 100, userLimit: 2))
            _ = try await engine.reserve(command(stores, "g-1", user: "bob", [(3, 2)]))
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 3, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "g-2", user: "bob", [(3, 1)]))
            }
            _ = try await engine.cancel(orderId: "g-1", bizId: stores.bizId)
            // a replayed cancel gives nothing back twice
            _ = try await engine.cancel(orderId: "g-1", bizId: stores.bizId)
            _ = try await engine.reserve(command(stores, "g-3", user: "bob", [(3, 1)]))
            _ = try await engine.confirm(orderId: "g-3", bizId: stores.bizId)
            _ = try await engine.reserve(command(stores, "g-4", user: "bob", [(3, 1)], ttl: 1))
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 3, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "g-5", user: "bob", [(3, 1)]))
            }
            // g-4's hold runs out: the expiry gives its unit back, the confirmed g-3 stays counted
            try await Task.sleep(for: .milliseconds(1100))
            #expect(try await engine.expire(named: stores.orderName("g-4")))
            _ = try await engine.reserve(command(stores, "g-6", user: "bob", [(3, 1)]))
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 3, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "g-7", user: "bob", [(3, 1)]))
            }
            let level = try await engine.stock(stores.item(3))
            #expect(level.available == 98)
            #expect(level.reserved == 1)
        }
    }

    @Test("an order without a user is refused on a limited item and holds nothing; unlimited items do not ask")
    func userRequired() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(4), StockSettings(stock: 10, userLimit: 5))
            _ = try await engine.setStock(stores.item(5), StockSettings(stock: 10))
            await #expect(throws: InventoryError.userRequired([4])) {
                try await engine.reserve(command(stores, "n-1", user: nil, [(5, 1), (4, 1)]))
            }
            #expect(try await engine.stock(stores.item(5)).available == 10)
            #expect(try await engine.stock(stores.item(4)).available == 10)
            _ = try await engine.reserve(command(stores, "n-2", user: nil, [(5, 1)]))
            #expect(try await engine.stock(stores.item(5)).available == 9)
            // removing the limit lets anonymous orders through again
            _ = try await engine.setStock(stores.item(4), StockSettings(stock: 10, userLimit: 0))
            _ = try await engine.reserve(command(stores, "n-3", user: nil, [(4, 1)]))
            #expect(try await engine.stock(stores.item(4)).available == 9)
        }
    }

    @Test("partial reserves up to the user's allowance; with none left it is the limit, not a shortage")
    func partialClamps() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(6), StockSettings(stock: 100, userLimit: 3))
            let outcome = try await engine.reserve(command(stores, "p-1", user: "carol", [(6, 5)], shortage: .partial))
            guard case .created(let reservation) = outcome else {
                Issue.record("expected a new reservation, got \(outcome)")
                return
            }
            #expect(reservation.lines == [ReservationLine(skuId: 6, requested: 5, reserved: 3)])
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 6, requested: 2, limit: 3, used: 3)])) {
                try await engine.reserve(command(stores, "p-2", user: "carol", [(6, 2)], shortage: .partial))
            }
            #expect(try await engine.stock(stores.item(6)).reserved == 3)
        }
    }

    @Test("a window counts only its own units: an earlier window's count is ignored, and not given back into this one")
    func windows() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            // the longest window (366 days): a test never straddles two of them
            _ = try await engine.setStock(stores.item(7), StockSettings(stock: 100, userLimit: 2, userWindowSeconds: Self.longWindow))
            let current = InventoryEngine.nowMilliseconds() / (Self.longWindow * 1000)
            let usage = stores.keys.userUsage(stores.item(7))
            // dave used his 2 units in the previous hour
            _ = try await stores.redis.command("HSET", usage, "dave", "\(current - 1):2")
            _ = try await engine.reserve(command(stores, "w-1", user: "dave", [(7, 2)]))
            #expect(try await stores.redis.command("HGET", usage, "dave").text == "\(current):2")
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 7, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "w-2", user: "dave", [(7, 1)]))
            }
            // an order counted in an earlier window gives nothing back into this one
            _ = try await stores.redis.command(
                "HSET", stores.orderKey("w-1", sku: 7), "created_at", String((current - 1) * Self.longWindow * 1000 + 5)
            )
            _ = try await engine.cancel(orderId: "w-1", bizId: stores.bizId)
            #expect(try await stores.redis.command("HGET", usage, "dave").text == "\(current):2")
            #expect(try await engine.stock(stores.item(7)).reserved == 0)
        }
    }

    @Test(
        "the usage hash vanishes alone: the item is not whole, and is rebuilt with each user's count (model check seed 1)",
        arguments: ["reserve", "cancel", "export"]
    )
    func usageHashGone(next: String) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(9)
            _ = try await engine.setStock(item, StockSettings(stock: 100, userLimit: 6))
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-u-1", user: "gail", [(9, 4)]))
            _ = try await engine.confirm(orderId: "\(stores.bizId)-u-1", bizId: stores.bizId)
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-u-2", user: "gail", [(9, 1)]))
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-u-3", user: "hank", [(9, 2)]))
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.keys.userUsage(item))
            switch next {
            case "cancel":
                // a give-back into the vanished hash would leave hank's count alone in it
                _ = try await engine.cancel(orderId: "\(stores.bizId)-u-3", bizId: stores.bizId)
            case "export":
                _ = try await engine.ensureItem(item)
            default:
                break
            }
            // gail holds or bought 5 of 6: 2 more are over her limit, whatever the hash's loss
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 9, requested: 2, limit: 6, used: 5)])) {
                try await engine.reserve(command(stores, "\(stores.bizId)-u-4", user: "gail", [(9, 2)]))
            }
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-u-5", user: "gail", [(9, 1)]))
            let usage = try await stores.redis.command("HGET", stores.keys.userUsage(item), "hank").text
            // hank's cancel gave back all he held: his entry is gone, not '0:0' (lib/usage.lua)
            #expect(usage == (next == "cancel" ? nil : "0:2"))
        }
    }

    @Test("a user's entry back at 0 units is deleted; the emptied hash is no key, and the item stays whole without it")
    func zeroEntriesDeleted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(10)
            let usage = stores.keys.userUsage(item)
            _ = try await engine.setStock(item, StockSettings(stock: 100, userLimit: 3, userWindowSeconds: Self.longWindow))
            _ = try await engine.reserve(command(stores, "z-1", user: "ivan", [(10, 2)]))
            _ = try await engine.reserve(command(stores, "z-2", user: "judy", [(10, 1)]))
            _ = try await engine.cancel(orderId: "z-1", bizId: stores.bizId)
            #expect(try await stores.redis.command("HKEYS", usage).array?.compactMap(\.text) == ["judy"])
            _ = try await engine.cancel(orderId: "z-2", bizId: stores.bizId)
            #expect(try await stores.redis.command("EXISTS", usage).int == 0)
            #expect(try await stores.itemFields(10)["has_users"] == "0")
            // no rebuild follows: the item is whole without a hash it has no entries for
            let rebuilds = engine.stats.itemRebuilds
            _ = try await engine.reserve(command(stores, "z-3", user: "ivan", [(10, 3)]))
            #expect(engine.stats.itemRebuilds == rebuilds)
            #expect(try await stores.itemFields(10)["has_users"] == "1", "counted again: the hash must be there")
            #expect(try await stores.redis.command("HGET", usage, "ivan").text?.hasSuffix(":3") == true)
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 10, requested: 1, limit: 3, used: 3)])) {
                try await engine.reserve(command(stores, "z-4", user: "ivan", [(10, 1)]))
            }
            let level = try await engine.stock(item)
            #expect(level.reserved == 3)
            #expect(level.available == 97)
        }
    }

    @Test(
        "entries of past windows are pruned by the reserves that count: the hash holds this window's users only",
        arguments: [3, 300]
    )
    func pastWindowsPruned(stale: Int) async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(11)
            let usage = stores.keys.userUsage(item)
            _ = try await engine.setStock(item, StockSettings(stock: 1000, userLimit: 2, userWindowSeconds: Self.longWindow))
            _ = try await engine.reserve(command(stores, "pw-0", user: "kate", [(11, 1)]))
            let kate = try await stores.redis.command("HGET", usage, "kate").text ?? ""
            let current = try #require(Int(kate.prefix { $0 != ":" }))
            // `stale` users who held in earlier windows (small hash: one listpack; large: a hash table)
            var fields: [String] = []
            for user in 0..<stale { fields += ["old-\(user)", "\(current - 1 - user % 3):\(1 + user % 2)"] }
            _ = try await stores.redis.send(["HSET", usage] + fields, routingKey: usage)
            // each counting reserve examines a few entries; 40 reserves walk a 340-entry hash whole at least once
            for user in 0..<40 {
                _ = try await engine.reserve(command(stores, "pw-\(user + 1)", user: "new-\(user)", [(11, 1)]))
            }
            let left = try await stores.redis.command("HGETALL", usage).array?.compactMap(\.text) ?? []
            let entries = Dictionary(uniqueKeysWithValues: stride(from: 0, to: left.count, by: 2).map { (left[$0], left[$0 + 1]) })
            #expect(entries.count == 41, "\(entries.count - 41) stale entries left")
            #expect(entries.values.allSatisfy { $0 == "\(current):1" })
            #expect(entries["kate"] == "\(current):1")
            #expect(try await engine.stock(item).reserved == 41)
        }
    }

    @Test("a reserve whose pruning empties the hash counts its user in a hash its item knows is there")
    func prunedEmptyThenCounted() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(12)
            let usage = stores.keys.userUsage(item)
            _ = try await engine.setStock(item, StockSettings(stock: 100, userLimit: 2, userWindowSeconds: Self.longWindow))
            _ = try await engine.reserve(command(stores, "pe-1", user: "mona", [(12, 1)]))
            let current = InventoryEngine.nowMilliseconds() / (Self.longWindow * 1000)
            // only an earlier window's entry, lena's own: the next reserve's pruning deletes the whole hash first
            _ = try await stores.redis.command("DEL", usage)
            _ = try await stores.redis.command("HSET", usage, "lena", "\(current - 1):2")
            _ = try await engine.reserve(command(stores, "pe-2", user: "lena", [(12, 2)]))
            #expect(try await stores.redis.command("HGETALL", usage).array?.compactMap(\.text) == ["lena", "\(current):2"])
            #expect(try await stores.itemFields(12)["has_users"] == "1")
            // the hash is what holds lena at her limit: losing it now is the item's loss, rebuilt from the journal
            _ = try await stores.redis.command("DEL", usage)
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 12, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "pe-3", user: "lena", [(12, 1)]))
            }
        }
    }

    @Test("Redis loses the item: the rebuild counts each user's held and sold units from the journal")
    func rebuiltFromJournal() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(8), StockSettings(stock: 100, userLimit: 3))
            _ = try await engine.reserve(command(stores, "r-1", user: "erin", [(8, 2)]))
            _ = try await engine.reserve(command(stores, "r-2", user: "frank", [(8, 1)]))
            _ = try await engine.reserve(command(stores, "r-3", user: "frank", [(8, 2)]))
            _ = try await engine.confirm(orderId: "r-2", bizId: stores.bizId)
            _ = try await engine.cancel(orderId: "r-3", bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(8)), stores.keys.userUsage(stores.item(8)))

            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 8, requested: 2, limit: 3, used: 2)])) {
                try await engine.reserve(command(stores, "r-4", user: "erin", [(8, 2)]))
            }
            #expect(engine.stats.itemRebuilds == 1)
            _ = try await engine.reserve(command(stores, "r-5", user: "erin", [(8, 1)]))
            _ = try await engine.reserve(command(stores, "r-6", user: "frank", [(8, 2)]))
            let level = try await engine.stock(stores.item(8))
            #expect(level.reserved == 5)
            #expect(level.available == 94)
            #expect(level.userLimit == 3)
        }
    }

    /// The rebuild counts a user's units in the window by the reserve's Redis time, as reserve.lua counted them: the
    /// journal row's created_at is MySQL's clock at the worker's write (a MySQL clock behind Redis, here by more than
    /// the window has run, left the units out and the user could take the limit again).
    @Test("a rebuild counts a user's units by the reserve's Redis time, not MySQL's clock at the write")
    func rebuiltByReserveTime() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(13)
            _ = try await engine.setStock(item, StockSettings(stock: 100, userLimit: 2, userWindowSeconds: Self.longWindow))
            _ = try await engine.reserve(command(stores, "rt-1", user: "nina", [(13, 2)]))
            #expect(try await stores.drainWithWorker())
            // MySQL's clock was behind Redis's: the row's write time falls before the window began.
            _ = try await stores.mysql.query(
                "UPDATE reservation_journal SET created_at = created_at - INTERVAL 400 DAY WHERE biz_id = ? AND order_id = 'rt-1'",
                [.string(stores.bizId)]
            )
            _ = try await stores.redis.command("DEL", stores.keys.item(item), stores.keys.userUsage(item))
            await #expect(throws: InventoryError.userLimitExceeded([.init(skuId: 13, requested: 1, limit: 2, used: 2)])) {
                try await engine.reserve(command(stores, "rt-2", user: "nina", [(13, 1)]))
            }
        }
    }
}
