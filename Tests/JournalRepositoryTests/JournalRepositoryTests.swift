import Foundation
@testable import Inventory
import InventoryTestSupport
import Logging
import MySQLClient
import Testing

/// `JournalRepository.apply` against the real MariaDB (database `inventory_test`). Every test works in a business
/// line of its own, so tests run in parallel without seeing each other's rows.
@Suite("JournalRepository against MariaDB")
struct JournalRepositoryTests {
    // MARK: - Mixed batch

    /// Stream order of a batch touching two items: every kind of event, some lines reserved and settled in the
    /// same batch. Initial stock 100 on both items.
    static func mixedBatch(_ f: Fixture) -> [OutboxEvent] {
        [
            f.reserve("o1", [1: 3, 2: 2]),
            f.reserve("o2", [1: 5]),
            f.reserve("o3", [2: 4]),
            f.reserve("o4", [1: 1, 2: 1]),
            f.reserve("o5", [1: 7], user: nil),
            f.event(.confirm, "o1", [1: 3, 2: 2]),
            f.event(.cancel, "o2", [1: 5]),
            f.event(.expire, "o3", [2: 4]),
            f.event(.confirm, "o4", [1: 1, 2: 1]),
            f.event(.cancel, "o6", [:]),
            f.event(.refund, "o4", [1: 1, 2: 1]),
        ]
    }

