import RedisClient

/// How full Redis is, for operators to act before it refuses writes (README "Redis full"): every node's used memory
/// against its `maxmemory`, the highest share as `inventory_redis_memory_used_ratio` (0 without a limit), read about
/// every 10 s by every instance (`EngineLoop.redisMemory`). Refusals for a full Redis are counted as
/// `inventory_redis_full_refusals_total`.
extension InventoryEngine {
    /// Reads `redisMemoryUsedRatio` into its gauge; NaN when no node answered (not the last value, which would look
    /// current).
    public func recordRedisMemory() async throws {
        do {
            InventoryMetrics.redisMemoryUsedRatio.record(try await redisMemoryUsedRatio())
        } catch {
            InventoryMetrics.redisMemoryUsedRatio.record(Double.nan)
            throw error
        }
    }

    /// The highest share of its `maxmemory` any Redis node uses (used memory less what Redis does not count for
    /// eviction, as its own test and lua/lib/full.lua), 0 where no node has a limit; above 1 Redis refuses what would
    /// make something new. Of the nodes that answer (not counted as Redis errors: no request waits on this); throws
    /// when none does.
    public func redisMemoryUsedRatio() async throws -> Double {
        var highest = 0.0
        var answered = 0
        var failure: (any Error)?
        for node in try await redis.dataNodes() {
            do {
                highest = max(highest, try await Self.memoryUsedRatio(of: node))
                answered += 1
            } catch {
                failure = error
            }
        }
        if answered == 0, let failure { throw failure }
        return highest
    }

    /// The share of its `maxmemory` the node holding `key` uses (as `redisMemoryUsedRatio`); throws when it does not
    /// answer.
    func redisMemoryUsedRatio(holding key: String) async throws -> Double {
        try await Self.memoryUsedRatio(of: try await redis.dataNode(holding: key))
    }

    private static func memoryUsedRatio(of node: RedisClient) async throws -> Double {
        let info = try await node.command("INFO", "memory").text ?? ""
        var fields: [Substring: Double] = [:]
        for line in info.split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon]] = Double(line[line.index(after: colon)...])
        }
        guard let limit = fields["maxmemory"], limit > 0, let used = fields["used_memory"] else { return 0 }
        return (used - (fields["mem_not_counted_for_evict"] ?? 0)) / limit
    }
}
