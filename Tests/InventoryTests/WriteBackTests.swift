import Foundation
@testable import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// The journal, the write-back worker, expiry, refunds and the durability modes, on real Redis and MariaDB.
@Suite("Write-back to MySQL")
struct WriteBackTests {
    func reserve(
        _ stores: TestStores, _ orderId: String, _ items: [(UInt64, Int64)], ttl: Int = 1800
    ) async throws -> ReserveOutcome {
        try await stores.engine.reserve(
            ReserveCommand(
                orderId: orderId, bizId: stores.bizId, userId: "u-\(orderId)",
                items: items.map { .init(skuId: $0.0, quantity: $0.1) }, ttlSeconds: ttl, shortage: .reject
            )
        )
    }

    /// Runs a worker while `body` runs, then stops it.
    func withWorker<T: Sendable>(
        _ worker: WriteBackWorker, _ body: @Sendable () async throws -> T
    ) async throws -> T {
        let task = Task { try await worker.run() }
        do {
            let result = try await body()
            worker.stop()
            try await task.value
            return result
        } catch {
            worker.stop()
            _ = try? await task.value
            throw error
        }
    }

    /// db_stock == stock_num + used_stock_num + confirmed_unapplied − refund_unapplied, and nothing in flight.
    func expectSettled(_ stores: TestStores, _ sku: UInt64, mysql: Int64, available: Int64, reserved: Int64) async throws {
        let fields = try await stores.itemFields(sku)
        #expect(fields["stock_num"] == String(available), "item \(sku) available")
        #expect(fields["used_stock_num"] == String(reserved), "item \(sku) reserved")
        #expect((fields["confirmed_unapplied"] ?? "0") == "0", "item \(sku) confirms in flight")
        #expect((fields["refund_unapplied"] ?? "0") == "0", "item \(sku) refunds in flight")
        #expect(try await stores.mysqlStock(sku) == mysql, "item \(sku) MySQL stock")
    }

