import InventoryTestSupport
import RedisClient
import Synchronization
import Testing

@testable import Inventory

/// The first request that meets a Redis gone back finds it out (lua/lib/floor.lua): an instance that has seen a drain
/// mark handed out knows MySQL's value is at least that, and its scripts check Redis's mark against it before they
/// decide anything. Before, clients acted on the old Redis until the write-back worker's check a second later.
extension RedisWentBackTests {
    /// After `oneHoldRecorded`, Redis is copied, `since` runs, and Redis goes back to the copy; nothing checks it.
    func sentBack(_ stores: TestStores, after since: () async throws -> Void) async throws {
        try await oneHoldRecorded(stores)
        let snapshot = try await stores.snapshotRedis()
        try await since()
        try await stores.sendRedisBack(to: snapshot)
    }

    /// A reserve through `engine` refused for stock, `available` left: not held on the old Redis's counts.
    func expectRefused(_ engine: InventoryEngine, _ reserve: ReserveCommand, available: Int64) async throws {
        do {
            _ = try await engine.reserve(reserve)
            Issue.record("\(reserve.orderId) was held on the old Redis's counts")
        } catch InventoryError.insufficientStock(let lines) {
            #expect(lines.map(\.available) == [available])
        }
    }

    /// After `oneHoldRecorded`: order `b` holds 2 more, and nothing was forgotten on the way (no item rebuilt); both
    /// stores agree.
    func expectHeldWithoutForget(_ stores: TestStores) async throws {
        let rebuilds = stores.engine.stats.itemRebuilds
        _ = try await stores.engine.reserve(command(stores, "\(stores.bizId)-b", 2))
        #expect(stores.engine.stats.itemRebuilds == rebuilds, "nothing was forgotten")
        #expect(try await stores.drainWithWorker())
        try await expectAgree(stores, available: 7, reserved: 3, mysql: 10)
    }

    @Test("a cancel right after it of an order confirmed since is refused: nothing is given back twice")
    func cancelRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-paid"
            try await confirmedSinceCopy(stores, order)

