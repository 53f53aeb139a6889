import Foundation
import Synchronization
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The reconciler against real stores: clean whatever is in flight, exact about what is not.
@Suite("Reconciler")
struct ReconcilerTests {
    func reconciler(_ stores: TestStores) throws -> Reconciler { try stores.reconciler() }

    func reserve(_ stores: TestStores, _ orderId: String, _ items: [(UInt64, Int64)]) async throws {
        _ = try await stores.engine.reserve(
            ReserveCommand(
                orderId: orderId, bizId: stores.bizId, userId: nil, items: items.map { .init(skuId: $0.0, quantity: $0.1) },
                ttlSeconds: 600, shortage: .reject
            )
        )
    }

    /// A workload touching every kind of event over five items.
    func workload(_ stores: TestStores, prefix: String) async throws {
        let engine = stores.engine
        for index in 0..<20 {
            let order = "\(prefix)\(index)"
            try await reserve(stores, order, [(UInt64(1 + index % 5), 2), (UInt64(1 + (index + 1) % 5), 1)])
            switch index % 4 {
            case 0: _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
            case 1: _ = try await engine.cancel(orderId: order, bizId: stores.bizId)
            case 2:
                _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
                _ = try await engine.refund(orderId: order, bizId: stores.bizId)
            default: break
            }
        }
    }

    @Test("clean with everything in flight, with a batch committed but not settled, and after a drain")
    func cleanWhateverIsInFlight() async throws {
        try await TestStores.with { stores in
            for sku in UInt64(1)...5 { _ = try await stores.engine.setStock(stores.item(sku), StockSettings(stock: 100)) }
            try await workload(stores, prefix: "w")
            let reconciler = try reconciler(stores)
            var report = try await reconciler.run(.business(stores.bizId))
            #expect(report.itemsChecked == 5)
            #expect(report.differences == [], "nothing applied yet")

            // The worker's commit without its Redis settlement and acknowledgement: as if it died right after.
            var events: [OutboxEvent] = []
            for stream in stores.keys.outboxes {
                let reply = try await stores.redis.command("XRANGE", stream, "-", "+")
                events += OutboxEvent.entries(stream: stream, reply).compactMap(\.event)
            }
            // One event per order and change on a single Redis; on a cluster one per part of the order.
            var expected = 0
            for index in 0..<20 {
                let items = [UInt64(1 + index % 5), UInt64(1 + (index + 1) % 5)].map { stores.item($0) }
                let parts = stores.keys.clustered ? Set(items.map(stores.keys.itemShard)).count : 1
                expected += parts * [2, 2, 3, 1][index % 4]
            }
            #expect(events.count == expected)
            _ = try await JournalRepository(client: stores.mysql).apply(Array(events.prefix(23)))
            report = try await reconciler.run(.business(stores.bizId))
            #expect(report.differences == [], "committed, not settled")

            let worker = stores.worker()
            let task = Task { try await worker.run() }
            #expect(try await stores.drained())
            try await workload(stores, prefix: "x")
            report = try await reconciler.run(.business(stores.bizId))
            #expect(report.differences == [], "while the worker runs")
            #expect(try await stores.drained())
            worker.stop()
            try await task.value
            report = try await reconciler.run(.business(stores.bizId))
            #expect(report.differences == [], "after the drain")
        }
    }

    @Test("a difference injected behind the service's back is reported with its amounts, and --fix repairs it")
    func injectedDifference() async throws {
        try await TestStores.with { stores in
            for sku in UInt64(1)...4 { _ = try await stores.engine.setStock(stores.item(sku), StockSettings(stock: 50)) }
            try await reserve(stores, "a", [(2, 3)])
            try await reserve(stores, "b", [(3, 4)])
            let worker = stores.worker()
            let task = Task { try await worker.run() }
            #expect(try await stores.drained())
            worker.stop()
            try await task.value

            _ = try await stores.redis.command("HINCRBY", stores.keys.item(stores.item(2)), "stock_num", "5")
            _ = try await stores.mysql.query(
                "UPDATE reservation_journal SET quantity = 6 WHERE biz_id = ? AND order_id = 'b'", [.string(stores.bizId)]
            )
            let reconciler = try reconciler(stores)
            let report = try await reconciler.run(.business(stores.bizId))
            #expect(report.differences.count == 2)
            let stock = try #require(report.differences.first { $0.skuId == 2 })
            #expect(stock.dbStock == 50)
            #expect(stock.redis.stockNum == 52)
            #expect(stock.expected.stockNum == 47)
            #expect(stock.redis.usedStockNum == 3)
            let used = try #require(report.differences.first { $0.skuId == 3 })
            #expect(used.journalReserved == 6)
            #expect(used.redis.usedStockNum == 4)
            #expect(used.expected.usedStockNum == 6)
            #expect(used.expected.stockNum == 44)

            let fixed = try await reconciler.run(.business(stores.bizId), fix: true)
            #expect(fixed.differences.count == 2)
            #expect(fixed.differences.allSatisfy { $0.fixed })
            #expect(try await reconciler.run(.business(stores.bizId)).differences == [])
            let level = try await stores.engine.stock(stores.item(2))
            #expect(level.available == 47)
            #expect(level.reserved == 3)
        }
    }

