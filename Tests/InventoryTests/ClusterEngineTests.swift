import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The engine on the local 3-master Redis Cluster (`scripts/cluster.sh`, started by the test command): orders whose
/// items live on different masters are held in parts, all or none, and the journal is exact after the drain.
@Suite("Engine on Redis Cluster")
struct ClusterEngineTests {
    /// One sku per master (the first of 1...500 whose item key's slot that master serves), in master order.
    func skusOnEveryMaster(_ stores: TestStores) async throws -> [UInt64] {
        let cluster = try #require(stores.redis as? RedisClusterClient)
        try await cluster.refresh()
        var chosen: [String: UInt64] = [:]
        for sku in UInt64(1)...500 where chosen.count < 3 {
            let owner = cluster.owner(of: stores.keys.item(stores.item(sku)))
            if chosen[owner] == nil { chosen[owner] = sku }
        }
        try #require(chosen.count == 3, "three masters serve the test's items: \(chosen)")
        return chosen.keys.sorted().map { chosen[$0]! }
    }

    func command(
        _ stores: TestStores, _ orderId: String, _ items: [(UInt64, Int64)], ttl: Int = 1800, dispense: Bool = false
    ) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: "u1",
            items: items.map { ReserveCommand.Item(skuId: $0.0, quantity: $0.1) }, ttlSeconds: ttl, shortage: .reject,
            dispense: dispense
        )
    }

    func level(_ stores: TestStores, _ sku: UInt64) async throws -> (available: Int64, reserved: Int64) {
        let level = try await stores.engine.stock(stores.item(sku))
        return (level.available, level.reserved)
    }

    @Test("an order over three masters: held in three parts, confirmed, journal and MySQL stock exact after the drain")
    func threeParts() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 10)) }
            let outcome = try await engine.reserve(command(stores, "\(stores.bizId)-c-1", [(skus[0], 1), (skus[1], 2), (skus[2], 3)]))
            guard case .created(let held) = outcome else {
                Issue.record("expected a new reservation, got \(outcome)")
                return
            }
            #expect(held.lines.map(\.skuId) == skus, "lines in the order asked")
            #expect(held.lines.map(\.reserved) == [1, 2, 3])
            // One part per shard, each in its items' slot.
            let shards = Set(skus.map { stores.keys.itemShard(stores.item($0)) })
            #expect(try await stores.keys(matching: "*:order:\(stores.orderName("\(stores.bizId)-c-1"))").count == shards.count)
            for (sku, quantity) in zip(skus, [Int64(1), 2, 3]) {
                #expect(try await level(stores, sku) == (10 - quantity, quantity))
            }
            // Read back part by part: lines grouped by part.
            let read = try await engine.reservation(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId)
            #expect(read.status == .reserved)
            #expect(read.lines.sorted { $0.skuId < $1.skuId } == held.lines.sorted { $0.skuId < $1.skuId })

            let replay = try await engine.reserve(command(stores, "\(stores.bizId)-c-1", [(skus[2], 3), (skus[0], 1), (skus[1], 2)]))
            guard case .replayed(let again) = replay else {
                Issue.record("expected a replay, got \(replay)")
                return
            }
            #expect(again.lines.map(\.reserved).reduce(0, +) == 6)
            await #expect(throws: InventoryError.idempotencyConflict) {
                try await engine.reserve(command(stores, "\(stores.bizId)-c-1", [(skus[0], 2)]))
            }

            let confirmed = try await engine.confirm(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId)
            #expect(confirmed.replayed == false)
            #expect(confirmed.reservation.status == .confirmed)
            #expect(try await engine.confirm(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId).replayed == true)
            await #expect(throws: InventoryError.invalidState(.confirmed)) { try await engine.cancel(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId) }
            for (sku, quantity) in zip(skus, [Int64(1), 2, 3]) {
                #expect(try await level(stores, sku) == (10 - quantity, 0))
            }
            #expect(try await stores.drainWithWorker())
            let rows = try await stores.journalRows()
            #expect(rows.count == 3)
            #expect(rows.allSatisfy { $0.orderId == "\(stores.bizId)-c-1" && $0.status == "CONFIRMED" }, "\(rows)")
            for (sku, quantity) in zip(skus, [Int64(1), 2, 3]) {
                #expect(try await stores.mysqlStock(sku) == 10 - quantity)
            }

            let refunded = try await engine.refund(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId)
            #expect(refunded.replayed == false)
            #expect(try await engine.refund(orderId: "\(stores.bizId)-c-1", bizId: stores.bizId).replayed == true)
            for sku in skus { #expect(try await level(stores, sku) == (10, 0)) }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().allSatisfy { $0.status == "REFUNDED" })
            for sku in skus { #expect(try await stores.mysqlStock(sku) == 10) }
        }
    }

    @Test("one part short: the parts held are taken back, nothing stays held, the same orderId succeeds later")
    func shortPartCompensated() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(skus[1]), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(skus[2]), StockSettings(stock: 1))
            let order = command(stores, "\(stores.bizId)-c-short", [(skus[0], 4), (skus[1], 5), (skus[2], 2)])
            do {
                _ = try await engine.reserve(order)
                Issue.record("a short part must fail the order")
            } catch InventoryError.insufficientStock(let lines) {
                #expect(lines == [.init(skuId: skus[2], requested: 2, available: 1)])
            }
            #expect(try await level(stores, skus[0]) == (10, 0))
            #expect(try await level(stores, skus[1]) == (10, 0))
            #expect(try await level(stores, skus[2]) == (1, 0))
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: "\(stores.bizId)-c-short", bizId: stores.bizId) }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().isEmpty, "the held parts' rows are undone with them")

            _ = try await engine.adjustStock(
                stores.item(skus[2]), StockAdjustment(adjustmentId: "in-1", delta: 1, reason: "inbound")
            )
            guard case .created = try await engine.reserve(order) else {
                Issue.record("the same orderId reserves once the stock is there")
                return
            }
            #expect(try await level(stores, skus[2]) == (0, 2))
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description).sorted() == [
                "\(stores.bizId)-c-short/\(skus[0])x4=RESERVED", "\(stores.bizId)-c-short/\(skus[1])x5=RESERVED", "\(stores.bizId)-c-short/\(skus[2])x2=RESERVED",
            ].sorted())
        }
    }

    @Test("300 concurrent 3-item orders over three masters, stock 50 each: exactly 50 held, all or nothing, counters exact")
    func noOversellAcrossMasters() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 50)) }
            let results = await withTaskGroup(of: (String, Bool).self, returning: [String: Bool].self) { group in
                for index in 0..<300 {
                    group.addTask {
                        let orderId = "\(stores.bizId)-c-many-\(index)"
                        do {
                            _ = try await engine.reserve(command(stores, orderId, skus.map { ($0, 1) }))
                            return (orderId, true)
                        } catch {
                            return (orderId, false)
                        }
                    }
                }
                var results: [String: Bool] = [:]
                for await (orderId, held) in group { results[orderId] = held }
                return results
            }
            let held = results.filter(\.value).map(\.key)
            // Parts are taken in shard order: every order that got its first part gets the others too.
            #expect(held.count == 50)
            for sku in skus {
                #expect(try await level(stores, sku) == (50 - Int64(held.count), Int64(held.count)))
            }
            for orderId in held.prefix(20) {
                #expect(try await engine.reservation(orderId: orderId, bizId: stores.bizId).lines.map(\.reserved) == [1, 1, 1])
            }
            #expect(try await stores.drainWithWorker())
            let rows = try await stores.journalRows()
            #expect(rows.count == 3 * held.count)
            #expect(Set(rows.map(\.orderId)) == Set(held))
            #expect(rows.allSatisfy { $0.status == "RESERVED" && $0.quantity == 1 })
        }
    }

    @Test("one hot item on a cluster: 200 concurrent holds of 1 on stock 50, exactly 50")
    func hotItem() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(9), StockSettings(stock: 50))
            let held = await withTaskGroup(of: Int.self, returning: Int.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        (try? await engine.reserve(command(stores, "\(stores.bizId)-c-hot-\(index)", [(9, 1)]))) != nil ? 1 : 0
                    }
                }
                return await group.reduce(0, +)
            }
            #expect(held == 50)
            #expect(try await level(stores, 9) == (0, 50))
        }
    }

    @Test("cancel before reserve is recorded in the directory; a later reserve is refused; cancel of a held order frees every part")
    func cancelOrders() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            let empty = try await engine.cancel(orderId: "\(stores.bizId)-c-early", bizId: stores.bizId)
            #expect(empty.replayed == false)
            #expect(try await engine.cancel(orderId: "\(stores.bizId)-c-early", bizId: stores.bizId).replayed == true)
            await #expect(throws: InventoryError.orderClosed(.cancelled)) {
                try await engine.reserve(command(stores, "\(stores.bizId)-c-early", [(skus[0], 1), (skus[1], 1)]))
            }
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }

            _ = try await engine.reserve(command(stores, "\(stores.bizId)-c-held", [(skus[0], 2), (skus[2], 3)]))
            let cancelled = try await engine.cancel(orderId: "\(stores.bizId)-c-held", bizId: stores.bizId)
            #expect(cancelled.replayed == false)
            #expect(cancelled.reservation.status == .cancelled)
            #expect(try await engine.cancel(orderId: "\(stores.bizId)-c-held", bizId: stores.bizId).replayed == true)
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.confirm(orderId: "\(stores.bizId)-c-held", bizId: stores.bizId) }
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["CANCELLED", "CANCELLED"])
        }
    }

    @Test("a confirmed order whose part Redis lost before the journal had it: a cancel is refused by the directory (409), not retried forever")
    func cancelAfterConfirmWithPartLost() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            _ = try await engine.setStock(stores.item(skus[0]), StockSettings(stock: 5))
            let orderId = "\(stores.bizId)-c-lost"
            _ = try await engine.reserve(command(stores, orderId, [(skus[0], 1)]))
            _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
            // A FLUSHALL of the part's master, not yet of the directory's (one master after another), before the
            // worker wrote any row (async): the part and its outbox entries are gone, the journal is empty.
            let part = stores.partShard(orderId, sku: skus[0])
            _ = try await stores.redis.command("DEL", stores.keys.order(stores.orderName(orderId), shard: part))
            #expect(try await stores.journalRows().isEmpty)
            await #expect(throws: InventoryError.invalidState(.confirmed)) { try await engine.cancel(orderId: orderId, bizId: stores.bizId) }
            #expect(try await stores.redis.command("HGET", stores.keys.directory(stores.orderName(orderId)), "state").text == "confirmed")
        }
    }

    @Test("expiry frees every part; a confirm decided in the directory but left half-done is finished by the sweeper's step")
    func expiryAndRollForward() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-c-exp", [(skus[0], 1), (skus[1], 1)], ttl: 1))
            _ = try await engine.reserve(command(stores, "\(stores.bizId)-c-fwd", [(skus[1], 2), (skus[2], 2)], ttl: 1))
            // A confirm that decided in the directory and stopped before its parts (a crash).
            _ = try await stores.redis.command("HSET", stores.keys.directory(stores.orderName("\(stores.bizId)-c-fwd")), "state", "confirmed")
            try await Task.sleep(for: .milliseconds(1100))
            var due: Set<String> = []
            for shard in 0..<stores.keys.shards {
                due.formUnion(try await engine.expiredOrders(shard: shard, nowMilliseconds: InventoryEngine.nowMilliseconds(), limit: 100))
            }
            #expect(due == [stores.orderName("\(stores.bizId)-c-exp"), stores.orderName("\(stores.bizId)-c-fwd")])
            #expect(try await engine.expire(named: stores.orderName("\(stores.bizId)-c-exp")) == true)
            #expect(try await engine.expire(named: stores.orderName("\(stores.bizId)-c-fwd")) == false, "not expired: confirmed instead")
            #expect(try await engine.reservation(orderId: "\(stores.bizId)-c-exp", bizId: stores.bizId).status == .expired)
            #expect(try await engine.reservation(orderId: "\(stores.bizId)-c-fwd", bizId: stores.bizId).status == .confirmed)
            #expect(try await level(stores, skus[0]) == (5, 0))
            #expect(try await level(stores, skus[1]) == (3, 0))
            #expect(try await level(stores, skus[2]) == (3, 0))
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description).sorted() == [
                "\(stores.bizId)-c-exp/\(skus[0])x1=EXPIRED", "\(stores.bizId)-c-exp/\(skus[1])x1=EXPIRED", "\(stores.bizId)-c-fwd/\(skus[1])x2=CONFIRMED",
                "\(stores.bizId)-c-fwd/\(skus[2])x2=CONFIRMED",
            ].sorted())
            for sku in skus { #expect(try await stores.mysqlStock(sku) == (sku == skus[0] ? 5 : 3)) }
        }
    }

    @Test("a cancel of an order that expired answers its replay (expired), as on one Redis, also when its parts have not followed yet")
    func cancelAfterExpiry() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            let late = "\(stores.bizId)-late"
            let decidedOnly = "\(stores.bizId)-decided"
            guard case .created(let held) = try await engine.reserve(command(stores, late, [(skus[0], 2)], ttl: 1)) else {
                Issue.record("the reserve was not made")
                return
            }
            _ = try await engine.reserve(command(stores, decidedOnly, [(skus[1], 1), (skus[2], 1)], ttl: 1))
            let deadline = try #require(held.expiresAtMilliseconds)
            try await waitFor("Redis's clock past the holds' deadline", within: .seconds(10)) {
                try await engine.redisNow() > deadline
            }
            // a confirm after the deadline expires the order and is refused (seed 32 of the model check on the cluster)
            await #expect(throws: InventoryError.orderClosed(.expired)) { try await engine.confirm(orderId: late, bizId: stores.bizId) }
            let cancelled = try await engine.cancel(orderId: late, bizId: stores.bizId)
            #expect(cancelled.reservation.status == .expired)
            #expect(cancelled.replayed)
            // an expiry decided in the directory whose parts have not followed yet (a sweeper stopped between)
            _ = try await stores.redis.command("HSET", stores.keys.directory(stores.orderName(decidedOnly)), "state", "expired")
            let again = try await engine.cancel(orderId: decidedOnly, bizId: stores.bizId)
            #expect(again.reservation.status == .expired)
            #expect(again.replayed)
            #expect(try await engine.reservation(orderId: decidedOnly, bizId: stores.bizId).status == .expired)
            // its part lost before the journal has it: the directory still answers, as above
            _ = try await stores.redis.command("DEL", stores.orderKey(late, sku: skus[0]))
            let lost = try await engine.cancel(orderId: late, bizId: stores.bizId)
            #expect(lost.reservation.status == .expired)
            #expect(lost.replayed)
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description).sorted() == [
                "\(decidedOnly)/\(skus[1])x1=EXPIRED", "\(decidedOnly)/\(skus[2])x1=EXPIRED", "\(late)/\(skus[0])x2=EXPIRED",
            ].sorted())
        }
    }

    @Test("an expiry decided by the directory moves every part, also one whose own deadline is later (held later, or on a node whose clock is behind)")
    func partWithLaterDeadline() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            let swept = "\(stores.bizId)-swept"
            let cancelled = "\(stores.bizId)-cancelled"
            var deadline: Int64 = 0
            for order in [swept, cancelled] {
                guard case .created(let held) = try await engine.reserve(command(stores, order, [(skus[0], 1), (skus[1], 1)], ttl: 1)) else {
                    Issue.record("not held")
                    return
                }
                deadline = max(deadline, held.expiresAtMilliseconds ?? 0)
                // the part on the second master says its hold lasts an hour more
                _ = try await stores.redis.command(
                    "HINCRBY", stores.orderKey(order, sku: skus[1]), "expires_at", "3600000"
                )
            }
            try await waitFor("Redis's clock past the holds' deadline", within: .seconds(10)) {
                try await engine.redisNow() > deadline
            }
            #expect(try await engine.expire(named: stores.orderName(swept)))
            let answer = try await engine.cancel(orderId: cancelled, bizId: stores.bizId)
            #expect(answer.reservation.status == .cancelled)
            for order in [swept, cancelled] {
                for sku in skus.prefix(2) {
                    let status = try await stores.redis.command("HGET", stores.orderKey(order, sku: sku), "status").text
                    #expect(status == (order == swept ? "expired" : "cancelled"), "\(order) part of \(sku)")
                }
            }
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }
        }
    }

    @Test("an undo cancels only its own stream's reserve in a batch: entry ids repeat across streams")
    func undoMatchedWithinItsStream() {
        func event(_ stream: String, _ id: String, _ kind: OutboxEvent.Kind, order: String, undoes: String? = nil) -> OutboxEvent {
            OutboxEvent(
                id: id, stream: stream, kind: kind, orderId: order, bizId: "b", userId: nil,
                lines: [.init(skuId: 1, quantity: 1)], expiresAtMilliseconds: nil, atMilliseconds: 0, reserveEventId: undoes
            )
        }
        let batch = [
            event("inv:{s1}:outbox", "100-0", .reserve, order: "a"),
            event("inv:{s2}:outbox", "100-0", .reserve, order: "b"),
            event("inv:{s1}:outbox", "100-1", .undo, order: "a", undoes: "100-0"),
        ]
        let kept = WriteBackWorker.cancellingUndone(batch)
        // a's reserve is left out, its undo stays (a's row may be in the journal already: a sync commit); b's reserve
        // with the same id stays.
        #expect(kept.map { "\($0.orderId):\($0.kind.rawValue)" } == ["b:reserve", "a:undo"])
    }

    @Test(
        "two workers share the outbox stream by stream: each order's events in order, journal exact",
        arguments: [false, true]
    )
    func twoWorkers(cluster: Bool) async throws {
        try await TestStores.with(cluster: cluster) { stores in
            let engine = stores.engine
            for sku in UInt64(1)...6 { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 1000)) }
            let workers = [stores.worker(consumer: "wa"), stores.worker(consumer: "wb")]
            let running = workers.map { worker in Task { try await worker.run() } }
            // The second worker to start finds the first holding every stream; within a lease refresh or two the
            // first gives half back.
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, workers.contains(where: { $0.streams.count != stores.keys.shards / 2 }) {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(workers.map { $0.streams.count } == [stores.keys.shards / 2, stores.keys.shards / 2])
            #expect(Set(workers[0].streams).isDisjoint(with: workers[1].streams))
            // Reserve, then at once confirm or cancel: the two events of one part follow each other closely in
            // one stream, which two workers splitting it would apply out of order.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        for index in stride(from: lane, to: 200, by: 8) {
                            let orderId = "\(stores.bizId)-w-\(index)"
                            let skus = [UInt64(1 + index % 6), UInt64(1 + (index + 1) % 6)]
                            _ = try await engine.reserve(command(stores, orderId, skus.map { ($0, 1) }))
                            if index % 2 == 0 {
                                _ = try await engine.confirm(orderId: orderId, bizId: stores.bizId)
                            } else {
                                _ = try await engine.cancel(orderId: orderId, bizId: stores.bizId)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await stores.drained())
            for worker in workers { worker.stop() }
            for task in running { try await task.value }
            #expect(workers.allSatisfy { $0.stats.events > 0 }, "both workers applied events: \(workers.map(\.stats.events))")
            let rows = try await stores.journalRows()
            #expect(rows.count == 400)
            let wrong = rows.filter { row in
                let index = Int(row.orderId.split(separator: "-").last ?? "") ?? -1
                return row.status != (index % 2 == 0 ? "CONFIRMED" : "CANCELLED")
            }
            #expect(wrong.isEmpty, "rows out of step with their orders: \(wrong.prefix(5))")
            for sku in UInt64(1)...6 {
                // Each sku is in 200 * 2 / 6 lines, half of them confirmed.
                let confirmed = rows.filter { $0.skuId == sku && $0.status == "CONFIRMED" }.count
                #expect(try await stores.mysqlStock(sku) == 1000 - Int64(confirmed))
            }
        }
    }

    @Test("a reserve of several parts that stops half-way: given up after its deadline, its parts taken back, the order cancelled")
    func abandonedReserve() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let sweeper = ExpirySweeper(engine: engine, logger: stores.logger)
            // The sweeper is given the time, so its deadline check is exact whatever the machine's load.
            let before = InventoryEngine.nowMilliseconds()
            let after = before + engine.configuration.reserveDeadlineMilliseconds + 60_000
            let skus = try await skusOnEveryMaster(stores)
            for sku in skus { _ = try await engine.setStock(stores.item(sku), StockSettings(stock: 5)) }
            let crashed = "\(stores.bizId)-c-crash"
            let order = command(stores, crashed, [(skus[0], 1), (skus[1], 2), (skus[2], 3)])
            await #expect(throws: InventoryError.unavailable("failpoint after_first_part")) {
                try await engine.reserve(order, failpoint: "after_first_part")
            }
            // Its first part holds stock; the order is not visible yet.
            let held = try await [level(stores, skus[0]), level(stores, skus[1]), level(stores, skus[2])]
            #expect(held.map(\.reserved).reduce(0, +) > 0 && held.map(\.reserved).reduce(0, +) < 6)
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: crashed, bizId: stores.bizId) }
            #expect(await sweeper.sweepAbandoned(nowMilliseconds: before) == 0, "not before its deadline")
            let shard = stores.keys.shard(of: stores.orderName(crashed))
            #expect(try await engine.abandonedReserves(shard: shard, nowMilliseconds: after, limit: 10) == [stores.orderName(crashed)])
            #expect(await sweeper.sweepAbandoned(nowMilliseconds: after) == 1)
            #expect(await sweeper.sweepAbandoned(nowMilliseconds: after) == 0, "once")
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }
            // The client's retry is told the order is closed, and holds nothing.
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.reserve(order) }
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }

            // The client cancels a reserve that stopped half-way: its parts come back at once.
            let cancelled = "\(stores.bizId)-c-cancelled"
            await #expect(throws: InventoryError.unavailable("failpoint after_first_part")) {
                try await engine.reserve(command(stores, cancelled, [(skus[0], 1), (skus[2], 1)]), failpoint: "after_first_part")
            }
            // Not visible until every part is held: a confirm finds nothing to confirm.
            await #expect(throws: InventoryError.notFound) { try await engine.confirm(orderId: cancelled, bizId: stores.bizId) }
            #expect(try await engine.cancel(orderId: cancelled, bizId: stores.bizId).reservation.status == .cancelled)
            for sku in skus { #expect(try await level(stores, sku) == (5, 0)) }
            #expect(await sweeper.sweepAbandoned(nowMilliseconds: after) == 0)

            #expect(try await stores.drainWithWorker())
            let rows = try await stores.journalRows()
            #expect(!rows.isEmpty && rows.allSatisfy { $0.status == "CANCELLED" }, "\(rows)")
        }
    }
}
