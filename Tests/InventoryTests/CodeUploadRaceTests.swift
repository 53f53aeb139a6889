import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// A code upload's two halves (MySQL records the codes, then Redis adds them to the item's set) with a rebuild of the
/// item between them: the rebuild read MySQL after the upload's commit (its set has the new codes already, and a
/// reserve may have taken them since) or before it (its set lacks them).
@Suite("Code uploads racing a rebuild")
struct CodeUploadRaceTests {
    func command(_ stores: TestStores, _ orderId: String) -> ReserveCommand {
        ReserveCommand(
            orderId: orderId, bizId: stores.bizId, userId: nil, items: [ReserveCommand.Item(skuId: 1, quantity: 1)],
            ttlSeconds: 600, shortage: .reject
        )
    }

    @Test("one-time pool: codes recorded, then the item rebuilt and every code held, then the Redis half: none comes back")
    func oneTimeUploadAfterRebuild() async throws {
        try await TestStores.with { stores in
            guard !stores.keys.clustered else { return }  // (the uploader's Redis goes through a proxy to one Redis)
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(item, ["A", "B"])
            try await withHeldAttempt(stores, heldRedis: true) { uploader, _, redisProxy in
                let redisProxy = try #require(redisProxy)
                // The upload's Redis half (the first request naming the code set) waits; its MySQL half is done.
                redisProxy.holdRequest(containing: stores.keys.codes(item))
                let upload = Task { try await uploader.loadCodes(item, ["N"]) }
                try await waitFor("the upload's Redis half held", within: .seconds(20)) { redisProxy.isHolding }
                // The item vanishes and is rebuilt from MySQL, N included, and reserves take all three codes.
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                var held: [String] = []
                for index in 0..<3 {
                    if case .created(let reservation) = try await engine.reserve(command(stores, "u-\(index)")) {
                        held += reservation.lines.flatMap(\.codes)
                    }
                }
                #expect(held.sorted() == ["A", "B", "N"])
                redisProxy.release()
                #expect(try await upload.value == CodeLoadOutcome(added: 1, duplicates: 0))
            }
            // Before: the late half added N again (stock 1, N usable while an order holds it: handed out twice).
            #expect(try await engine.unusedCodes(item) == [])
            let level = try await engine.stock(item)
            #expect([level.available, level.reserved] == [0, 3])
            await #expect(throws: InventoryError.self) { try await engine.reserve(command(stores, "u-3")) }
            #expect(try await stores.drainWithWorker())
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }

    @Test("one-time pool: the item rebuilt from a read before the codes were recorded gets them from the Redis half")
    func oneTimeRebuildBeforeUpload() async throws {
        try await TestStores.with { stores in
            let engine = stores.engine
            let item = stores.item(1)
            _ = try await engine.setPool(item, CodePool(kind: .oneTime))
            _ = try await engine.loadCodes(item, ["A", "B"])
            let epoch = try await stores.itemFields(1)["epoch"]
            // A plain upload adds to the item as it is: no rebuild.
            #expect(try await engine.loadCodes(item, ["C"]) == CodeLoadOutcome(added: 1, duplicates: 0))
            #expect(try await stores.itemFields(1)["epoch"] == epoch)
            try await withHeldAttempt(stores) { uploader, mysqlProxy, _ in
                // The upload's transaction waits at its start; the item vanishes and is rebuilt from MySQL without N.
                mysqlProxy.holdRequest(containing: FaultProxy.begin)
                let upload = Task { try await uploader.loadCodes(item, ["N"]) }
                try await waitFor("the upload's MySQL half held", within: .seconds(20)) { mysqlProxy.isHolding }
                _ = try await stores.redis.command("DEL", stores.keys.item(item))
                #expect(try await engine.stock(item).available == 3)
                mysqlProxy.release()
                #expect(try await upload.value == CodeLoadOutcome(added: 1, duplicates: 0))
            }
            #expect(try await engine.unusedCodes(item).sorted() == ["A", "B", "C", "N"])
            #expect(try await engine.stock(item).available == 4)
            #expect(try await stores.reconciler().run(.business(stores.bizId)).differences == [])
        }
    }
}