    @Test("an item a reserve changes before every repair is reported not fixed, and the run goes on to the next items")
    func itemChangingUnderEveryRepair() async throws {
        try await TestStores.with { stores in
            for sku in UInt64(1)...2 { _ = try await stores.engine.setStock(stores.item(sku), StockSettings(stock: 50)) }
            for sku in UInt64(1)...2 {
                _ = try await stores.redis.command("HINCRBY", stores.keys.item(stores.item(sku)), "stock_num", "5")
            }
            // A hot item: a reserve lands between each read of item 1 and its repair (the row lock stops MySQL only).
            let landed = NIOLockedCounter()
            let report = try await Reconciler.$beforeRepair.withValue({ id in
                guard id == stores.item(1) else { return }
                landed.add("reserve")
                try await reserve(stores, "hot-\(landed.value["reserve", default: 0])", [(1, 1)])
            }) {
                // Before: the run stopped at item 1 with "kept changing", and reported and recorded nothing.
                try await reconciler(stores).run(.business(stores.bizId), fix: true)
            }
            #expect(landed.value["reserve"] == 5)
            #expect(report.differences.map(\.skuId) == [1, 2])
            #expect(report.differences.map(\.fixed) == [false, true])
            let hot = try #require(report.differences.first)
            #expect([hot.redis.stockNum, hot.expected.stockNum] == [51, 46])
            // Item 1 is repaired by the next run that is not overtaken.
            #expect(try await reconciler(stores).run(.business(stores.bizId), fix: true).differences.map(\.fixed) == [true])
            #expect(try await reconciler(stores).run(.business(stores.bizId)).differences == [])
            let level = try await stores.engine.stock(stores.item(1))
            #expect([level.available, level.reserved] == [45, 5])
        }
    }

    @Test("one reconciliation at a time: a held lease refuses a second")
    func lease() async throws {
        try await TestStores.with { stores in
            _ = try await stores.redis.command("SET", stores.keys.reconcileLease, "someone-else", "PX", "60000")
            await #expect(throws: ReconcileError.leaseHeld) { try await reconciler(stores).run(.business(stores.bizId)) }
            // Still the other's: a refused run gives back nothing it does not hold.
            #expect(try await stores.redis.command("GET", stores.keys.reconcileLease).text == "someone-else")
            _ = try await stores.redis.command("DEL", stores.keys.reconcileLease)
            // A run takes the lease and gives it back when it ends.
            #expect(try await reconciler(stores).run(.business(stores.bizId)).clean)
            #expect(try await stores.redis.command("EXISTS", stores.keys.reconcileLease).int == 0)
        }
    }

