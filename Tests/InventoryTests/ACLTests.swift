import Foundation
@testable import Inventory
import InventoryTestSupport
import RedisClient
import Testing

/// The Redis user of `deploy/redis-user.acl`: what the service needs, and no more.
@Suite("Redis ACL user")
struct ACLTests {
    /// The rules of the file's `user` line for this test: its password and key pattern replaced by the test's.
    static func documentedRules(keyPrefix: String, password: String) throws -> [String] {
        let path = ProjectFiles.repositoryDirectory("deploy") + "/redis-user.acl"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n")
        // An aclfile takes nothing but `user` lines (a comment stops Redis from starting).
        #expect(lines.count == 1 && lines.allSatisfy { $0.hasPrefix("user ") }, "\(path) is one user line")
        let line = try #require(lines.first)
        return line.split(separator: " ").dropFirst(2).map { rule in
            if rule.hasPrefix(">") { return ">" + password }
            if rule == "~inv:*" { return "~\(keyPrefix):*" }
            return String(rule)
        }
    }

    @Test("the service's flows run as the documented Redis user, which may not run dangerous commands or touch other keys")
    func documentedUserSuffices() async throws {
        try await TestStores.with { stores in
            let user = "acl-\(stores.keys.prefix)"
            let password = UUID().uuidString
            let rules = try Self.documentedRules(keyPrefix: stores.keys.prefix, password: password)
            #expect(rules.contains("-@dangerous") && rules.contains("~\(stores.keys.prefix):*"))
            for node in try await stores.redis.dataNodes() {
                let made = try await node.send(["ACL", "SETUSER", user, "reset"] + rules)
                try #require(made.errorMessage == nil, "ACL SETUSER: \(made)")
            }
            var configuration = stores.redisConfiguration
            configuration.username = user
            configuration.password = password
            let redis: any RedisRouter = stores.keys.clustered
                ? RedisClusterClient(seeds: TestStores.clusterSeeds(), configuration: configuration, logger: stores.logger)
                : RedisClient(configuration: configuration, logger: stores.logger)
            do {
                try await flows(stores, redis: redis, readerConfiguration: configuration)
            } catch {
                await Self.close(stores, redis: redis, user: user)
                throw error
            }
            await Self.close(stores, redis: redis, user: user)
        }
    }

    private static func close(_ stores: TestStores, redis: any RedisRouter, user: String) async {
        await redis.shutdown()
        for node in (try? await stores.redis.dataNodes()) ?? [] { _ = try? await node.command("ACL", "DELUSER", user) }
    }

    private func flows(_ stores: TestStores, redis: any RedisRouter, readerConfiguration: RedisConfiguration) async throws {
        // Restricted: a dangerous command, and a key of another prefix, refused.
        for node in try await redis.dataNodes() {
            #expect(try await node.send(["KEYS", "*"]).errorMessage?.hasPrefix("NOPERM") == true)
            #expect(try await node.send(["FLUSHDB"]).errorMessage?.hasPrefix("NOPERM") == true)
        }
        let foreign = "other-\(stores.keys.prefix):x"
        #expect(try await redis.send(["GET", foreign], routingKey: foreign).errorMessage?.hasPrefix("NOPERM") == true)

        let engine = InventoryEngine(
            redis: redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: stores.engine.configuration,
            logger: stores.logger
        )
        try await engine.loadScripts()
        let worker = WriteBackWorker(
            engine: engine, redis: redis, readerConfiguration: readerConfiguration,
            journal: JournalRepository(client: stores.mysql), keys: stores.keys,
            configuration: WriteBackConfiguration(consumer: "acl", blockMilliseconds: 20, maxBackoffMilliseconds: 200),
            logger: stores.logger
        )
        let running = Task { try await worker.run() }
        defer { worker.stop() }
        let biz = stores.bizId
        func reserve(_ orderId: String, _ items: [(UInt64, Int64)]) async throws {
            _ = try await engine.reserve(
                ReserveCommand(
                    orderId: orderId, bizId: biz, userId: "u-\(orderId)", items: items.map { .init(skuId: $0.0, quantity: $0.1) },
                    ttlSeconds: 1800, shortage: .reject
                )
            )
        }

        _ = try await engine.setStock(stores.item(1), StockSettings(stock: 20))
        _ = try await engine.setStock(stores.item(2), StockSettings(stock: 5))
        try await reserve("acl-1", [(1, 2)])
        try await reserve("acl-2", [(1, 1), (2, 1)])
        _ = try await engine.confirm(orderId: "acl-1", bizId: biz)
        _ = try await engine.cancel(orderId: "acl-2", bizId: biz)
        #expect(try await stores.drained())
        _ = try await engine.refund(orderId: "acl-1", bizId: biz)
        #expect(try await stores.drained())
        // The status checks: the eviction policy (CONFIG GET), Redis's memory (INFO).
        let policies = try await engine.evictionPolicies()
        #expect(!policies.isEmpty && policies.allSatisfy { $0 == .safe }, "read: \(policies)")
        try await engine.recordRedisMemory()
        _ = try await engine.status(lowStockLimit: 10)

        // Redis loses everything: the service finds it out, rebuilds the item from MySQL, asks the journal about a
        // new order (the outbox index: XINFO), and restores an order from the journal.
        try await stores.loseEverything()
        _ = try await engine.forgetIfWentBack(journal: JournalRepository(client: stores.mysql))
        try await reserve("acl-3", [(1, 1)])
        #expect(try await engine.reservation(orderId: "acl-1", bizId: biz).status == .refunded)
        #expect(try await stores.drained())
        worker.stop()
        try await running.value

        let report = try await Reconciler(
            redis: redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), keys: stores.keys, logger: stores.logger,
            pageSize: 3
        ).run(.business(biz))
        #expect(report.differences == [])
        #expect(try await stores.journalRows().map(\.description) == ["acl-1/1x2=REFUNDED", "acl-2/1x1=CANCELLED", "acl-2/2x1=CANCELLED", "acl-3/1x1=RESERVED"])
        let level = try await engine.stock(stores.item(1))
        #expect([level.available, level.reserved] == [19, 1])
    }
}
