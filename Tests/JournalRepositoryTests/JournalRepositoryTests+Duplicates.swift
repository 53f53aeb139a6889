import Foundation
@testable import Inventory
import InventoryTestSupport
import Logging
import MySQLClient
import Testing

/// Duplicate reserve events and undos (see `JournalRepositoryTests`).
extension JournalRepositoryTests {
    // MARK: - Duplicates and undo

    @Test("a second reserve event of a line is reported as a duplicate and leaves the row alone; a redelivery is not")
    func duplicateReserve() async throws {
        try await withFixture(items: [1: 10]) { f in
            let original = f.reserve("a", [1: 2])
            _ = try await f.journal.apply([original])
            _ = try await f.journal.apply([f.event(.confirm, "a", [1: 2])])
            let duplicate = f.reserve("a", [1: 5, 2: 1], id: "1763700009999-0")
            let result = try await f.journal.apply([original, duplicate])
            #expect(result.rowsInserted == 1)  // the line (a, 2) was new
            #expect(result.duplicates == [
                JournalBatchResult.DuplicateLine(
                    orderId: f.order("a"), bizId: f.bizId, skuId: 1, quantity: 5, existingStatus: "CONFIRMED",
                    eventId: "1763700009999-0", existingReserveEvent: original.id, earlierHold: ""
                ),
            ])
            let rows = try await f.journal.rows(orderId: f.order("a"), bizId: f.bizId)
            #expect(rows.map(\.quantity) == [2, 1])
            #expect(rows.map(\.reserveEvent) == [original.id, "1763700009999-0"])
            #expect(rows.map(\.status) == ["CONFIRMED", "RESERVED"])

            // Two reserve events of one line in one batch: the first creates the row, the second is the duplicate.
            let first = f.reserve("b", [1: 1], id: "1763700010000-0")
            let second = f.reserve("b", [1: 3], id: "1763700010000-1")
            let both = try await f.journal.apply([first, second])
            #expect(both.rowsInserted == 1)
            #expect(both.duplicates.map(\.eventId) == ["1763700010000-1"])
            #expect(both.duplicates.map(\.existingStatus) == ["RESERVED"])
            #expect(both.duplicates.map(\.earlierHold) == ["1763700010000-0"])
            #expect(try await f.journal.rows(orderId: f.order("b"), bizId: f.bizId).map(\.quantity) == [1])
        }
    }

    @Test("a duplicate's earlier hold is the existing row's while that order was live at the duplicate's place in the stream, decided once")
    func duplicateEarlierHold() async throws {
        try await withFixture(items: [1: 10]) { f in
            // Live when the retry was made; the batch confirms the retry's order: a redelivery decides the same.
            let original = f.reserve("a", [1: 2])
            _ = try await f.journal.apply([original])
            let retry = f.reserve("a", [1: 2], id: "1763700009999-0")
            let batch = [retry, f.event(.confirm, "a", [1: 2])]
            #expect(try await f.journal.apply(batch).duplicates.map(\.earlierHold) == [original.id])
            #expect(try await f.statuses() == ["a/1": "CONFIRMED"])
            let again = try await f.journal.apply(batch)
            #expect(again.duplicates.map(\.existingStatus) == ["CONFIRMED"])
            #expect(again.duplicates.map(\.earlierHold) == [original.id])

            // Ended before the retry (its confirm comes first in the same batch), though RESERVED when the batch read it.
            let ended = f.reserve("b", [1: 1], id: "1763700010000-0")
            _ = try await f.journal.apply([ended])
            let late = f.reserve("b", [1: 1], id: "1763700010000-5")
            let both = try await f.journal.apply([f.event(.confirm, "b", [1: 1]), late])
            #expect(both.duplicates.map(\.existingStatus) == ["RESERVED"])
            #expect(both.duplicates.map(\.earlierHold) == [""])
            #expect(try await f.journal.apply([late]).duplicates.map(\.earlierHold) == [""])

            // Sync mode's group commit (requests as they come, ahead of the stream) decides for itself but keeps
            // nothing: the worker, in stream order, decides for good (the earlier order's expiry came first).
            let third = f.reserve("c", [1: 1], id: "1763700020000-0")
            _ = try await f.journal.apply([third])
            let retried = f.reserve("c", [1: 1], id: "1763700020000-9")
            #expect(try await f.journal.apply([retried], inStreamOrder: false).duplicates.map(\.earlierHold) == [third.id])
            let worker = try await f.journal.apply([f.event(.expire, "c", [1: 1]), retried])
            #expect(worker.duplicates.map(\.earlierHold) == [""])
        }
    }

    @Test("undo deletes only the reserved row that carries the undone reserve event")
    func undo() async throws {
        try await withFixture(items: [1: 10]) { f in
            let reserve = f.reserve("a", [1: 2, 2: 3])
            _ = try await f.journal.apply([reserve, f.reserve("c", [1: 1])])
            _ = try await f.journal.apply([f.event(.confirm, "c", [1: 1])])

            // Another reserve event's id, and a confirmed row: nothing is deleted.
            let wrong = try await f.journal.apply([
                f.undo("a", [1: 2, 2: 3], reserveEventId: "1763700000000-99"),
                f.undo("c", [1: 1], reserveEventId: f.ids["reserve:c"] ?? "?"),
            ])
            #expect(wrong == JournalBatchResult())
            #expect(try await f.journal.rows(orderId: f.order("a"), bizId: f.bizId).count == 2)
            #expect(try await f.journal.rows(orderId: f.order("c"), bizId: f.bizId).map(\.status) == ["CONFIRMED"])

            let undone = try await f.journal.apply([f.undo("a", [1: 2, 2: 3], reserveEventId: reserve.id)])
            #expect(undone == JournalBatchResult(rowsDeleted: 2))
            #expect(try await f.journal.rows(orderId: f.order("a"), bizId: f.bizId).isEmpty)
            #expect(try await f.journal.isPersisted(orderId: f.order("a"), bizId: f.bizId) == false)

            // Reserve and its undo in one batch, delivered twice: no row either time.
            let reserveB = f.reserve("b", [1: 4])
            let undoB = f.undo("b", [1: 4], reserveEventId: reserveB.id)
            #expect(try await f.journal.apply([reserveB, undoB]) == JournalBatchResult())
            #expect(try await f.journal.apply([reserveB, undoB]) == JournalBatchResult())
            #expect(try await f.journal.rows(orderId: f.order("b"), bizId: f.bizId).isEmpty)

            // The retry of an undone reserve, in the batch after the undo: the old row gives way to the new one,
            // which is not a duplicate.
            let first = f.reserve("d", [1: 1], id: "1763700020000-0")
            _ = try await f.journal.apply([first])
            let retry = f.reserve("d", [1: 2], id: "1763700020001-0")
            let replaced = try await f.journal.apply([f.undo("d", [1: 1], reserveEventId: first.id), retry])
            #expect(replaced == JournalBatchResult(rowsInserted: 1, rowsDeleted: 1))
            let rows = try await f.journal.rows(orderId: f.order("d"), bizId: f.bizId)
            #expect(rows.map(\.reserveEvent) == [retry.id])
            #expect(rows.map(\.quantity) == [2])
        }
    }
}
