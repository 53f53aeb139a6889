import MySQLClient
import RedisClient

/// Eviction policy, readiness, low stock and the status page's figures.
extension InventoryEngine {
    /// What `checkEvictionPolicy` found on one Redis node.
    public enum EvictionPolicy: Sendable, Equatable {
        /// `noeviction`: Redis refuses writes when full instead of dropping keys.
        case safe
        /// A policy that may evict keys the service keeps (items, holds, orders, outbox streams).
        case evicting(node: String, policy: String)
        /// `CONFIG GET` is not allowed (a managed Redis): the policy cannot be read.
        case unknown(node: String, reason: String)
    }

    /// Reads `maxmemory-policy` on every Redis node. Every key the service owns may carry a TTL (`volatile-*`
    /// policies pick those too), so anything but `noeviction` can drop a hold, an order or a journal event while
    /// clients rely on it: the service refuses to start on such a Redis unless told otherwise.
    public func evictionPolicies() async throws -> [EvictionPolicy] {
        var found: [EvictionPolicy] = []
        for node in try await redisCall({ try await self.redis.dataNodes() }) {
            let name = "\(node.configuration.host):\(node.configuration.port)"
            do {
                let reply = try await node.command("CONFIG", "GET", "maxmemory-policy")
                let policy = (reply.array ?? []).compactMap(\.text).dropFirst().first ?? ""
                found.append(policy == "noeviction" ? .safe : .evicting(node: name, policy: policy))
            } catch let error as RedisError where error.code == .server {
                found.append(.unknown(node: name, reason: error.message))
            } catch let error as RedisError {
                InventoryMetrics.redisError()
                throw InventoryError.unavailable("Redis: \(error.message)")
            }
        }
        return found
    }

    // MARK: - Health

    /// Whether Redis answers and the scripts are loaded, and whether MySQL answers.
    public func readiness() async -> (redis: Bool, scripts: Bool, mysql: Bool) {
        var redisUp = true
        do {
            for node in try await redis.dataNodes() { try await node.command("PING") }
        } catch {
            redisUp = false
        }
        let mysqlUp = (try? await mysql.ping()) != nil
        return (redisUp, runner.isLoaded(scripts.all), mysqlUp)
    }

    // MARK: - Status

    /// Items worth an operator's eye: at or below a threshold that was set, or at (or below) zero.
    static func isWatched(_ level: StockLevel) -> Bool {
        level.lowStock && (level.dangerNum > 0 || level.available <= 0)
    }

    /// The items seen low (the low-stock gauges' set, bounded by `InventoryMetrics.lowStockLimit`) as Redis has
    /// them now, the lowest first; items restocked since, or not in Redis, are left out. Of `bizId` only, when given.
    public func lowStockLevels(of bizId: String? = nil) async throws -> [StockLevel] {
        let levels = try await withThrowingTaskGroup(of: (StockItemID, StockLevel?).self) { group in
            for item in InventoryMetrics.lowStockItems(of: bizId) {
                group.addTask { (item, try await self.readStock(item)) }
            }
            var levels: [StockLevel] = []
            for try await (item, level) in group {
                guard let level else {
                    // No longer in Redis (its TTL, a deletion, a data loss): on a business's own read its slot is
                    // given back, and it is tracked again when next read low (else the business's slots would fill
                    // with items that are gone). Not on the read of every business: the table is the process's, and
                    // an engine under another key prefix in the same process (tests) does not see this one's items.
                    if bizId != nil { InventoryMetrics.recovered(item) }
                    continue
                }
                if Self.isWatched(level) { levels.append(level) }
            }
            return levels
        }
        return levels.sorted { ($0.available, $0.item.bizId, $0.item.skuId) < ($1.available, $1.item.bizId, $1.item.skuId) }
    }

    /// Entries in every outbox stream: events the write-back worker has not applied yet.
    public func outboxLength() async throws -> Int {
        var total = 0
        for stream in keys.outboxes {
            total += Int(try await redisCall { try await self.redis.command("XLEN", stream) }.int ?? 0)
        }
        return total
    }

    /// Low items, outbox length and the last reconciliation. Redis failing is an error; MySQL failing only
    /// leaves the reconciliation out.
    public func status(lowStockLimit: Int) async throws -> EngineStatus {
        async let reconcile = try? ReconcileRepository.latestRun(in: mysql)
        let low = try await lowStockLevels()
        let outbox = try await outboxLength()
        return EngineStatus(
            lowStock: Array(low.prefix(lowStockLimit)), lowStockCount: low.count, outboxEntries: outbox,
            lastReconcile: await reconcile
        )
    }

    /// One business's low items (its status page): at most `limit`, and how many there are.
    /// Redis not answering is an error (503), also when none of the business's items is tracked.
    public func lowStock(of bizId: String, limit: Int) async throws -> (levels: [StockLevel], count: Int) {
        _ = try await redisNow()
        let low = try await lowStockLevels(of: bizId)
        return (Array(low.prefix(limit)), low.count)
    }
}