    @Test("a mixed run leaves one journal row per line in its final state, and MySQL stock = initial − confirmed + refunded")
    func mixedRun() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 50))
            _ = try await reserve(stores, "A", [(1, 3)])
            _ = try await engine.confirm(orderId: "A", bizId: stores.bizId)
            _ = try await reserve(stores, "B", [(1, 2), (2, 1)])
            _ = try await engine.cancel(orderId: "B", bizId: stores.bizId)
            _ = try await reserve(stores, "C", [(2, 4)], ttl: 1)
            _ = try await reserve(stores, "D", [(1, 5)])
            _ = try await engine.confirm(orderId: "D", bizId: stores.bizId)
            let refund = try await engine.refund(orderId: "D", bizId: stores.bizId)
            #expect(refund.replayed == false)
            #expect(try await engine.refund(orderId: "D", bizId: stores.bizId).replayed == true)
            _ = try await reserve(stores, "E", [(2, 2)])
            await #expect(throws: InventoryError.invalidState(.reserved)) { try await engine.refund(orderId: "E", bizId: stores.bizId) }
            _ = try await engine.cancel(orderId: "F", bizId: stores.bizId)

            let worker = stores.worker()
            try await withWorker(worker) {
                #expect(try await stores.drained())
                // C's hold ends once its second is up; the sweeper takes it back, the worker journals it.
                try await Task.sleep(for: .milliseconds(1100))
                let sweeper = ExpirySweeper(engine: engine, logger: stores.logger)
                #expect(await sweeper.sweepOnce() == 1)
                #expect(await sweeper.sweepOnce() == 0)
                #expect(try await stores.drained())
            }
            let rows = try await stores.journalRows().map(\.description)
            #expect(
                rows == [
                    "A/1x3=CONFIRMED", "B/1x2=CANCELLED", "B/2x1=CANCELLED", "C/2x4=EXPIRED", "D/1x5=REFUNDED",
                    "E/2x2=RESERVED",
                ]
            )
            try await expectSettled(stores, 1, mysql: 97, available: 97, reserved: 0)
            try await expectSettled(stores, 2, mysql: 50, available: 48, reserved: 2)
            #expect(try await engine.reservation(orderId: "E", bizId: stores.bizId).persisted == true)
            #expect(worker.stats.duplicates == 0)
        }
    }

    @Test("async mode with MySQL unreachable: reserves succeed, the journal catches up, nothing missing or doubled")
    func asyncWhileMySQLDown() async throws {
        let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(mysqlPort: proxy.port) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 1000))
            proxy.down = true
            let worker = stores.worker(batchSize: 7)
            try await withWorker(worker) {
                for index in 0..<60 {
                    _ = try await reserve(stores, "o\(index)", [(1, 2)])
                    if index % 3 == 0 { _ = try await engine.confirm(orderId: "o\(index)", bizId: stores.bizId) }
                }
                #expect(try await engine.stock(stores.item(1)).available == 880)
                let thrown = await #expect(throws: InventoryError.self) {
                    try await engine.setStock(stores.item(1), StockSettings(stock: 2000))
                }
                #expect(thrown?.case == .unavailable)
                #expect(try await engine.stock(stores.item(1)).available == 880, "a failed PUT is reversed in Redis")
                let deadline = ContinuousClock.now + .seconds(10)
                while worker.stats.failedAttempts < 2, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(worker.stats.failedAttempts >= 2)
                #expect(try await stores.outboxLength() == 80, "nothing is acknowledged while MySQL is down")
                proxy.down = false
                #expect(try await stores.drained())
            }
            let rows = try await stores.journalRows()
            #expect(rows.count == 60)
            #expect(rows.filter { $0.status == "CONFIRMED" }.count == 20)
            #expect(rows.filter { $0.status == "RESERVED" }.count == 40)
            #expect(rows.allSatisfy { $0.quantity == 2 })
            try await expectSettled(stores, 1, mysql: 960, available: 880, reserved: 80)
        }
        await proxy.close()
    }

    @Test("sync mode: the answer waits for the journal; with MySQL unreachable it is 503 and holds nothing")
    func syncMode() async throws {
        let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(mysqlPort: proxy.port, durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            guard case .created(let held) = try await reserve(stores, "s1", [(1, 3)]) else {
                Issue.record("expected a new reservation")
                return
            }
            #expect(held.persisted == true)
            #expect(try await stores.journalRows().map(\.description) == ["s1/1x3=RESERVED"], "committed before the answer")

            proxy.down = true
            do {
                _ = try await reserve(stores, "s2", [(1, 4)])
                Issue.record("a sync reserve must not succeed without MySQL")
            } catch InventoryError.unavailable {
            }
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            // Redis does not know it and MySQL cannot be asked: 503, not a 404 that could be wrong.
            do {
                _ = try await engine.reservation(orderId: "s2", bizId: stores.bizId)
                Issue.record("an order unknown to Redis cannot be looked up without MySQL")
            } catch InventoryError.unavailable {
            }
            proxy.down = false

            // The same orderId can be retried: the failed attempt left no trace that refuses it.
            guard case .created = try await reserve(stores, "s2", [(1, 4)]) else {
                Issue.record("the retry should hold stock")
                return
            }
            let concurrent = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
                for index in 0..<3 {
                    group.addTask { if case .created = try await reserve(stores, "g\(index)", [(1, 1)]) { true } else { false } }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(concurrent == 3)
            // The outbox still carries every event; the worker finds the rows already there and undone ones gone.
            try await withWorker(stores.worker()) {
                let drained = try await stores.drained()
                #expect(drained)
            }
            #expect(
                try await stores.journalRows().map(\.description) == [
                    "g0/1x1=RESERVED", "g1/1x1=RESERVED", "g2/1x1=RESERVED", "s1/1x3=RESERVED", "s2/1x4=RESERVED",
                ]
            )
            try await expectSettled(stores, 1, mysql: 10, available: 0, reserved: 10)
        }
        await proxy.close()
    }

    @Test("sync mode: confirm and cancel answer after their journal rows; with MySQL unreachable 503, and a retry answers once recorded")
    func syncTransitions() async throws {
        let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(mysqlPort: proxy.port, durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            for (order, quantity) in [("c1", 2), ("c2", 3), ("c3", 1), ("c4", 1)] as [(String, Int64)] {
                _ = try await reserve(stores, order, [(1, quantity)])
            }
            #expect(try await engine.confirm(orderId: "c1", bizId: stores.bizId).replayed == false)
            #expect(try await engine.cancel(orderId: "c2", bizId: stores.bizId).replayed == false)
            // No worker runs: the answers waited for the journal, and the confirm's stock left MySQL with it.
            #expect(
                try await stores.journalRows().map(\.description) == [
                    "c1/1x2=CONFIRMED", "c2/1x3=CANCELLED", "c3/1x1=RESERVED", "c4/1x1=RESERVED",
                ]
            )
            #expect(try await stores.mysqlStock(1) == 8)

            proxy.down = true
            let thrown2 = await #expect(throws: InventoryError.self) { try await engine.confirm(orderId: "c3", bizId: stores.bizId) }
            #expect(thrown2?.case == .outcomeUnknown, "the confirm is made in Redis: not \"nothing was changed\"")
            let thrown3 = await #expect(throws: InventoryError.self) { try await engine.cancel(orderId: "c4", bizId: stores.bizId) }
            #expect(thrown3?.case == .outcomeUnknown, "the cancel is made in Redis: not \"nothing was changed\"")
            proxy.down = false
            try await stores.reconnected()
            // Redis made the changes and keeps them (the outbox has them); the journal does not have them yet.
            #expect(try await engine.reservation(orderId: "c3", bizId: stores.bizId).status == .confirmed)
            #expect(try await engine.reservation(orderId: "c4", bizId: stores.bizId).status == .cancelled)
            #expect(try await stores.journalRows().map(\.status).suffix(2) == ["RESERVED", "RESERVED"])
            // The client's retry is a replay, answered once the journal has the change.
            #expect(try await engine.confirm(orderId: "c3", bizId: stores.bizId).replayed)
            #expect(try await engine.cancel(orderId: "c4", bizId: stores.bizId).replayed)
            let recorded = [
                "c1/1x2=CONFIRMED", "c2/1x3=CANCELLED", "c3/1x1=CONFIRMED", "c4/1x1=CANCELLED",
            ]
            #expect(try await stores.journalRows().map(\.description) == recorded)
            #expect(try await stores.mysqlStock(1) == 7)

            // The worker applies every event again: nothing moves twice.
            try await withWorker(stores.worker()) {
                let drained = try await stores.drained()
                #expect(drained)
            }
            #expect(try await stores.journalRows().map(\.description) == recorded)
            try await expectSettled(stores, 1, mysql: 7, available: 7, reserved: 0)
        }
        await proxy.close()
    }

    @Test("sync mode: a replay meeting the row of an earlier attempt taken back in Redis answers 503 until that row is gone")
    func syncReplayAfterUndoneAttempt() async throws {
        try await TestStores.with(durability: .sync) { stores in
            // The first attempt and the retry were made in Redis without a journal commit (their commits' outcomes
            // were lost); an async engine on the same keys makes such holds.
            let unrecorded = InventoryEngine(
                redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(),
                configuration: EngineConfiguration(durability: .async, keys: stores.keys), logger: stores.logger
            )
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            let command = ReserveCommand(
                orderId: "u1", bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)], ttlSeconds: 600,
                shortage: .reject
            )
            func event() async throws -> OutboxEvent? {
                let id = try await stores.redis.command("HGET", stores.orderKey("u1", sku: 1), "event").text ?? ""
                let stream = stores.outboxKey("u1", sku: 1)
                return OutboxEvent.entries(stream: stream, try await stores.redis.command("XRANGE", stream, id, id)).first?.event
            }
            _ = try await unrecorded.reserve(command)
            let first = try #require(try await event())
            // The worker wrote the first attempt's row from the outbox; then that attempt was taken back in Redis.
            _ = try await JournalRepository(client: stores.mysql).apply([first])
            _ = try await stores.redis.command("XDEL", first.stream, first.id)
            await stores.engine.undoReserve(
                orderId: "u1", bizId: stores.bizId, lines: [ReservationLine(skuId: 1, requested: 1, reserved: 1)],
                eventId: first.id
            )
            // The retry holds again; its replay must not be answered from the first attempt's row.
            _ = try await unrecorded.reserve(command)
            let thrown4 = await #expect(throws: InventoryError.self) { try await stores.engine.reserve(command) }
            #expect(thrown4?.case == .unavailable)
            // Once the worker has removed that row and recorded the retry, the replay is answered.
            try await withWorker(stores.worker()) {
                let drained = try await stores.drained()
                #expect(drained)
            }
            guard case .replayed = try await stores.engine.reserve(command) else {
                Issue.record("expected a replay")
                return
            }
            #expect(try await stores.journalRows().map(\.description) == ["u1/1x1=RESERVED"])
            try await expectSettled(stores, 1, mysql: 10, available: 9, reserved: 1)
        }
    }

    @Test("a hold that duplicates a journal row of an earlier reserve (Redis lost the order) is taken back")
    func duplicateCompensated() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await reserve(stores, "dup", [(1, 3)])
            try await withWorker(stores.worker()) {
                let drained = try await stores.drained()
                #expect(drained)
            }
            // Redis forgets the order (data loss), the client retries: a second hold for the same line. No worker
            // runs meanwhile (one reading ahead would take the hold back before it could be seen).
            _ = try await stores.redis.command("DEL", stores.orderKey("dup", sku: 1), stores.keys.reserveKey(stores.item(1), orderId: "dup"))
            _ = try await reserve(stores, "dup", [(1, 3)])
            #expect(try await engine.stock(stores.item(1)).available == 4)
            let worker = stores.worker()
            try await withWorker(worker) {
                let drained = try await stores.drained()
                #expect(drained)
            }
            #expect(worker.stats.duplicates == 1)
            #expect(try await engine.stock(stores.item(1)).available == 7, "the duplicate hold is released")
            #expect(try await stores.journalRows().map(\.description) == ["dup/1x3=RESERVED"])
        }
    }

    @Test("SIGKILL of the worker process mid-run, then a restart: nothing lost, nothing doubled")
    func workerKilled() async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 1_000_000))
            let total = 3000
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in 0..<8 {
                    group.addTask {
                        for index in stride(from: chunk, to: total, by: 8) {
                            _ = try await reserve(stores, "k\(index)", [(1, 1)])
                            if index % 2 == 0 { _ = try await engine.confirm(orderId: "k\(index)", bizId: stores.bizId) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            var environment = stores.serviceEnvironment()
            environment["INVENTORY_WORKER_BATCH"] = "50"
            environment["INVENTORY_WORKER_CONSUMER"] = "killed-worker"
            // Each restart reads the killed one's streams once their leases run out: 2 s after the kill.
            environment["INVENTORY_WORKER_LEASE_MS"] = "2000"
            environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
            environment["INVENTORY_LOG_LEVEL"] = "error"
            func start() throws -> Process {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["worker"]
                process.environment = environment
                try process.run()
                return process
            }
            var kills = 0
            for _ in 0..<3 {
                let process = try start()
                // Kill it as soon as it has committed something, while most of the outbox is still ahead of it.
                let deadline = ContinuousClock.now + .seconds(30)
                var journalled = 0
                while ContinuousClock.now < deadline {
                    journalled = try await stores.journalRows().count
                    if journalled > kills * 600 + 50 || journalled == total { break }
                    try await Task.sleep(for: .milliseconds(5))
                }
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                if journalled < total { kills += 1 }
            }
            #expect(kills >= 1, "the worker was killed mid-run at least once")
            let last = try start()
            #expect(try await stores.drained(within: 60))
            last.terminate()
            last.waitUntilExit()
            let rows = try await stores.journalRows()
            #expect(rows.count == total)
            #expect(rows.filter { $0.status == "CONFIRMED" }.count == total / 2)
            #expect(Set(rows.map(\.orderId)).count == total)
            try await expectSettled(stores, 1, mysql: 1_000_000 - Int64(total / 2), available: 1_000_000 - Int64(total), reserved: Int64(total / 2))
        }
    }
}
