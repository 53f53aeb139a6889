import Foundation
@testable import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// Redis Cluster: an order whose parts were moving (the directory decided, the parts follow one after another) when
/// its instance stopped, or one of them vanished and came back from the journal.
@Suite("Cluster: orders caught half-way through a transition")
struct ClusterRestoreTests {
    /// Order "half" holding 2 units of each of two items (10 in stock each) in different parts, written back; their skus.
    func twoPartOrder(_ stores: TestStores) async throws -> [UInt64] {
        var skus: [UInt64] = [1]
        for sku in UInt64(2)...64 where skus.count < 2 && stores.partShard("half", sku: sku) != stores.partShard("half", sku: 1) {
            skus.append(sku)
        }
        try #require(skus.count == 2)
        for sku in skus { _ = try await stores.engine.setStock(stores.item(sku), StockSettings(stock: 10)) }
        _ = try await stores.engine.reserve(
            ReserveCommand(
                orderId: "half", bizId: stores.bizId, userId: "u", items: skus.map { .init(skuId: $0, quantity: 2) },
                ttlSeconds: 1800, shortage: .reject
            )
        )
        #expect(try await stores.drainWithWorker())
        return skus
    }

    /// Order "half"'s directory decided `to`; `move` moves the first item's part only (as an instance that stopped).
    func decideAndMoveFirstPart(
        _ stores: TestStores, _ skus: [UInt64], to: ReservationStatus,
        _ move: (InventoryEngine.StoredOrder) async throws -> Void
    ) async throws {
        let name = stores.orderName("half")
        _ = try await stores.engine.stores.run(
            DirTransitionCall(orderId: name, to: to.rawValue, from: ["reserved"], recordingSeconds: nil, layout: stores.keys)
        )
        let stored = try #require(try await stores.engine.reservations.orders.readStoredOrder(name))
        try await move(try #require(stored.pieces.first { $0.shard == stores.partShard("half", sku: skus[0]) }))
    }

    @Test("a part lost half-way through a cancel is restored as its own journal rows say, and the cancel then releases it")
    func partRestoredWithItsOwnStatus() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let name = stores.orderName("half")
            let skus = try await twoPartOrder(stores)
            // A cancel decided in the directory that moved the first item's part only (its instance stopped there).
            try await decideAndMoveFirstPart(stores, skus, to: .cancelled) { first in
                _ = try await engine.stores.run(
                    RollbackCall(
                        orderId: name, shard: first.shard, bizId: first.bizId, lines: first.lines, linesText: first.linesText,
                        reason: .cancelled, retentionSeconds: engine.configuration.retentionSeconds, layout: stores.keys
                    )
                )
            }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description) == ["half/\(skus[0])x2=CANCELLED", "half/\(skus[1])x2=RESERVED"])
            // The second part's order hash vanishes (its item still counts the hold).
            let second = stores.orderKey("half", sku: skus[1])
            _ = try await stores.redis.send(["DEL", second], routingKey: second)

            // The cancel again: the part comes back from the journal as reserved (before: as the first row said,
            // cancelled, so the cancel replayed on it and its item kept the 2 units for good, the journal row
            // RESERVED, and the reconciler saw nothing wrong), and the cancel moves it.
            let outcome = try await engine.cancel(orderId: "half", bizId: stores.bizId)
            #expect(outcome.reservation.status == .cancelled)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description) == ["half/\(skus[0])x2=CANCELLED", "half/\(skus[1])x2=CANCELLED"])
            for sku in skus {
                let level = try await engine.stock(stores.item(sku))
                #expect([level.available, level.reserved] == [10, 0], "item \(sku)")
            }
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("a refund of an order whose confirm moved one part only confirms the part left behind, then refunds both")
    func refundMovesPartLeftBehind() async throws {
        try await TestStores.with(cluster: true) { stores in
            let engine = stores.engine
            let name = stores.orderName("half")
            let skus = try await twoPartOrder(stores)
            // A confirm decided in the directory that moved the first item's part only (its instance stopped there).
            try await decideAndMoveFirstPart(stores, skus, to: .confirmed) { first in
                _ = try await engine.stores.run(
                    ConfirmCall(
                        orderId: name, shard: first.shard, bizId: first.bizId, lines: first.lines, linesText: first.linesText,
                        deadlineChecked: true, layout: stores.keys
                    )
                )
            }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description) == ["half/\(skus[0])x2=CONFIRMED", "half/\(skus[1])x2=RESERVED"])

            // Before: 409 (the second part is reserved) after the directory turned refunded, and the second item kept
            // its 2 units for good.
            let outcome = try await engine.refund(orderId: "half", bizId: stores.bizId)
            #expect(outcome.reservation.status == .refunded)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.journalRows().map(\.description) == ["half/\(skus[0])x2=REFUNDED", "half/\(skus[1])x2=REFUNDED"])
            for sku in skus {
                let level = try await engine.stock(stores.item(sku))
                #expect([level.available, level.reserved] == [10, 0], "item \(sku)")
                #expect(try await stores.mysqlStock(sku) == 10, "item \(sku) in MySQL")
            }
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
