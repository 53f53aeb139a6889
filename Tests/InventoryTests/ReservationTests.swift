import Foundation
import Inventory
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The reservation engine against the real Redis (and MariaDB for stock administration), with exact numbers.
@Suite("Reservations on real Redis")
struct ReservationTests {
    func command(
        _ stores: TestStores, _ orderId: String, _ items: [(UInt64, Int64)], shortage: ShortageMode = .reject,
        ttl: Int = 1800
    ) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: "u1",
            items: items.map { ReserveCommand.Item(skuId: $0.0, quantity: $0.1) }, ttlSeconds: ttl, shortage: shortage
        )
    }

    @Test("set 10, reserve 3, cancel: 7/3 then 10/0")
    func reserveAndCancel() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let outcome = try await engine.reserve(command(stores, "o-1", [(1, 3)]))
            guard case .created(let reservation) = outcome else {
                Issue.record("expected a new reservation, got \(outcome)")
                return
            }
            #expect(reservation.lines == [ReservationLine(skuId: 1, requested: 3, reserved: 3)])
            var level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            #expect(level.soldOut == false)

            let cancelled = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            #expect(cancelled.replayed == false)
            #expect(cancelled.reservation.status == .cancelled)
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
            #expect(try await stores.itemKeys(1, "rsv:*").isEmpty)
            #expect(try await stores.itemKeys(1, "rbk:*").count == 1)

            let again = try await engine.cancel(orderId: "o-1", bizId: stores.bizId)
            #expect(again.replayed == true)
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
        }
    }

    /// Adjustments may take an item's stock past 10^14 (each delta is bounded, their sum is not). reserve.lua used to
    /// write such a number with Lua's '%.14g' ("1.01e+14"), which the shortage answer read as 0 available: the item
    /// was reported short beside the one that was (lib/integer.lua).
    @Test("a shortage answer reports an item of 10^14 units or more exactly, and not as short")
    func shortageOfLargeStock() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 1_000_000_000_000))
            for step in 1...100 {
                _ = try await engine.adjustStock(
                    stores.item(1), StockAdjustment(adjustmentId: "big-\(step)", delta: 1_000_000_000_000, reason: nil)
                )
            }
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 1))
            await #expect(throws: InventoryError.insufficientStock([.init(skuId: 2, requested: 2, available: 1)])) {
                try await engine.reserve(command(stores, "big-1", [(1, 1), (2, 2)]))
            }
        }
    }

    @Test("500 concurrent reservations of 1 on stock 100: exactly 100 held, never below zero")
    func noOversellUnderConcurrency() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(7), StockSettings(stock: 100))
            let results = await withTaskGroup(of: String.self, returning: [String: Int].self) { group in
                for index in 0..<500 {
                    group.addTask {
                        do {
                            _ = try await engine.reserve(command(stores, "c-\(index)", [(7, 1)]))
                            return "ok"
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
            #expect(results == ["ok": 100, "short": 400])
            let level = try await engine.stock(stores.item(7))
            #expect(level.available == 0)
            #expect(level.reserved == 100)
            #expect(level.soldOut == true)
            #expect(try await stores.itemKeys(7, "rsv:*").count == 100)
        }
    }

    @Test("a replay answers what was held and holds nothing more; another body for the same orderId is refused")
    func idempotentReplay() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let first = try await engine.reserve(command(stores, "r-1", [(1, 4)]))
            let second = try await engine.reserve(command(stores, "r-1", [(1, 4)]))
            guard case .created(let created) = first, case .replayed(let replayed) = second else {
                Issue.record("expected created then replayed, got \(first) and \(second)")
                return
            }
            #expect(created.lines == replayed.lines)
            #expect(created.expiresAtMilliseconds == replayed.expiresAtMilliseconds)
            await #expect(throws: InventoryError.idempotencyConflict) {
                try await engine.reserve(command(stores, "r-1", [(1, 5)]))
            }
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 6)
            #expect(level.reserved == 4)
        }
    }

    /// Found by the fault suite (sync, FLUSHALL): a cancel read the order, Redis lost everything, and the rollback
    /// script then recorded a cancel of an unknown order and answered 200 while the journal kept the hold.
    @Test("an order gone between the caller's read and its script: every transition script says stale, records nothing")
    func goneBetweenReadAndScript() async throws {
        try await TestStores.with { stores in
            let runner = RedisScriptRunner(client: stores.redis)
            let scripts = try InventoryScripts.load()
            let own = "gone-\(stores.bizId)"
            let orderId = stores.orderName(own)
            let id = stores.item(1)
            let keys = stores.keys
            let shard = stores.partShard(own, sku: 1)
            let lines = [ReservationLine(skuId: 1, requested: 1, reserved: 1)]
            let rollback = try await runner.run(
                RollbackCall(
                    orderId: orderId, shard: shard, bizId: id.bizId, lines: lines, linesText: "1:1:1", reason: .cancelled,
                    retentionSeconds: 60, layout: keys
                ),
                of: scripts
            )
            #expect(rollback == .stale)
            let confirm = try await runner.run(
                ConfirmCall(
                    orderId: orderId, shard: shard, bizId: id.bizId, lines: lines, linesText: "1:1:1", deadlineChecked: false,
                    layout: keys
                ),
                of: scripts
            )
            #expect(confirm == .stale)
            let refund = try await runner.run(
                RefundCall(orderId: orderId, shard: shard, bizId: id.bizId, lines: lines, linesText: "1:1:1", layout: keys),
                of: scripts
            )
            #expect(refund == .stale)
            #expect(try await stores.redis.command("EXISTS", stores.orderKey(own, sku: 1)) == .integer(0), "no order recorded")
            #expect(try await stores.outboxLength() == 0, "no event written")
            // With no order read at all, a cancel is still recorded (cancel before reserve).
            let empty = try await runner.run(
                RollbackCall(
                    orderId: orderId, shard: keys.shard(of: orderId), bizId: "", lines: [], linesText: "", reason: .cancelled,
                    retentionSeconds: 60, layout: keys
                ),
                of: scripts
            )
            guard case .recordedEmpty = empty else {
                Issue.record("rollback answered \(empty)")
                return
            }
        }
    }

    @Test("cancel before reserve: the cancel is recorded and the late reserve gets order-closed")
    func cancelBeforeReserve() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let cancel = try await engine.cancel(orderId: "late-1", bizId: stores.bizId)
            #expect(cancel.reservation.status == .cancelled)
            #expect(cancel.reservation.lines.isEmpty)
            await #expect(throws: InventoryError.orderClosed(.cancelled)) {
                try await engine.reserve(command(stores, "late-1", [(1, 2)]))
            }
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
        }
    }

    @Test("a multi-item order short on one item holds nothing")
    func multiItemAllOrNothing() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 2))
            _ = try await engine.setStock(stores.item(3), StockSettings(stock: 10))
            do {
                _ = try await engine.reserve(command(stores, "m-1", [(1, 5), (2, 3), (3, 1)]))
                Issue.record("the reserve should have failed")
            } catch InventoryError.insufficientStock(let shortages) {
                #expect(shortages == [.init(skuId: 2, requested: 3, available: 2)])
            }
            for (sku, stock) in [(UInt64(1), Int64(10)), (2, 2), (3, 10)] {
                let level = try await engine.stock(stores.item(sku))
                #expect(level.available == stock)
                #expect(level.reserved == 0)
            }
            #expect(try await stores.keys(matching: "*:rsv:*").isEmpty)
            await #expect(throws: InventoryError.notFound) { try await engine.reservation(orderId: "m-1", bizId: stores.bizId) }
            // The order was not recorded, so the same orderId may be reserved once stock allows.
            guard case .created = try await engine.reserve(command(stores, "m-1", [(1, 5), (2, 2), (3, 1)])) else {
                Issue.record("expected the second attempt to hold stock")
                return
            }
            #expect(try await engine.stock(stores.item(2)).available == 0)
        }
    }

    @Test("unknown items are refused and nothing is held")
    func unknownItem() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            // On a cluster, in another part than item 1 (an order of two parts).
            let unknown = (99...999).first { stores.keys.itemShard(stores.item($0)) != stores.keys.itemShard(stores.item(1)) } ?? 99
            await #expect(throws: InventoryError.unknownItems([unknown])) {
                try await engine.reserve(command(stores, "u-1", [(1, 1), (unknown, 1)]))
            }
            #expect(try await engine.stock(stores.item(1)).available == 10)
            // Nothing was recorded for the order (on a cluster: its directory is gone again): the same orderId may
            // be reserved with other items.
            guard case .created = try await engine.reserve(command(stores, "u-1", [(1, 2)])) else {
                Issue.record("expected the order to be held on its second attempt")
                return
            }
            #expect(try await engine.stock(stores.item(1)).available == 8)
        }
    }

    @Test("a reply lost on the way back: the retry with the same orderId holds the stock once")
    func retryAfterLostReply() async throws {
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        try await TestStores.with(redisPort: proxy.port) { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            proxy.dropReplies = true
            var outcomeUnknown = false
            do {
                _ = try await engine.reserve(command(stores, "lost-1", [(1, 3)]))
            } catch InventoryError.outcomeUnknown {
                outcomeUnknown = true
            }
            proxy.dropReplies = false
            #expect(outcomeUnknown, "the client must not claim success or failure without a reply")
            // Redis ran the script although the client never heard so.
            #expect(try await engine.stock(stores.item(1)).reserved == 3)
            let retry = try await engine.reserve(command(stores, "lost-1", [(1, 3)]))
            guard case .replayed(let reservation) = retry else {
                Issue.record("the retry must be a replay, got \(retry)")
                return
            }
            #expect(reservation.lines == [ReservationLine(skuId: 1, requested: 3, reserved: 3)])
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
        }
        await proxy.close()
    }

    @Test("reserve stopped between deduct and key: no oversell, only a leak the reconciler repairs")
    func reserveFailingHalfWay() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            let thrown = await #expect(throws: InventoryError.self) {
                try await engine.reserve(command(stores, "half-1", [(1, 3)]), failpoint: "after_deduct")
            }
            #expect(thrown?.case == .unavailable)
            var level = try await engine.stock(stores.item(1))
            // Step 1 stayed, step 2 never ran: stock is held by nobody, never handed out twice.
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            #expect(try await stores.keys(matching: "*:rsv:*").isEmpty)
            // The client's retry reserves again; available only ever goes down.
            _ = try await engine.reserve(command(stores, "half-1", [(1, 3)]))
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 4)
            #expect(level.available + 3 <= 10, "available plus what live reservations hold never exceeds on-hand")
        }
    }

    @Test("rollback stopped between its two steps: a retry restores once")
    func rollbackFailingHalfWay() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "rb-1", [(1, 3)]))
            let thrown2 = await #expect(throws: InventoryError.self) {
                try await engine.cancel(orderId: "rb-1", bizId: stores.bizId, failpoint: "after_rollback_key")
            }
            #expect(thrown2?.case == .unavailable)
            var level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 3)
            #expect(try await stores.keys(matching: "*:rbk:*").count == 1)
            _ = try await engine.cancel(orderId: "rb-1", bizId: stores.bizId)
            _ = try await engine.cancel(orderId: "rb-1", bizId: stores.bizId)
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 10)
            #expect(level.reserved == 0)
        }
    }

    @Test("confirm releases the hold without giving stock back; replays and late cancels are handled")
    func confirmFlow() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.reserve(command(stores, "p-1", [(1, 3)]))
            let confirmed = try await engine.confirm(orderId: "p-1", bizId: stores.bizId)
            #expect(confirmed.replayed == false)
            #expect(confirmed.reservation.status == .confirmed)
            var level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 0)
            #expect(try await stores.itemFields(1)["confirmed_unapplied"] == "3")
            #expect(try await engine.confirm(orderId: "p-1", bizId: stores.bizId).replayed == true)
            await #expect(throws: InventoryError.invalidState(.confirmed)) { try await engine.cancel(orderId: "p-1", bizId: stores.bizId) }
            await #expect(throws: InventoryError.notFound) { try await engine.confirm(orderId: "nobody", bizId: stores.bizId) }
            _ = try await engine.reserve(command(stores, "p-2", [(1, 2)]))
            _ = try await engine.cancel(orderId: "p-2", bizId: stores.bizId)
            await #expect(throws: InventoryError.orderClosed(.cancelled)) { try await engine.confirm(orderId: "p-2", bizId: stores.bizId) }
            level = try await engine.stock(stores.item(1))
            #expect(level.available == 7)
            #expect(level.reserved == 0)
        }
    }

    @Test("a shutdown stops the expiry sweep: a cancelled sweep expires nothing, the next one takes the backlog")
    func sweepStopsWhenCancelled() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 100))
            for index in 0..<20 { _ = try await engine.reserve(command(stores, "x-\(index)", [(1, 1)], ttl: 1)) }
            try await Task.sleep(for: .milliseconds(1100))
            let sweeper = ExpirySweeper(engine: engine, logger: stores.logger)
            // The service's graceful shutdown cancels the sweeper's task; a sweep under a cancelled task (here
            // cancelled before it begins, so that nothing depends on timing) must not work off the backlog first.
            let cancelled = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return await sweeper.sweepOnce()
            }
            #expect(await cancelled.value == 0)
            #expect(try await engine.stock(stores.item(1)).reserved == 20)
            #expect(await sweeper.sweepOnce() == 20)
            let after = try await engine.stock(stores.item(1))
            #expect([after.available, after.reserved] == [100, 0])
        }
    }

    @Test("shortage modes: partial holds what is there, backorder goes down to its limit")
    func shortageModes() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 4))
            _ = try await engine.setStock(stores.item(2), StockSettings(stock: 2, backorderLimit: 5))
            guard case .created(let partial) = try await engine.reserve(command(stores, "s-1", [(1, 6)], shortage: .partial))
            else {
                Issue.record("partial should hold what is there")
                return
            }
            #expect(partial.lines == [ReservationLine(skuId: 1, requested: 6, reserved: 4)])
            #expect(try await engine.stock(stores.item(1)).available == 0)
            let thrown3 = await #expect(throws: InventoryError.self) {
                try await engine.reserve(command(stores, "s-2", [(1, 1)], shortage: .partial))
            }
            #expect(thrown3?.case == .insufficientStock)
            _ = try await engine.reserve(command(stores, "s-3", [(2, 7)], shortage: .backorder))
            let back = try await engine.stock(stores.item(2))
            #expect(back.available == -5)
            #expect(back.reserved == 7)
            #expect(back.soldOut == true)
            let thrown4 = await #expect(throws: InventoryError.self) {
                try await engine.reserve(command(stores, "s-4", [(2, 1)], shortage: .backorder))
            }
            #expect(thrown4?.case == .insufficientStock)
            _ = try await engine.cancel(orderId: "s-3", bizId: stores.bizId)
            #expect(try await engine.stock(stores.item(2)).available == 2)
        }
    }

    @Test("every key one script touches for an item shares the item's hash tag")
    func keysShareHashTag() {
        let keys = KeyLayout(prefix: "inv", shards: 16)
        let id = StockItemID(bizId: "shop", skuId: 42)
        let tags = [keys.item(id), keys.reserveKey(id, orderId: "o:1"), keys.rollbackKey(id, orderId: "o:1")].map {
            $0.split(separator: "{")[1].split(separator: "}")[0]
        }
        #expect(Set(tags) == ["shop:42"])
        #expect(keys.order("o:1").contains("{s\(keys.shard(of: "o:1"))}"))
        #expect(keys.outbox(forOrder: "o:1").contains("{s\(keys.shard(of: "o:1"))}"))
    }

    @Test("on a cluster, no business name and order id make an item's key equal an order's or a directory's")
    func clusterNamespacesApart() {
        let keys = KeyLayout(prefix: "inv", shards: 1, clustered: true)
        // One shard: every key carries the same tag, so only the names keep them apart.
        for biz in ["order", "dir", "undone", "gen"] {
            let id = StockItemID(bizId: biz, skuId: 5)
            let itemKeys = [
                keys.item(id), keys.reserveKey(id, orderId: "x"), keys.userUsage(id), keys.codes(id),
                keys.adjustmentKey(id, adjustmentId: "a"),
            ]
            for orderId in ["5:item", "5:users", "5:codes", "5:rsv:x", "5:adj:a"] {
                let orderKeys = [keys.order(orderId, shard: 0), keys.directory(orderId)]
                #expect(Set(itemKeys).isDisjoint(with: orderKeys), "biz \(biz), order \(orderId)")
            }
        }
    }
}
