import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// An item's code set vanishes alone (its TTL ran out, Redis evicted it, an operator deleted it) while the item
/// hash stays: the set is part of the item, so the item is not whole and is rebuilt from MySQL with it, never
/// answered from an empty set or refilled with a few codes (issue 17).
@Suite("Code sets that vanish")
struct VanishingCodeSetTests {
    func command(_ stores: TestStores, _ orderId: String, _ quantity: Int64) -> ReserveCommand {
        ReserveCommand(
            orderId: "\(stores.bizId)-\(orderId)", bizId: stores.bizId, userId: nil,
            items: [ReserveCommand.Item(skuId: 1, quantity: quantity)], ttlSeconds: 600, shortage: .reject
        )
    }

    func deleteCodes(_ stores: TestStores) async throws {
        _ = try await stores.redis.command("DEL", stores.keys.codes(stores.item(1)))
    }

    func codeSet(_ stores: TestStores) async throws -> (members: Int64, ttl: Int64) {
        let key = stores.keys.codes(stores.item(1))
        return (
            try await stores.redis.command("SCARD", key).int ?? -1,
            try await stores.redis.command("TTL", key).int ?? -3
        )
    }

    @Test("one-time pool: a reserve after the code set is gone sells the pool's codes, not 'out of stock'")
    func oneTimeReserve() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), ["A1", "A2", "A3"])
            try await deleteCodes(stores)

            guard case .created(let reservation) = try await engine.reserve(command(stores, "o-1", 2)) else {
                Issue.record("not held afresh")
                return
            }
            #expect(reservation.lines.first?.codes.count == 2)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 1)
            #expect(level.reserved == 2)
            #expect(try await codeSet(stores).members == 1)
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("the export after the code set is gone lists the pool's unused codes, not none (model check seed 1)")
    func exportAfterSetGone() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), ["E1", "E2", "E3"])
            guard case .created(let held) = try await engine.reserve(command(stores, "o-1", 1)) else {
                Issue.record("not held")
                return
            }
            let expected = Set(["E1", "E2", "E3"]).subtracting(held.lines.flatMap(\.codes)).sorted()
            try await deleteCodes(stores)
            #expect(try await engine.unusedCodes(stores.item(1)) == expected)
            #expect(try await codeSet(stores).members == 2)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 2)
            #expect(level.reserved == 1)
        }
    }

    @Test("the reconciler reports an item whose code set is gone (an empty set and a vanished one look the same), and the next use mends it")
    func reconcileAfterSetGone() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), ["G1", "G2", "G3"])
            #expect(try await stores.drainWithWorker())
            try await deleteCodes(stores)
            let report = try await stores.reconciler().run(.business(stores.bizId))
            #expect(report.codeDifferences.map(\.detail) == ["Redis: stock_num 3 but 0 usable codes"])
            // the next use rebuilds it whole
            #expect(try await engine.unusedCodes(stores.item(1)) == ["G1", "G2", "G3"])
            #expect(try await stores.reconciler().run(.business(stores.bizId)).clean)
        }
    }

    @Test("reusable pool: a reserve after the code set is gone names the pool's codes, not 'empty'")
    func reusableReserve() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setStock(stores.item(1), StockSettings(stock: 10))
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .reusable))
            _ = try await engine.loadCodes(stores.item(1), ["R1", "R2"])
            try await deleteCodes(stores)

            guard case .created(let reservation) = try await engine.reserve(command(stores, "o-1", 3)) else {
                Issue.record("not held afresh")
                return
            }
            let named = Set(reservation.lines.first?.codes ?? [])
            #expect(named.isSubset(of: ["R1", "R2"]))
            #expect(named == ["R1", "R2"], "every code of the pool, each once (distinct, not one per unit)")
            #expect(try await codeSet(stores).members == 2)
        }
    }

    @Test("one-time pool: a cancel after the code set is gone puts its codes back into the whole set, with its TTL")
    func oneTimeCancel() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), ["A1", "A2", "A3"])
            let order = command(stores, "o-1", 1)
            _ = try await engine.reserve(order)
            try await deleteCodes(stores)

            _ = try await engine.cancel(orderId: order.orderId, bizId: stores.bizId)
            let set = try await codeSet(stores)
            #expect(set.members == 3)
            #expect(set.ttl > 0)
            let level = try await engine.stock(stores.item(1))
            #expect(level.available == 3)
            #expect(level.reserved == 0)
            guard case .created(let all) = try await engine.reserve(command(stores, "o-2", 3)) else {
                Issue.record("not held afresh")
                return
            }
            let codes = Set(all.lines.first?.codes ?? [])
            #expect(codes == ["A1", "A2", "A3"])
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("sync mode records the codes a hold took: a rebuild never hands a sold code out again (fault run key-del-codes)")
    func syncCommitRecordsCodes() async throws {
        try await TestStores.with(durability: .sync) { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), (1...8).map { "S\($0)" })
            var sold: Set<String> = []
            for n in 0..<3 {
                guard case .created(let held) = try await engine.reserve(command(stores, "s-\(n)", 1)) else {
                    Issue.record("not held")
                    return
                }
                sold.formUnion(held.lines.flatMap(\.codes))
                _ = try await engine.confirm(orderId: held.orderId, bizId: stores.bizId)
            }
            #expect(sold.count == 3)
            #expect(try await stores.drainWithWorker())
            _ = try await stores.redis.command("DEL", stores.keys.item(stores.item(1)))
            try await deleteCodes(stores)

            #expect(try await engine.stock(stores.item(1)).available == 5)
            let usable = Set(try await engine.unusedCodes(stores.item(1)))
            #expect(usable.count == 5)
            #expect(usable.isDisjoint(with: sold))
            let report = try await stores.reconciler().run(.business(stores.bizId))
            #expect(report.clean, "\(report.differences) \(report.codeDifferences)")
        }
    }

    @Test("codes uploaded after the code set is gone join the whole pool, not a set of their own")
    func uploadAfterSetGone() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            _ = try await engine.setPool(stores.item(1), CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(stores.item(1), ["A1", "A2", "A3"])
            try await deleteCodes(stores)

            _ = try await engine.loadCodes(stores.item(1), ["A4"])
            #expect(try await codeSet(stores).members == 4)
            #expect(try await engine.stock(stores.item(1)).available == 4)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
