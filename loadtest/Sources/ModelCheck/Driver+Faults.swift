import FaultSuite
import Foundation
import Inventory
import MySQLClient
import InventoryTestSupport
import RedisClient

/// The faults a program injects between its calls (the process kills are in ProcessKills.swift).
extension Driver {
    func inject(_ fault: Fault) async throws {
        let keys = stores.keys
        switch fault {
        case .drain, .drainThenLoseEverything, .reconcileFix, .goBack:
            // They need MariaDB: an outage ends first.
            mysqlProxy?.down = false
        default:
            break
        }
        switch fault {
        case .drainThenLoseEverything, .reconcileFix, .copyRedis, .goBack, .redisRestart:
            // They write what is not a settling (the reconciler's repair, a copy put back) or restart Redis, which
            // forgets a maxmemory set by CONFIG SET: Redis gets room first. (A drain, an expiry, a killed worker run
            // while it is full: the write-back and the settling of holds must.)
            try await roomInRedis()
        default:
            break
        }
        switch fault {
        case .mysqlDown:
            mysqlProxy?.down = true
        case .mysqlUp:
            mysqlProxy?.down = false
        case .redisFull:
            try await setMaxmemory("1")
            redisFull.set(true)
        case .redisRoom:
            try await roomInRedis()
        case .deadlinesPass, .expireDue:
            break  // steps of their own (perform)
        case .redisRestart:
            try await restartRedis()
        case .workerKilled(let after):
            try await killWorker(afterMilliseconds: after)
        case .deleteItem(let sku):
            _ = try await stores.redis.command("DEL", keys.item(stores.item(sku)))
        case .deleteReserveKey(let order, let sku):
            _ = try await stores.redis.command("DEL", keys.reserveKey(stores.item(sku), orderId: orderId(order)))
        case .deleteOrder(let order, let sku):
            _ = try await stores.redis.command("DEL", stores.orderKey(orderId(order), sku: sku))
        case .deleteCodeSet(let sku):
            _ = try await stores.redis.command("DEL", keys.codes(stores.item(sku)))
        case .deleteUsage(let sku):
            _ = try await stores.redis.command("DEL", keys.userUsage(stores.item(sku)))
        case .deleteGenerationMarkers:
            for shard in 0..<keys.shards { _ = try await stores.redis.command("DEL", keys.generation(shard: shard)) }
        case .deleteExpiryIndex(let shard):
            _ = try await stores.redis.command("DEL", keys.expiryIndex(shard: shard % keys.shards))
        case .deleteDirectory(let order):
            _ = try await stores.redis.command("DEL", keys.directory(stores.orderName(orderId(order))))
        case .deleteAdjustmentKey(let sku, let id):
            _ = try await stores.redis.command("DEL", keys.adjustmentKey(stores.item(sku), adjustmentId: "a\(id)"))
        case .drain:
            guard try await afterOutage({ try await stores.drainWithWorker() }) else { throw CheckFailed(message: "the outbox did not drain") }
        case .drainThenLoseEverything:
            guard try await afterOutage({ try await stores.drainWithWorker() }) else { throw CheckFailed(message: "the outbox did not drain") }
            try await afterOutage { try await stores.loseEverything() }
        case .reconcileFix:
            _ = try await afterOutage { try await stores.reconciler().run(.business(stores.bizId), fix: true) }
        case .copyRedis:
            redisCopy.keep(try await stores.snapshotRedis())
        case .goBack:
            wentBack.set(false)
            guard try await afterOutage({ try await stores.drainWithWorker() }) else { throw CheckFailed(message: "the outbox did not drain") }
            guard let copy = redisCopy.take() else { return }
            let journal = JournalRepository(client: stores.mysql)
            // The second instance's worker checks the marks about once a second: its last check came after the drain.
            _ = try await afterOutage { try await second.forgetIfWentBack(journal: journal) }
            try await stores.sendRedisBack(to: copy)
            // Whether Redis is behind MySQL now, read only: the first call that meets it finds it out (the drain floors,
            // lua/lib/floor.lua), before it acts on the old Redis.
            let behind = try await afterOutage {
                try await stores.engine.batchFences.marksBehind(try await journal.drainMarkCounts(stores.keys.drainMarks))
            }
            wentBack.set(!behind.isEmpty)
        }
    }

    /// Redis has room again, if it was full (`Fault.redisFull`).
    func roomInRedis() async throws {
        guard redisFull.isSet else { return }
        try await setMaxmemory("0")
        redisFull.set(false)
    }

    /// `CONFIG SET maxmemory` on every node (`noeviction`, as the service's Redis must be).
    func setMaxmemory(_ bytes: String) async throws {
        for node in try await stores.redis.dataNodes() {
            _ = try await node.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
            _ = try await node.command("CONFIG", "SET", "maxmemory", bytes)
        }
    }

    /// Runs one of the harness's own store calls (a drain, the reconciler, a read of MySQL), which do not retry:
    /// after an outage each pooled MariaDB connection that it cut fails once before it is replaced.
    func afterOutage<T>(_ call: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await call()
            } catch let error as MySQLError where error.isConnectionError && mysqlProxy != nil && attempt < 16 {
                attempt += 1
            } catch InventoryError.unavailable where mysqlProxy != nil && attempt < 16 {
                attempt += 1
            } catch ReconcileError.store where mysqlProxy != nil && attempt < 16 {
                attempt += 1
            }
        }
    }
}
