import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// One-time codes of a retry after retention that was sold before the worker took it back (a dispense): the code
/// it handed out is sold in MySQL too, so no rebuild puts it back among the usable codes.
extension RetentionRetryTests {
    /// The item rebuilt from MySQL, then its usable codes, what it has available, and the reconciler's verdict.
    func expectCodesAfterRebuild(_ stores: TestStores, usable: Set<String>) async throws {
        let item = stores.item(1)
        #expect(try await stores.drainWithWorker())
        _ = try await stores.redis.command("DEL", stores.keys.item(item), stores.keys.codes(item))
        #expect(try await stores.engine.stock(item).available == Int64(usable.count))
        let codes = try await stores.redis.command("SMEMBERS", stores.keys.codes(item)).array?.compactMap(\.text) ?? []
        #expect(Set(codes) == usable)
        let report = try await stores.reconciler().run(.business(stores.bizId))
        #expect(report.differences == [])
        #expect(report.codeDifferences == [])
    }

    /// Item 1 gets a one-time pool of `codes`.
    func oneTimePool(_ stores: TestStores, _ codes: [String]) async throws {
        _ = try await stores.engine.setPool(stores.item(1), CodePool(kind: .oneTime))
        _ = try await stores.engine.loadCodes(stores.item(1), codes)
    }

    /// The order dispensed one code, committed and forgotten by Redis, then dispensed again: the two codes handed out.
    func dispensedTwice(_ stores: TestStores, _ order: String) async throws -> (first: [String], second: [String]) {
        let first = dispensedCodes(try await stores.engine.reserve(command(stores, order, 1, dispense: true)))
        #expect(try await stores.drainWithWorker())
        try await forget(stores, order)
        return (first, dispensedCodes(try await stores.engine.reserve(command(stores, order, 1, dispense: true))))
    }

    func dispensedCodes(_ outcome: ReserveOutcome) -> [String] {
        switch outcome {
        case .created(let reservation), .replayed(let reservation): reservation.lines.flatMap(\.codes)
        }
    }

    @Test("a dispensed order's retry after retention: the second code handed out is sold in MySQL too")
    func dispensedRetry() async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-d"
            try await oneTimePool(stores, ["CODE-A", "CODE-B", "CODE-C"])
            let (first, second) = try await dispensedTwice(stores, order)
            #expect(first.count == 1 && second.count == 1 && first != second)
            // Before: the second code came back after the rebuild (MySQL never recorded it), to be sold again.
            try await expectCodesAfterRebuild(stores, usable: Set(["CODE-A", "CODE-B", "CODE-C"]).subtracting(first + second))
        }
    }

    @Test("a cancelled order's retry after retention takes the code the cancel gave back, and is dispensed: sold")
    func cancelledRetryDispensedSameCode() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let order = "\(stores.bizId)-s"
            try await oneTimePool(stores, ["CODE-A"])
            _ = try await engine.reserve(command(stores, order, 1))
            _ = try await engine.cancel(orderId: order, bizId: stores.bizId)
            #expect(try await stores.drainWithWorker())
            try await forget(stores, order)

            #expect(dispensedCodes(try await engine.reserve(command(stores, order, 1, dispense: true))) == ["CODE-A"])
            try await expectCodesAfterRebuild(stores, usable: [])
        }
    }

    @Test("a held order's keys vanish, its reserve is sent again and dispensed (or cancelled) before the worker: the code sold is the retry's, the first goes back", arguments: [true, false])
    func liveDuplicateDispensed(dispense: Bool) async throws {
        try await TestStores.with { stores in
            let order = "\(stores.bizId)-v"
            try await oneTimePool(stores, ["CODE-A", "CODE-B", "CODE-C"])
            guard case .created(let held) = try await stores.engine.reserve(command(stores, order, 1)) else {
                Issue.record("not held")
                return
            }
            #expect(try await stores.drainWithWorker())
            // Every key naming the order vanishes; the item still counts its hold.
            try await forget(stores, order)
            let retried = dispensedCodes(try await stores.engine.reserve(command(stores, order, 1, dispense: dispense)))
            #expect(retried.count == 1)
            #expect(retried != held.lines.flatMap(\.codes))
            if !dispense { _ = try await stores.engine.cancel(orderId: order, bizId: stores.bizId) }
            // Before: the first hold's code stayed out of Redis's set (stock_num above its codes), while MySQL held
            // it sold, and the code the retry sold came back with a rebuild (sold twice).
            let usable = Set(["CODE-A", "CODE-B", "CODE-C"]).subtracting(dispense ? retried : [])
            #expect(try await stores.drainWithWorker())
            let codes = try await stores.redis.command("SMEMBERS", stores.keys.codes(stores.item(1))).array?.compactMap(\.text) ?? []
            #expect(Set(codes) == usable)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).codeDifferences == [])
            try await expectCodesAfterRebuild(stores, usable: usable)
        }
    }
}