    /// What the mixed batch leaves, whether applied at once or in parts.
    func expectMixedBatchState(_ f: Fixture) async throws {
        let statuses = try await f.statuses()
        #expect(statuses == [
            "o1/1": "CONFIRMED", "o1/2": "CONFIRMED", "o2/1": "CANCELLED", "o3/2": "EXPIRED",
            "o4/1": "REFUNDED", "o4/2": "REFUNDED", "o5/1": "RESERVED",
        ])
        // 100 − confirmed (o1 3, o4 1) + refunded (o4 1); 100 − (o1 2, o4 1) + (o4 1).
        #expect(try await f.stock(1) == 97)
        #expect(try await f.stock(2) == 98)
        let ledger = try await f.ledger()
        #expect(ledger.count == 6)
        #expect(Set(ledger.map(\.source)) == [
            "confirm:\(f.order("o1")):\(f.bizId):1", "confirm:\(f.order("o1")):\(f.bizId):2",
            "confirm:\(f.order("o4")):\(f.bizId):1", "confirm:\(f.order("o4")):\(f.bizId):2",
            "refund:\(f.order("o4")):\(f.bizId):1", "refund:\(f.order("o4")):\(f.bizId):2",
        ])
        #expect(ledger.filter { $0.reason == "confirm" }.map(\.delta).reduce(0, +) == -7)
        #expect(ledger.filter { $0.reason == "refund" }.map(\.delta).reduce(0, +) == 2)
        let o5 = try await f.journal.rows(orderId: f.order("o5"), bizId: f.bizId)
        #expect(o5.count == 1)
        #expect(o5.first?.userId == nil)
        #expect(o5.first?.quantity == 7)
        #expect(try await f.journal.rows(orderId: f.order("o6"), bizId: f.bizId).isEmpty)
    }

    @Test("a mixed batch gives one row per line with its final status, and stock moves once per confirm and refund line")
    func mixedBatch() async throws {
        try await withFixture(items: [1: 100, 2: 100]) { f in
            let batch = Self.mixedBatch(f)
            let result = try await f.journal.apply(batch)
            #expect(result == JournalBatchResult(rowsInserted: 7, rowsUpdated: 8, stockChanges: 6))
            try await expectMixedBatchState(f)
            // The batch applied its stock in one update per item: every ledger row of an item has the same after.
            let ledger = try await f.ledger()
            #expect(ledger.allSatisfy { $0.stockAfter == ($0.sku == 1 ? 97 : 98) })

            let before = try await f.snapshot()
            let again = try await f.journal.apply(batch)
            #expect(again == JournalBatchResult())
            let halves = [Array(batch[..<6]), Array(batch[6...])]
            for half in halves {
                #expect(try await f.journal.apply(half) == JournalBatchResult())
            }
            #expect(try await f.journal.apply(batch.reversed()) == JournalBatchResult())
            #expect(try await f.snapshot() == before)
        }
    }

    @Test("the mixed batch split in two and applied in order ends the same, and applying it all again changes nothing")
    func splitBatch() async throws {
        try await withFixture(items: [1: 100, 2: 100]) { f in
            let batch = Self.mixedBatch(f)
            let first = try await f.journal.apply(Array(batch[..<6]))
            #expect(first == JournalBatchResult(rowsInserted: 7, rowsUpdated: 2, stockChanges: 2))
            #expect(try await f.stock(1) == 97)
            #expect(try await f.stock(2) == 98)
            let second = try await f.journal.apply(Array(batch[6...]))
            #expect(second == JournalBatchResult(rowsUpdated: 6, stockChanges: 4))
            try await expectMixedBatchState(f)

            let before = try await f.snapshot()
            #expect(try await f.journal.apply(batch) == JournalBatchResult())
            #expect(try await f.journal.apply(Array(batch[6...])) == JournalBatchResult())
            #expect(try await f.snapshot() == before)
        }
    }

    // MARK: - Phases

    @Test("reserve and confirm of one line in the same batch: a confirmed row and stock deducted once")
    func reserveAndConfirmInOneBatch() async throws {
        try await withFixture(items: [1: 10]) { f in
            let expiresAt: Int64 = 1_763_700_123_456
            let result = try await f.journal.apply([
                f.reserve("a", [1: 4], expiresAt: expiresAt),
                f.event(.confirm, "a", [1: 4]),
            ])
            #expect(result == JournalBatchResult(rowsInserted: 1, rowsUpdated: 1, stockChanges: 1))
            let rows = try await f.journal.rows(orderId: f.order("a"), bizId: f.bizId)
            #expect(rows == [
                JournalRow(
                    orderId: f.order("a"), bizId: f.bizId, skuId: 1, userId: "user-1", quantity: 4, status: "CONFIRMED",
                    expiresAtMilliseconds: expiresAt, reserveEvent: f.ids["reserve:a"] ?? "?"
                ),
            ])
            #expect(try await f.stock(1) == 6)
            #expect(try await f.ledger().map(\.stockAfter) == [6])
            #expect(try await f.journal.isPersisted(orderId: f.order("a"), bizId: f.bizId))
            #expect(try await f.journal.isPersisted(orderId: f.order("a"), bizId: f.bizId + "x") == false)
            #expect(try await f.journal.isPersisted(orderId: f.order("never"), bizId: f.bizId) == false)
        }
    }

    @Test("a late cancel or expire leaves a confirmed row and a refunded row as they are")
    func lateCancel() async throws {
        try await withFixture(items: [1: 10]) { f in
            _ = try await f.journal.apply([f.reserve("a", [1: 2]), f.event(.confirm, "a", [1: 2])])
            _ = try await f.journal.apply([f.reserve("b", [1: 3]), f.event(.confirm, "b", [1: 3])])
            _ = try await f.journal.apply([f.event(.refund, "b", [1: 3])])
            #expect(try await f.stock(1) == 8)
            let late = try await f.journal.apply([
                f.event(.cancel, "a", [1: 2]), f.event(.expire, "a", [1: 2]), f.event(.cancel, "b", [1: 3]),
            ])
            #expect(late == JournalBatchResult())
            #expect(try await f.statuses() == ["a/1": "CONFIRMED", "b/1": "REFUNDED"])
            #expect(try await f.stock(1) == 8)
            #expect(try await f.ledger().count == 3)
        }
    }

    // MARK: - Volume and edge cases

    @Test("IN-list chunks are never of one element (a one-tuple IN makes MariaDB scan the table) and pad to powers of two")
    func chunkShapes() {
        #expect(paddedChunks([7]).map(Array.init) == [[7, 7]])
        #expect(paddedChunks([1, 2, 3]).map(Array.init) == [[1, 2, 3, 3]])
        #expect(paddedChunks(Array(1...513)).map(\.count) == [512, 2])
        #expect(paddedChunks([Int]()).isEmpty)
        #expect(exactChunks(Array(1...513)).map(\.count) == [512, 1])
    }

    @Test("2,000 reserve events apply in one call, and 2,000 confirms move stock once each")
    func largeBatch() async throws {
        try await withFixture(items: [1: 1_000_000, 2: 1_000_000, 3: 1_000_000]) { f in
            var reserves: [OutboxEvent] = []
            for index in 0..<2000 {
                let sku = UInt64(index % 3 + 1)
                let quantity = Int64(index % 5 + 1)
                reserves.append(f.reserve("bulk-\(index)", [sku: quantity], id: "1763700100000-\(index)"))
            }
            let result = try await f.journal.apply(reserves)
            #expect(result == JournalBatchResult(rowsInserted: 2000))
            #expect(try await f.count("SELECT COUNT(*) AS n FROM reservation_journal WHERE biz_id = ?") == 2000)
            #expect(try await f.journal.apply(reserves) == JournalBatchResult())

            let confirms = reserves.map { (event: OutboxEvent) -> OutboxEvent in
                f.event(.confirm, String(event.orderId.dropFirst(f.bizId.count + 1)), event.lines)
            }
            let confirmed = try await f.journal.apply(confirms)
            #expect(confirmed == JournalBatchResult(rowsUpdated: 2000, stockChanges: 2000))
            for sku: UInt64 in 1...3 {
                let taken = reserves.flatMap(\.lines).filter { $0.skuId == sku }.map(\.quantity).reduce(0, +)
                #expect(try await f.stock(sku) == 1_000_000 - taken)
            }
            #expect(try await f.ledger().count == 2000)
            #expect(try await f.journal.apply(confirms + reserves) == JournalBatchResult())
        }
    }

    @Test("a confirm of an item without a stock row commits its journal rows, reports the item, and records the sale")
    func missingStockRow() async throws {
        try await withFixture(items: [1: 10]) { f in
            let result = try await f.journal.apply([
                f.reserve("a", [1: 2, 9: 3]),
                f.event(.confirm, "a", [1: 2, 9: 3]),
            ])
            #expect(result == JournalBatchResult(
                rowsInserted: 2, rowsUpdated: 2, stockChanges: 2,
                missingStockItems: [StockItemID(bizId: f.bizId, skuId: 9)]
            ))
            #expect(try await f.statuses() == ["a/1": "CONFIRMED", "a/9": "CONFIRMED"])
            #expect(try await f.stock(1) == 8)
            // Not acknowledged without a trace: the row is made, and the sale takes its units from it.
            #expect(try await f.stock(9) == -3)
            #expect(try await f.ledger().map(\.sku).sorted() == [1, 9])
            // Applied once: a redelivery changes nothing.
            _ = try await f.journal.apply([f.event(.confirm, "a", [1: 2, 9: 3])])
            #expect(try await f.stock(9) == -3)
        }
    }

    @Test("stock arithmetic stays exact above 2^53, and many items change in one call")
    func exactStock() async throws {
        let big: Int64 = 9_007_199_254_740_993  // 2^53 + 1: a double cannot hold it
        var items: [UInt64: Int64] = [1: big]
        for sku: UInt64 in 100..<400 { items[sku] = 1000 }
        try await withFixture(items: items) { f in
            var batch = [f.reserve("a", [1: 1]), f.event(.confirm, "a", [1: 1])]
            for sku: UInt64 in 100..<400 {
                let lines = [OutboxEvent.Line(skuId: sku, quantity: Int64(sku % 7 + 1))]
                batch.append(f.event(.confirm, "m\(sku)", lines))
            }
            let result = try await f.journal.apply(batch)
            #expect(result == JournalBatchResult(rowsInserted: 1, rowsUpdated: 1, stockChanges: 301))
            #expect(try await f.stock(1) == big - 1)
            #expect(try await f.ledger().first?.stockAfter == big - 1)
            for sku: UInt64 in [100, 257, 399] {
                #expect(try await f.stock(sku) == 1000 - Int64(sku % 7 + 1))
            }
            #expect(try await f.journal.apply(batch) == JournalBatchResult())
        }
    }

    @Test("SKUs above Int64.max round-trip exactly and stay distinct")
    func largeSkus() async throws {
        try await withFixture(items: [:]) { f in
            let top = UInt64.max
            let next = UInt64.max - 1
            let reserve = f.reserve("a", [top: 1, next: 2, 7: 3])
            let result = try await f.journal.apply([
                reserve,
                f.event(.cancel, "a", [next: 2]),
                f.event(.confirm, "a", [top: 1]),
            ])
            #expect(result.rowsInserted == 3)
            #expect(result.rowsUpdated == 2)
            // The sold item had no stock row: one is made and the sale recorded in it.
            #expect(result.stockChanges == 1)
            #expect(result.missingStockItems == [StockItemID(bizId: f.bizId, skuId: top)])
            let rows = try await f.journal.rows(orderId: f.order("a"), bizId: f.bizId)
            #expect(rows.map(\.skuId) == [7, next, top])
            #expect(rows.map(\.quantity) == [3, 2, 1])
            #expect(rows.map(\.status) == ["RESERVED", "CANCELLED", "CONFIRMED"])
            #expect(try await f.journal.apply([reserve]) == JournalBatchResult())
            let duplicate = try await f.journal.apply([f.reserve("a", [top: 4, next: 5])])
            #expect(duplicate.duplicates.map(\.skuId) == [top, next])
            #expect(duplicate.duplicates.map(\.quantity) == [4, 5])
            #expect(duplicate.duplicates.map(\.existingStatus) == ["CONFIRMED", "CANCELLED"])
        }
    }

    @Test("expiry times round-trip through DATETIME(3) as UTC milliseconds; zero-quantity lines write nothing")
    func expiryTimes() async throws {
        try await withFixture(items: [:]) { f in
            let times: [Int64] = [0, 951_782_400_000, 1_709_210_096_789, 1_763_700_000_001, 4_102_444_799_999]
            for (index, time) in times.enumerated() {
                _ = try await f.journal.apply([f.reserve("t\(index)", [1: 1, 2: 0], expiresAt: time)])
                let rows = try await f.journal.rows(orderId: f.order("t\(index)"), bizId: f.bizId)
                #expect(rows.map(\.expiresAtMilliseconds) == [time])
            }
            let text = try await f.client.query(
                "SELECT CAST(expires_at AS CHAR) AS t FROM reservation_journal WHERE order_id = ?", [.string(f.order("t2"))]
            )
            #expect(text.rows.first?.string("t") == "2024-02-29 12:34:56.789")
        }
    }

    // MARK: - Fixture

    struct LedgerRow: Equatable {
        let sku: UInt64
        let delta: Int64
        let stockAfter: Int64
        let reason: String
        let source: String
    }

    /// One test's business line, its clients, and helpers that build events with ids in stream order.
    final class Fixture: @unchecked Sendable {
        let client: MySQLClient
        let journal: JournalRepository
        let stocks: StockRepository
        let bizId: String
        /// Ids of the events built so far, by "kind:order".
        private(set) var ids: [String: String] = [:]
        private var sequence = 0

        init(client: MySQLClient, bizId: String) {
            self.client = client
            self.journal = JournalRepository(client: client)
            self.stocks = StockRepository(client: client)
            self.bizId = bizId
        }

        /// Order ids carry the business line, so tests never share an order.
        func order(_ name: String) -> String { "\(bizId)-\(name)" }

        private func nextId() -> String {
            sequence += 1
            return "1763700000000-\(sequence)"
        }

        func reserve(
            _ name: String, _ lines: KeyValuePairs<UInt64, Int64>, id: String? = nil, user: String? = "user-1",
            expiresAt: Int64 = 1_763_701_800_000
        ) -> OutboxEvent {
            let eventId = id ?? nextId()
            ids["reserve:\(name)"] = eventId
            return OutboxEvent(
                id: eventId, stream: "outbox", kind: .reserve, orderId: order(name), bizId: bizId, userId: user,
                lines: lines.map { OutboxEvent.Line(skuId: $0.key, quantity: $0.value) },
                expiresAtMilliseconds: expiresAt, atMilliseconds: 1_763_700_000_000, reserveEventId: nil
            )
        }

        func event(_ kind: OutboxEvent.Kind, _ name: String, _ lines: KeyValuePairs<UInt64, Int64>) -> OutboxEvent {
            event(kind, name, lines.map { OutboxEvent.Line(skuId: $0.key, quantity: $0.value) })
        }

        func event(_ kind: OutboxEvent.Kind, _ name: String, _ lines: [OutboxEvent.Line]) -> OutboxEvent {
            let eventId = nextId()
            ids["\(kind.rawValue):\(name)"] = eventId
            return OutboxEvent(
                id: eventId, stream: "outbox", kind: kind, orderId: order(name), bizId: bizId, userId: nil,
                lines: lines, expiresAtMilliseconds: nil, atMilliseconds: 1_763_700_000_000, reserveEventId: nil
            )
        }

        func undo(_ name: String, _ lines: KeyValuePairs<UInt64, Int64>, reserveEventId: String) -> OutboxEvent {
            OutboxEvent(
                id: nextId(), stream: "outbox", kind: .undo, orderId: order(name), bizId: bizId, userId: nil,
                lines: lines.map { OutboxEvent.Line(skuId: $0.key, quantity: $0.value) }, expiresAtMilliseconds: nil,
                atMilliseconds: 1_763_700_000_000, reserveEventId: reserveEventId
            )
        }

        /// "order/sku" → status of every journal row of the business line (order names without the prefix).
        func statuses() async throws -> [String: String] {
            let rows = try await client.query(
                "SELECT order_id, sku_id, status FROM reservation_journal WHERE biz_id = ?", [.string(bizId)]
            ).rows
            var statuses: [String: String] = [:]
            for row in rows {
                let name = (row.string("order_id") ?? "").dropFirst(bizId.count + 1)
                statuses["\(name)/\(row.uint64("sku_id") ?? 0)"] = row.string("status")
            }
            return statuses
        }

        func stockRow(_ sku: UInt64) async throws -> StockRow? {
            try await stocks.row(bizId: bizId, skuId: sku)
        }

        func stock(_ sku: UInt64) async throws -> Int64? {
            try await stockRow(sku)?.stock
        }

        /// The ledger rows the journal wrote (the seeding rows excluded), in insertion order.
        func ledger() async throws -> [LedgerRow] {
            try await client.query(
                """
                SELECT sku_id, delta, stock_after, reason, source FROM stock_ledger
                WHERE biz_id = ? AND reason IN ('confirm', 'refund') ORDER BY id
                """,
                [.string(bizId)]
            ).rows.map { row in
                LedgerRow(
                    sku: row.uint64("sku_id") ?? 0, delta: row.int64("delta") ?? 0,
                    stockAfter: row.int64("stock_after") ?? 0, reason: row.string("reason") ?? "",
                    source: row.string("source") ?? ""
                )
            }
        }

        func count(_ sql: String) async throws -> Int64 {
            try await client.query(sql, [.string(bizId)]).rows.first?.int64("n") ?? -1
        }

        /// Everything the journal may change for this business line, timestamps and versions included.
        func snapshot() async throws -> [[MySQLValue]] {
            let biz: [MySQLValue] = [.string(bizId)]
            let journal = try await client.query(
                """
                SELECT id, order_id, sku_id, user_id, quantity, status, expires_at, reserve_event, created_at, updated_at
                FROM reservation_journal WHERE biz_id = ? ORDER BY id
                """,
                biz
            ).rows
            let stock = try await client.query(
                "SELECT sku_id, stock, version, updated_at FROM stock WHERE biz_id = ? ORDER BY sku_id", biz
            ).rows
            let ledger = try await client.query(
                "SELECT id, sku_id, delta, stock_after, reason, source FROM stock_ledger WHERE biz_id = ? ORDER BY id",
                biz
            ).rows
            return (journal + stock + ledger).map(\.values)
        }

        /// Removes what the test wrote.
        func cleanUp() async {
            for table in ["reservation_journal", "reserve_duplicates", "stock_ledger", "stock"] {
                _ = try? await client.query("DELETE FROM \(table) WHERE biz_id = ?", [.string(bizId)])
            }
        }
    }

    /// Runs `body` with a fresh business line whose items are seeded with the given on-hand stock.
    func withFixture(items: [UInt64: Int64], _ body: (Fixture) async throws -> Void) async throws {
        var logger = Logger(label: "journal-test")
        logger.logLevel = .warning
        let client = MySQLClient(
            configuration: TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment), logger: logger
        )
        let fixture = Fixture(client: client, bizId: "j" + String(UInt32.random(in: .min ... .max), radix: 16).leftPadded(8))
        do {
            try await Migrations.once(client: client, logger: logger)
            for (sku, stock) in items.sorted(by: { $0.key < $1.key }) {
                _ = try await fixture.stocks.apply(
                    StockChange(bizId: fixture.bizId, skuId: sku, delta: stock, reason: "set", source: "seed:\(fixture.bizId):\(sku)")
                )
            }
            try await body(fixture)
        } catch {
            await fixture.cleanUp()
            await client.shutdown()
            throw error
        }
        await fixture.cleanUp()
        await client.shutdown()
    }
}

/// Applies the project's migrations once per test process.
actor Migrations {
    static let shared = Migrations()
    private var done = false

    static func once(client: MySQLClient, logger: Logger) async throws {
        try await shared.run(client: client, logger: logger)
    }

    private func run(client: MySQLClient, logger: Logger) async throws {
        if done { return }
        let directory = ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR")
        _ = try await Migrator(client: client, directory: directory, logger: logger).migrate()
        done = true
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
