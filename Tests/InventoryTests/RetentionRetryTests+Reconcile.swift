import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The reconciler while a retry after retention is in flight: its confirm is the retry's (its ledger line carries
/// the retry's reserve event), and the hold it releases is the one its reserve in flight counts.
extension RetentionRetryTests {
    func expectNoDifference(_ stores: TestStores) async throws {
        let report = try await stores.reconciler().run(.business(stores.bizId))
        #expect(report.differences == [])
    }

    @Test("a retry confirmed before the worker: no difference before its events are committed, nor after", arguments: [ReservationStatus.confirmed, .cancelled])
    func reconcileInFlight(earlier: ReservationStatus) async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-q"
            try await endedAndForgotten(stores, order, end: earlier)
            _ = try await stores.engine.reserve(command(stores, order, 3))
            _ = try await stores.engine.confirm(orderId: order, bizId: stores.bizId)
            let events = try await entries(stores, order)
            // Before: the earlier order's confirm source (or none) was taken for this one's, and its release went
            // uncounted while the row of the earlier order exists.
            try await expectNoDifference(stores)
            // Committed, not yet settled (the worker's step between its COMMIT and its acknowledgement).
            try await apply(stores, events)
            try await expectNoDifference(stores)
            try await expectAgree(stores, available: earlier == .confirmed ? 4 : 7)
        }
    }
}
