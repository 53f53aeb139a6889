import Logging
import ServiceLifecycle

/// How full Redis is, for operators to act before it refuses writes (README "Redis full"): every node's used memory
/// against its `maxmemory`, the highest share as `inventory_redis_memory_used_ratio` (0 without a limit), read about
/// every 10 s by every instance. Refusals for a full Redis are counted as `inventory_redis_full_refusals_total`.
public final class RedisMemoryGauge: Service, Sendable {
    private let engine: InventoryEngine
    private let intervalMilliseconds: Int
    private let logger: Logger

    public init(engine: InventoryEngine, intervalMilliseconds: Int = 10_000, logger: Logger) {
        self.engine = engine
        self.intervalMilliseconds = intervalMilliseconds
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(everyMilliseconds: intervalMilliseconds, logger: logger, failure: "Redis memory not read this round") {
            try await self.round()
        }
    }

    /// One reading, recorded.
    public func round() async throws {
        InventoryMetrics.redisMemoryUsedRatio.record(try await engine.redisMemoryUsedRatio())
    }
}

extension InventoryEngine {
    /// The highest share of its `maxmemory` any Redis node uses (used memory less what Redis does not count for
    /// eviction, as its own test and lua/lib/full.lua), 0 where no node has a limit; above 1 Redis refuses what would
    /// make something new.
    public func redisMemoryUsedRatio() async throws -> Double {
        var highest = 0.0
        for node in try await redisCall({ try await self.redis.dataNodes() }) {
            let info = try await redisCall { try await node.command("INFO", "memory") }.text ?? ""
            var fields: [Substring: Double] = [:]
            for line in info.split(whereSeparator: \.isNewline) {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon]] = Double(line[line.index(after: colon)...])
            }
            guard let limit = fields["maxmemory"], limit > 0, let used = fields["used_memory"] else { continue }
            highest = max(highest, (used - (fields["mem_not_counted_for_evict"] ?? 0)) / limit)
        }
        return highest
    }
}