    @Test("lease.lua: one owner at a time; renewed by its owner only; given back by its owner only")
    func leaseScript() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await stores.redis.command("DEL", stores.keys.sweepLease(shard: 0))
            #expect(try await engine.sweepLease(shard: 0, owner: "a", milliseconds: 60_000))
            #expect(try await !engine.sweepLease(shard: 0, owner: "b", milliseconds: 60_000))
            #expect(try await engine.sweepLease(shard: 0, owner: "a", milliseconds: 60_000))
            // b's give back leaves a's lease; a's gives it back.
            #expect(try await !engine.run(LeaseCall.giveBack(key: stores.keys.sweepLease(shard: 0), owner: "b")))
            #expect(try await stores.redis.command("GET", stores.keys.sweepLease(shard: 0)).text == "a")
            #expect(try await !engine.run(LeaseCall.giveBack(key: stores.keys.sweepLease(shard: 0), owner: "a")))
            #expect(try await stores.redis.command("EXISTS", stores.keys.sweepLease(shard: 0)).int == 0)
            #expect(try await engine.sweepLease(shard: 0, owner: "b", milliseconds: 60_000))
            // A lifetime of 0 (a misconfiguration) asks for 1 ms, never a give-back: b keeps its lease.
            #expect(try await !engine.sweepLease(shard: 0, owner: "a", milliseconds: 0))
            #expect(try await stores.redis.command("GET", stores.keys.sweepLease(shard: 0)).text == "b")
        }
    }

    @Test("a reconciler that lost its lease to another stops at its next renewal instead of running beside it")
    func leaseLostMidRun() async throws {
        try await TestStores.with { stores in
            let reconciler = try reconciler(stores)
            let owner = try await reconciler.acquireLease()
            try await reconciler.renewLease(owner)
            // It stalled past the lifetime, and another reconciler took the lease.
            _ = try await stores.redis.command("SET", stores.keys.reconcileLease, "someone-else", "PX", "60000")
            await #expect(throws: ReconcileError.leaseLost(itemsChecked: 0)) { try await reconciler.renewLease(owner) }
            #expect(try await stores.redis.command("GET", stores.keys.reconcileLease).text == "someone-else")
        }
    }

    @Test("Redis loses everything mid-workload: items and orders come back from MySQL, no oversell, clean after a drain")
    func redisDataLoss() async throws {
        try await TestStores.with(redisTimeoutMilliseconds: 10_000) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 150))
            let worker = stores.worker(batchSize: 20)
            let task = Task { try await worker.run() }
            let outcomes = NIOLockedCounter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<4 {
                    group.addTask {
                        for index in 0..<60 {
                            let order = "f\(lane)-\(index)"
                            do {
                                try await reserve(stores, order, [(1, 1)])
                                outcomes.add("held")
                                if index % 3 == 0 { _ = try await engine.confirm(orderId: order, bizId: stores.bizId) }
                                if index % 3 == 1 { _ = try await engine.cancel(orderId: order, bizId: stores.bizId) }
                            } catch InventoryError.insufficientStock {
                                outcomes.add("short")
                            } catch InventoryError.notFound {
                                outcomes.add("lost")  // reserved, then Redis lost it before the journal had it
                            } catch InventoryError.unavailable {
                                outcomes.add("503")  // met the forget of what Redis made before the loss: a retry
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(150))
                    // FLUSHALL, but of this test's keys only (other tests share the server).
                    try await stores.loseEverything()
                }
                try await group.waitForAll()
            }
            #expect(try await stores.drained())
            let sweeper = ExpirySweeper(engine: engine, logger: stores.logger)
            _ = await sweeper.sweepJournal(graceMilliseconds: -1_000_000, bizId: stores.bizId)
            #expect(try await stores.drained())
            worker.stop()
            try await task.value
            let rows = try await stores.journalRows()
            let live = rows.filter { $0.status == "RESERVED" || $0.status == "CONFIRMED" }.reduce(0) { $0 + $1.quantity }
            #expect(live <= 150, "never more held or sold than there is")
            let level = try await engine.stock(stores.item(1))
            #expect(level.available >= 0)
            let report = try await reconciler(stores).run(.business(stores.bizId))
            #expect(report.differences == [])
            #expect(outcomes.value["held", default: 0] > 0)
        }
    }
}

/// A small thread-safe tally for tests.
final class NIOLockedCounter: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func add(_ key: String) { counts.withLock { $0[key, default: 0] += 1 } }
    var value: [String: Int] { counts.withLock { $0 } }
}

/// `inventoryd reconcile` as cron runs it: exit status 1 with the item and amounts, `--fix`, then 0.
@Suite("inventoryd reconcile command")
struct ReconcileCommandTests {
    @Test("exit status 1 when Redis was changed behind the service's back, 0 after --fix, JSON on request")
    func exitStatus() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 20))
            _ = try await stores.engine.setStock(stores.item(2), StockSettings(stock: 20))
            _ = try await stores.redis.command("HINCRBY", stores.keys.item(stores.item(2)), "stock_num", "-3")
            var environment = stores.serviceEnvironment()
            environment["INVENTORY_LOG_LEVEL"] = "critical"
            // The first pass reads "the replica" (here the same server), the confirmation the primary.
            environment["INVENTORY_MYSQL_REPLICA_HOST"] = TestStores.mysqlConfiguration(environment).host
            func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["reconcile"] + arguments
                process.environment = environment
                let pipe = Pipe()
                process.standardOutput = pipe
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                return (process.terminationStatus, String(decoding: data, as: UTF8.self))
            }
            let found = try run(["--biz", stores.bizId])
            #expect(found.status == 1)
            #expect(found.output.contains("2 items checked"))
            #expect(found.output.contains("\(stores.bizId):2: db stock 20"))
            #expect(found.output.contains("redis stock_num=17"))
            #expect(found.output.contains("expected stock_num=20"))
            let fixed = try run(["--biz", stores.bizId, "--fix"])
            #expect(fixed.status == 1)
            #expect(fixed.output.contains("(fixed)"))
            let clean = try run(["--biz", stores.bizId])
            #expect(clean.status == 0)
            let json = try run(["--item", "\(stores.bizId):2", "--json"])
            #expect(json.status == 0)
            let report = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
            #expect(report?["itemsChecked"] as? Int == 1)
            #expect((report?["differences"] as? [Any])?.isEmpty == true)
            environment["INVENTORY_REDIS_PORT"] = "1"
            if environment["INVENTORY_REDIS_CLUSTER"] != nil { environment["INVENTORY_REDIS_CLUSTER"] = "127.0.0.1:1" }
            #expect(try run(["--biz", stores.bizId]).status == 2, "a store it cannot reach: could not run")
        }
    }
}
