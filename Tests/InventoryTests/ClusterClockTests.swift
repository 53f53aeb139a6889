import Foundation
@testable import Inventory
import InventoryTestSupport
import Testing

/// Redis Cluster nodes whose clocks differ, as two machines' clocks do: a part's deadline is written by its own node's
/// clock, and the order's directory may be on a node that keeps another time. Runs only against a cluster of its own
/// whose nodes' wall clocks are moved (scripts/clock-shift.c), named by `INVENTORY_TEST_CLUSTER_CLOCKS_PORT_BASE`:
///
///     INVENTORY_CLUSTER_PORT_BASE=7790 INVENTORY_CLUSTER_DIR=$PWD/.local/cluster-clocks \
///         INVENTORY_CLUSTER_CLOCK_SHIFTS=0,600000,-600000 scripts/cluster.sh start
///     INVENTORY_TEST_CLUSTER_CLOCKS_PORT_BASE=7790 swift test --filter ClusterClockTests
@Suite("Cluster: nodes whose clocks differ")
struct ClusterClockTests {
    static let portBase = ProcessInfo.processInfo.environment["INVENTORY_TEST_CLUSTER_CLOCKS_PORT_BASE"].flatMap { Int($0) }
    static var seeds: [String] { (0..<3).map { "127.0.0.1:\((portBase ?? 0) + $0)" } }
    /// How far apart (at least) the two clocks are in each case, and the hold that fits inside that gap.
    static let gap: Int64 = 300_000

    /// An order id and a sku such that the order's directory's node clock minus its part's is at least `gap` in the
    /// direction asked (`directoryAhead` or behind), read from the nodes' own TIME.
    func order(_ stores: TestStores, directoryAhead: Bool) async throws -> (orderId: String, sku: UInt64) {
        for sku in UInt64(1)...8 {
            for index in 0..<32 {
                let orderId = "clock-\(index)"
                let directory = try await stores.engine.redisNow(routingKey: stores.keys.directory(stores.orderName(orderId)))
                let part = try await stores.engine.redisNow(routingKey: stores.orderKey(orderId, sku: sku))
                if (directoryAhead ? directory - part : part - directory) >= Self.gap { return (orderId, sku) }
            }
        }
        struct NoSuchOrder: Error {}
        Issue.record("no order with its directory's clock \(directoryAhead ? "ahead of" : "behind") its part's")
        throw NoSuchOrder()
    }

    /// Holds 2 of the sku's 10 units for `ttlSeconds`.
    func reserve(_ stores: TestStores, _ order: (orderId: String, sku: UInt64), ttlSeconds: Int) async throws {
        _ = try await stores.engine.setStock(stores.item(order.sku), StockSettings(stock: 10))
        _ = try await stores.engine.reserve(
            ReserveCommand(
                orderId: order.orderId, bizId: stores.bizId, userId: "u", items: [.init(skuId: order.sku, quantity: 2)],
                ttlSeconds: ttlSeconds, shortage: .reject
            )
        )
    }

    @Test(
        "a paid order whose directory's node clock is minutes ahead of its part's is confirmed, not refused as expired",
        .enabled(if: ClusterClockTests.portBase != nil, "needs a cluster whose clocks differ: see the suite's comment")
    )
    func directoryAheadConfirms() async throws {
        try await TestStores.with(clusterSeeds: Self.seeds) { stores in
            let (orderId, sku) = try await order(stores, directoryAhead: true)
            // A hold of 100 s, by the part's clock; the directory's node reads a time 300 s or more later.
            try await reserve(stores, (orderId, sku), ttlSeconds: 100)
            // Before: the deadline was compared with the directory's clock, and the order expired at once.
            let outcome = try await stores.engine.confirm(orderId: orderId, bizId: stores.bizId)
            #expect(outcome.reservation.status == .confirmed)
            #expect(try await stores.drainWithWorker())
            let level = try await stores.engine.stock(stores.item(sku))
            #expect([level.available, level.reserved] == [8, 0])
            #expect(try await stores.journalRows().map(\.description) == ["\(orderId)/\(sku)x2=CONFIRMED"])
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test(
        "a hold due by its part's node clock, minutes ahead of its directory's, is expired by the sweeper",
        .enabled(if: ClusterClockTests.portBase != nil, "needs a cluster whose clocks differ: see the suite's comment")
    )
    func partAheadExpires() async throws {
        try await TestStores.with(clusterSeeds: Self.seeds) { stores in
            let (orderId, sku) = try await order(stores, directoryAhead: false)
            try await reserve(stores, (orderId, sku), ttlSeconds: 1)
            // The part's entry in its node's expiry index falls due a second later by that node's clock. Before: the
            // deadline was compared with the directory's clock, 300 s or more behind, and the sweeper left the hold.
            let sweeper = ExpirySweeper(engine: stores.engine, logger: stores.logger)
            try await waitFor("the hold expired", within: .seconds(20), every: .milliseconds(100)) {
                _ = await sweeper.sweepOnce()
                return try await stores.engine.reservation(orderId: orderId, bizId: stores.bizId).status == .expired
            }
            #expect(try await stores.drainWithWorker())
            let level = try await stores.engine.stock(stores.item(sku))
            #expect([level.available, level.reserved] == [10, 0])
            #expect(try await stores.journalRows().map(\.description) == ["\(orderId)/\(sku)x2=EXPIRED"])
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