            // No worker's check: the cancel is the first to meet the old Redis, whose order is still held.
            await #expect(throws: InventoryError.invalidState(.confirmed)) {
                try await engine.cancel(orderId: order, bizId: stores.bizId)
            }
            #expect(try await engine.reservation(orderId: order, bizId: stores.bizId).status == .confirmed)
            try await expectAgree(stores, available: 7, reserved: 0, mysql: 7)
        }
    }

    @Test("a reserve right after it does not sell the units MySQL knows are held")
    func reserveRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await sentBack(stores) {
                _ = try await engine.reserve(command(stores, "\(stores.bizId)-b", 8))
                #expect(try await stores.drainWithWorker())
            }

            // The old Redis has 9 available; MySQL has 1 + 8 held of 10.
            try await expectRefused(engine, command(stores, "\(stores.bizId)-c", 5), available: 1)
            #expect(try await stores.drainWithWorker())
            try await expectAgree(stores, available: 1, reserved: 9, mysql: 10)
        }
    }

    @Test("a PUT right after it is applied to MySQL's stock, not refused")
    func putRightAfter() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await sentBack(stores) { _ = try await engine.setStock(stores.item(1), StockSettings(stock: 25)) }

            // The instance that made the PUT of 25 knows the old Redis is behind before its Redis half runs.
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 30))
            try await expectAgree(stores, available: 29, reserved: 1, mysql: 30)
        }
    }

    @Test("a call that meets it waits for the check a bounded time: 503, nothing changed; the check goes on")
    func checkWaitBounded() async throws {
        try await TestStores.with { stores in
            try await sentBack(stores) {
                _ = try await stores.engine.reserve(command(stores, "\(stores.bizId)-b", 8))
                #expect(try await stores.drainWithWorker())
            }
            // Another instance, which read MySQL's floors as it started; its check's read of MySQL's marks is held.
            try await withHeldAttempt(stores, configure: { $0.drainCheckWaitMilliseconds = 100 }) { other, proxy, _ in
                proxy.holdRequest(containing: "FROM drain_marks")
                let answer = Mutex<Result<ReserveOutcome, any Error>?>(nil)
                let reserve = Task {
                    do {
                        let result = try await other.reserve(command(stores, "\(stores.bizId)-c", 5))
                        answer.withLock { $0 = .success(result) }
                    } catch {
                        answer.withLock { $0 = .failure(error) }
                    }
                }
                // The check reaches MySQL (on a busy machine maybe only after the answer), and stays held there.
                try await waitFor("the check's read of MySQL's marks held", within: .seconds(30)) { proxy.isHolding }
                do {
                    try await waitFor("an answer while the check is held", within: .seconds(30)) {
                        answer.withLock { $0 != nil }
                    }
                } catch {
                    Issue.record("the reserve waited for the held check: \(error)")
                }
                let answered = answer.withLock { $0 }
                guard case .failure(let error) = answered, case InventoryError.unavailable(let detail) = error,
                    detail.contains("still being checked")
                else {
                    Issue.record("not 503 for the check's wait: \(String(describing: answered))")
                    proxy.release()
                    await reserve.value
                    return
                }
                proxy.release()
                await reserve.value

                // The check, released, goes on: it forgets the old Redis and raises its marks to MySQL's, so no script
                // of this instance finds it behind; the reserve again is refused on MySQL's counts.
                try await waitFor("the released check brings Redis's marks up to the floors", within: .seconds(30)) {
                    for mark in stores.keys.drainMarks {
                        let fence = other.stores.floors.fence(for: mark)
                        guard (try await stores.redis.command("GET", fence.key).int ?? 0) >= fence.floor else { return false }
                    }
                    return true
                }
                try await expectRefused(other, command(stores, "\(stores.bizId)-c", 5), available: 1)
            }
            #expect(try await stores.drainWithWorker())
            try await expectAgree(stores, available: 1, reserved: 9, mysql: 10)
        }
    }

    /// Order `order` holding 3 of item 1's 10, recorded; Redis copied; then the order confirmed (and with `put` the
    /// stock PUT to that), recorded; then Redis goes back to the copy. Nothing checks it.
    func confirmedSinceCopy(_ stores: TestStores, _ order: String, put: Int64? = nil) async throws {
        let engine = stores.engine
        _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
        _ = try await engine.reserve(command(stores, order, 3))
        #expect(try await stores.drainWithWorker())
        let snapshot = try await stores.snapshotRedis()
        _ = try await engine.confirm(orderId: order, bizId: stores.bizId)
        if let put { _ = try await engine.setStock(stores.item(1), StockSettings(stock: put)) }
        #expect(try await stores.drainWithWorker())
        try await stores.sendRedisBack(to: snapshot)
    }

    /// `confirmedSinceCopy` of order `paid`, with the stock PUT to 20; returns the order's id.
    func confirmedAndPutSinceCopy(_ stores: TestStores) async throws -> String {
        let order = "\(stores.bizId)-paid"
        try await confirmedSinceCopy(stores, order, put: 20)
        return order
    }

    @Test("an order read right after it is as MySQL has it: confirmed since, not held")
    func orderReadRightAfter() async throws {
        try await TestStores.with { stores in
            let order = try await confirmedAndPutSinceCopy(stores)
            #expect(try await stores.engine.reservation(orderId: order, bizId: stores.bizId).status == .confirmed)
        }
    }

    @Test("a stock level read right after it is as MySQL has it: the PUT since, the hold sold")
    func stockReadRightAfter() async throws {
        try await TestStores.with { stores in
            _ = try await confirmedAndPutSinceCopy(stores)
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.available == 20 && level.reserved == 0)
        }
    }

    @Test("another instance finds a copy older than its floors' last refresh at its first script, whatever shard it lands on")
    func otherInstanceAfterItsCheck() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let other = try await otherInstance(stores)
            try await oneHoldRecorded(stores)
            func shard(_ orderId: String) -> Int { stores.partShard(orderId, sku: 1) }
            let b = "\(stores.bizId)-b"
            // On a single Redis c lands on a shard whose mark nothing raised since the copy (b's is another): the drain
            // sequence tells what the shard's own mark cannot. (On a cluster a part is in its item's shard, b's.)
            let c = (0..<200).map { "\(stores.bizId)-c\($0)" }.first { shard($0) != shard(b) } ?? "\(stores.bizId)-c"
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.reserve(command(stores, b, 8))
            #expect(try await stores.drainWithWorker())
            // The other instance's refresher (about once a second, with or without a worker) reads MySQL's marks.
            try await other.refreshDrainFloors()
            try await stores.sendRedisBack(to: snapshot)

            try await expectRefused(other, command(stores, c, 5), available: 1)
            try await expectAgree(stores, available: 1, reserved: 9, mysql: 10)
        }
    }

    @Test(
        "a Redis without the drain sequence (made before it, or an operator's DEL) has it made by a check; nothing is forgotten",
        .disabled(if: TestStores.clusterByDefault, "a single Redis's: a cluster has no drain sequence")
    )
    func sequenceMissing() async throws {
        try await TestStores.with { stores in
            try await oneHoldRecorded(stores)
            let sequence = try #require(stores.keys.drainSequence)
            _ = try await stores.redis.command("DEL", sequence)
            try await expectHeldWithoutForget(stores)
            #expect(try await stores.redis.command("GET", sequence).int ?? 0 > 0)
        }
    }

    @Test(
        "a raise on a shard that did not go back checks the others: the sequence is not lifted past what MySQL has",
        .disabled(if: TestStores.clusterByDefault, "a single Redis's: on a cluster item 2's shard, unchanged since the copy, is current")
    )
    func raiseChecksBeside() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let other = try await otherInstance(stores)
            try await oneHoldRecorded(stores)
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 5))
            // b's shard is not item 2's: the PUT of item 2 below raises a mark the copy is not behind on.
            let item2 = stores.keys.itemShard(stores.item(2))
            let b = try #require((0..<200).map { "\(stores.bizId)-b\($0)" }.first { stores.partShard($0, sku: 1) != item2 })
            let snapshot = try await stores.snapshotRedis()
            _ = try await engine.reserve(command(stores, b, 8))
            #expect(try await stores.drainWithWorker())
            try await stores.sendRedisBack(to: snapshot)

            // An instance that knows no floor changes item 2: its MySQL half raises a mark the copy is not behind on.
            // Had it lifted the drain sequence, this instance's scripts would take the old Redis for a current one.
            await #expect(throws: InventoryError.self) { try await other.setStock(stores.item(2), StockSettings(stock: 6)) }
            try await expectRefused(engine, command(stores, "\(stores.bizId)-c", 5), available: 1)
            #expect(try await stores.drainWithWorker())
            try await expectAgree(stores, available: 1, reserved: 9, mysql: 10)
            #expect(try await stores.mysqlStock(2) == 5)
        }
    }

    @Test("a floor above a Redis that agrees with MySQL (a raise that rolled back and was lost) comes down at the check")
    func floorAboveAgreeingRedis() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            try await oneHoldRecorded(stores)
            // A value Redis handed out to a transaction that rolled back, on a Redis that then lost it.
            let mark = stores.keys.drainMark(shard: stores.partShard("\(stores.bizId)-b", sku: 1))
            engine.stores.floors.raise([mark: 1_000])
            try await expectHeldWithoutForget(stores)
            #expect(engine.stores.floors.fence(for: mark).floor < 1_000)
        }
    }
}
