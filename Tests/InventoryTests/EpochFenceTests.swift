import Foundation
import InventoryTestSupport
import MySQLClient
import RedisClient
import Synchronization
import Testing

@testable import Inventory

/// Redis loses its data while the write-back worker holds events it read before: the lines of the lost epoch must
/// not reach the journal after the item was rebuilt without them, or the journal counts a hold Redis does not and
/// the unit is sold twice.
@Suite("Epoch fence between rebuilds and write-back")
struct EpochFenceTests {
    func reserve(_ stores: TestStores, _ orderId: String, _ quantity: Int64) async throws {
        _ = try await stores.engine.reserve(
            ReserveCommand(
                orderId: orderId, bizId: stores.bizId, userId: nil, items: [.init(skuId: 1, quantity: quantity)],
                ttlSeconds: 600, shortage: .reject
            )
        )
    }

    /// The outbox entries of the test, as the worker would have read them.
    func outboxEvents(_ stores: TestStores) async throws -> [OutboxEvent] {
        var events: [OutboxEvent] = []
        for stream in stores.keys.outboxes {
            let reply = try await stores.redis.command("XRANGE", stream, "-", "+")
            events += OutboxEvent.entries(stream: stream, reply).compactMap(\.event)
        }
        return events.sorted { $0.id < $1.id }
    }

    /// Deletes every key of the test: FLUSHALL for this test only.
    func flush(_ stores: TestStores) async throws {
        try await stores.loseEverything()
    }

    func journal(_ stores: TestStores) -> JournalRepository { JournalRepository(client: stores.mysql) }

    /// Whether MySQL session `id` is running the init path's locking read of a stock row.
    func runsLockingRead(_ stores: TestStores, session id: Int64) async throws -> Bool {
        let sessions = try await stores.mysql.query(
            """
            SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
            WHERE ID = ? AND COMMAND = 'Execute' AND INFO LIKE '%FROM stock WHERE biz_id = % FOR UPDATE'
            """,
            [.int(id)]
        )
        return (sessions.rows.first?.int64("n") ?? 0) > 0
    }

    @Test("a reserve read before Redis lost its data and committed after the rebuild is left out, not oversold")
    func staleReserve() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            try await reserve(stores, "early", 4)
            let held = try await outboxEvents(stores).filter { $0.kind == .reserve }
            #expect(held.count == 1)
            #expect(held.first?.lines.first?.epoch.isEmpty == false, "events carry the item's epoch")

            try await flush(stores)
            let rebuilt = try await engine.stock(stores.item(1))
            #expect(rebuilt.available == 10)
            #expect(rebuilt.reserved == 0)

            let result = try await journal(stores).apply(held, fences: engine.batchFences)
            #expect(result.rowsInserted == 0)
            #expect(result.staleLines.map(\.orderId) == ["early"])
            #expect(try await stores.journalRows().isEmpty)

