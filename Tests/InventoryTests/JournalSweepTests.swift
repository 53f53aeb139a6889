import Foundation
import InventoryTestSupport
import MySQLClient
import Testing

@testable import Inventory

/// The expiry sweeper's net under holds whose Redis state was lost: the journal's RESERVED lines past their deadline
/// (`ExpirySweeper.sweepJournal`).
@Suite("Journal sweep")
struct JournalSweepTests {
    func reserve(_ stores: TestStores, _ orderId: String, ttl: Int) async throws {
        _ = try await stores.engine.reserve(
            ReserveCommand(
                orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: 1)], ttlSeconds: ttl,
                shortage: .reject
            )
        )
    }

    /// The order's keys and its expiry index entry are gone from Redis (lost); its journal line stays RESERVED.
    func lose(_ stores: TestStores, _ orderId: String) async throws {
        _ = try await stores.redis.command("DEL", stores.orderKey(orderId, sku: 1))
        _ = try await stores.redis.command("DEL", stores.keys.reserveKey(stores.item(1), orderId: orderId))
        _ = try await stores.redis.command("ZREM", stores.expiryKey(orderId, sku: 1), stores.orderName(orderId))
        if stores.keys.clustered { _ = try await stores.redis.command("DEL", stores.keys.directory(stores.orderName(orderId))) }
    }

    func status(_ stores: TestStores, _ orderId: String) async throws -> ReservationStatus {
        try await stores.engine.reservation(orderId: orderId, bizId: stores.bizId).status
    }

    @Test("an instance whose clock is an hour behind still finds a lost hold due, by Redis's clock")
    func instanceClockBehind() async throws {
        try await TestStores.with { stores in
            var configuration = stores.engine.configuration
            configuration.clock = { InventoryEngine.nowMilliseconds() - 3_600_000 }
            let behind = InventoryEngine(
                redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: configuration,
                logger: stores.logger
            )
            try await behind.loadScripts()
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            try await reserve(stores, "o-1", ttl: 1)
            #expect(try await stores.drainWithWorker())
            try await lose(stores, "o-1")
            // Before: the deadline was compared with this instance's clock, an hour behind, and the hold stayed.
            let sweeper = ExpirySweeper(engine: behind, logger: stores.logger)
            try await waitFor("the lost hold expired through the journal", within: .seconds(15), every: .milliseconds(100)) {
                await sweeper.sweepJournal(graceMilliseconds: 0, bizId: stores.bizId) == 1
            }
            #expect(try await status(stores, "o-1") == .expired)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.status) == ["EXPIRED"])
            #expect(try await stores.engine.stock(stores.item(1)).available == 10)
        }
    }

    @Test("one journal sweep reads at most four pages, the first from the start; the next goes on where it stopped")
    func sweepBudgetAndResume() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            // o-0: lost from Redis, its deadline ten minutes away; o-1 to o-5: stuck (Redis's deadline later than the
            // journal's); o-6: lost, due in a second.
            for orderId in (0...5).map({ "o-\($0)" }) { try await reserve(stores, orderId, ttl: 600) }
            try await reserve(stores, "o-6", ttl: 1)
            #expect(try await stores.drainWithWorker())
            _ = try await stores.mysql.query(
                """
                UPDATE reservation_journal SET expires_at = expires_at - INTERVAL 1 HOUR
                WHERE biz_id = ? AND order_id NOT IN ('o-0', 'o-6')
                """,
                [.string(stores.bizId)]
            )
            let due = try #require(try await stores.engine.reservation(orderId: "o-6", bizId: stores.bizId).expiresAtMilliseconds)
            for orderId in ["o-0", "o-6"] { try await lose(stores, orderId) }
            try await waitFor("the lost hold due by Redis's clock", within: .seconds(15), every: .milliseconds(50)) {
                try await stores.engine.redisNow() > due
            }
            // Pages of one line: the first call reads o-1 to o-4.
            let sweeper = ExpirySweeper(engine: stores.engine, batch: 1, logger: stores.logger)
            #expect(await sweeper.sweepJournal(graceMilliseconds: 0, bizId: stores.bizId) == 0)
            // o-0 falls due (its line, first of all, is behind where the sweep stopped).
            _ = try await stores.mysql.query(
                "UPDATE reservation_journal SET expires_at = expires_at - INTERVAL 1 HOUR WHERE biz_id = ? AND order_id = 'o-0'",
                [.string(stores.bizId)]
            )
            // The second call: its first page from the start (o-0), then on from o-4 (o-5, o-6). Before the first page
            // came from the start, o-0 waited for the sweep to come round again.
            #expect(await sweeper.sweepJournal(graceMilliseconds: 0, bizId: stores.bizId) == 2)
            #expect(try await status(stores, "o-0") == .expired)
            #expect(try await status(stores, "o-6") == .expired)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 5)
        }
    }

    @Test("lines the sweep cannot expire yet do not hide the lost holds after them")
    func stuckLinesDoNotHideOthers() async throws {
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: 10))
            // Two holds Redis still has, with ten minutes left; the journal's deadline for them is an hour ago (the
            // sweep finds them, and their expiry, by Redis's deadline, is refused).
            for orderId in ["o-1", "o-2"] { try await reserve(stores, orderId, ttl: 600) }
            try await reserve(stores, "o-3", ttl: 1)
            #expect(try await stores.drainWithWorker())
            _ = try await stores.mysql.query(
                """
                UPDATE reservation_journal SET expires_at = expires_at - INTERVAL 1 HOUR
                WHERE biz_id = ? AND order_id IN ('o-1', 'o-2')
                """,
                [.string(stores.bizId)]
            )
            // The third hold is lost from Redis, and falls due a second later.
            try await lose(stores, "o-3")
            // Pages of two lines: before, the sweep read the same first page (o-1, o-2) every time, and o-3 was never
            // reached.
            let sweeper = ExpirySweeper(engine: stores.engine, batch: 2, logger: stores.logger)
            try await waitFor("the lost hold expired through the journal", within: .seconds(15), every: .milliseconds(100)) {
                await sweeper.sweepJournal(graceMilliseconds: 0, bizId: stores.bizId) == 1
            }
            #expect(try await status(stores, "o-3") == .expired)
            #expect(try await status(stores, "o-1") == .reserved)
            #expect(try await status(stores, "o-2") == .reserved)
            #expect(try await stores.engine.stock(stores.item(1)).reserved == 2)
        }
    }
}