            // The rebuilt item sells its 10 units once; the journal and Redis agree.
            try await reserve(stores, "later", 10)
            let worker = stores.worker()
            let task = Task { try await worker.run() }
            #expect(try await stores.drained())
            worker.stop()
            try await task.value
            let rows = try await stores.journalRows()
            #expect(rows.map(\.orderId) == ["later"])
            #expect(rows.reduce(0) { $0 + $1.quantity } == 10)
            let report = try await ReconcilerTests().reconciler(stores).run(.business(stores.bizId))
            #expect(report.differences == [])
        }
    }

    @Test("a confirm read before the loss is left out, and its applied mark does not move the rebuilt counter")
    func staleConfirm() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            try await reserve(stores, "paid", 3)
            let journal = journal(stores)
            let reserved = try await outboxEvents(stores)
            _ = try await journal.apply(reserved, fences: engine.batchFences)
            for event in reserved { _ = try await stores.redis.command("XDEL", event.stream, event.id) }
            _ = try await engine.confirm(orderId: "paid", bizId: stores.bizId)
            let confirms = try await outboxEvents(stores).filter { $0.kind == .confirm }
            #expect(confirms.count == 1)

            try await flush(stores)
            let rebuilt = try await engine.stock(stores.item(1))
            #expect(rebuilt.available == 7)
            #expect(rebuilt.reserved == 3)

            let result = try await journal.apply(confirms, fences: engine.batchFences)
            #expect(result.staleLines.count == 1)
            #expect(result.stockChanges == 0)
            #expect(try await stores.mysqlStock(1) == 10)
            #expect(try await stores.journalRows().map(\.status) == ["RESERVED"])
            let line = try #require(confirms.first?.lines.first)
            try await engine.markApplied(stores.item(1), orderId: "paid", kind: .confirm, quantity: 3, epoch: line.epoch)
            #expect(try await stores.itemFields(1)["confirmed_unapplied"] == "0")
            let report = try await ReconcilerTests().reconciler(stores).run(.business(stores.bizId))
            #expect(report.differences == [])
        }
    }

    @Test("a batch holding the item's row makes a rebuild wait, and the rebuild then counts its lines")
    func rebuildWaitsForBatch() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            try await reserve(stores, "inflight", 4)
            let held = try await outboxEvents(stores)

            // The rebuild runs on a MySQL connection of its own, so the test can see in the process list when it
            // is waiting for the row.
            var settings = stores.mysql.configuration
            settings.poolSize = 1
            let rebuildClient = MySQLClient(configuration: settings, logger: stores.logger)
            let rebuilder = InventoryEngine(
                redis: stores.redis, mysql: rebuildClient, scripts: try InventoryScripts.load(),
                configuration: EngineConfiguration(durability: .async, keys: stores.keys), logger: stores.logger
            )
            do {
                try await rebuilder.loadScripts()
                let session = try #require(try await rebuildClient.query("SELECT CONNECTION_ID() AS id").rows.first?.int64("id"))

                // The batch has locked the row when it asks for epochs; Redis loses its data at that moment and a
                // reader starts the rebuild, which must wait for the batch's commit: the batch goes on only once
                // the rebuild's locking read is blocked on its row.
                let rebuild = Mutex<Task<StockLevel, any Error>?>(nil)
                let source = InterposedEpochs(inner: engine.batchFences) {
                    try await flush(stores)
                    rebuild.withLock { $0 = Task { try await rebuilder.stock(stores.item(1)) } }
                    try await waitFor("the rebuild's read waiting for the batch's row lock") {
                        try await runsLockingRead(stores, session: session)
                    }
                }
                let result = try await journal(stores).apply(held, fences: source)
                #expect(result.staleLines.isEmpty)
                #expect(result.rowsInserted == 1)
                let level = try await #require(rebuild.withLock { $0 }).value
                #expect(level.available == 6)
                #expect(level.reserved == 4)
                let report = try await ReconcilerTests().reconciler(stores).run(.business(stores.bizId))
                #expect(report.differences == [])
            } catch {
                await rebuildClient.shutdown()
                throw error
            }
            await rebuildClient.shutdown()
        }
    }
}

/// Runs `before` once, on the first call, then answers what `inner` answers.
private final class InterposedEpochs: BatchFences {
    let inner: any BatchFences
    let before: @Sendable () async throws -> Void
    let ran = Mutex(false)

    init(inner: any BatchFences, before: @escaping @Sendable () async throws -> Void) {
        self.inner = inner
        self.before = before
    }

    func currentEpochs(_ items: [StockItemID]) async throws -> [StockItemID: ItemEpoch] {
        let first = ran.withLock { ran in
            defer { ran = true }
            return !ran
        }
        if first { try await before() }
        return try await inner.currentEpochs(items)
    }

    func marks(checkedBeside marks: [String]) -> [String] { inner.marks(checkedBeside: marks) }

    func raiseDrainMarks(_ raise: [String: Int64], checking check: [String: Int64]) async throws -> [String: Int64] {
        try await inner.raiseDrainMarks(raise, checking: check)
    }

    func forgetWentBack(_ marks: [String], journal: JournalRepository) async throws {
        try await inner.forgetWentBack(marks, journal: journal)
    }

    func marksBehind(_ counts: [String: Int64]) async throws -> [String] { try await inner.marksBehind(counts) }

    func itemMark(_ item: StockItemID) async throws -> String? { try await inner.itemMark(item) }
}
