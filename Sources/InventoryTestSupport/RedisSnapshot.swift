import Inventory
import RedisClient

/// A copy of every key of one test's (or program's) key prefix, kept in Redis beside them (`snapshot:<key>`, in the
/// key's own slot), so that Redis can be sent back to it later: a restore from an older snapshot, or a failover to a
/// replica that was behind. COPY keeps each key's TTL and a stream's consumer groups. Keys without a hash tag (leases,
/// the workers' list) are not copied on a cluster (their copy would be in another slot).
public struct RedisSnapshot: Sendable {
    /// The keys copied.
    public let keys: [String]

    static func copyName(_ key: String) -> String { "snapshot:" + key }

    /// Copies every key of `prefix` on every node of `redis`.
    public static func take(_ redis: any RedisRouter, prefix: String) async throws -> RedisSnapshot {
        var copied: [String] = []
        for key in try await keys(redis, prefix: prefix) {
            let reply = try await redis.send(["COPY", key, copyName(key), "REPLACE"], routingKey: key)
            if reply.int == 1 { copied.append(key) }
        }
        return RedisSnapshot(keys: copied)
    }

    /// Sends Redis back to this snapshot: every key of `prefix` is deleted and the copies put back in their place
    /// (and removed). Nothing else may run meanwhile.
    public func restore(_ redis: any RedisRouter, prefix: String) async throws {
        for key in try await Self.keys(redis, prefix: prefix) { try await redis.command("DEL", key) }
        for key in keys {
            try await redis.command("COPY", Self.copyName(key), key, "REPLACE")
            try await redis.command("DEL", Self.copyName(key))
        }
    }

    private static func keys(_ redis: any RedisRouter, prefix: String) async throws -> [String] {
        var found: [String] = []
        for node in try await redis.dataNodes() {
            try await node.scanKeys(matching: KeyLayout.globEscaped(prefix) + ":*") { found += $0 }
        }
        return found
    }
}

extension TestStores {
    /// A snapshot of this test's keys (`RedisSnapshot`).
    public func snapshotRedis() async throws -> RedisSnapshot { try await RedisSnapshot.take(redis, prefix: keys.prefix) }

    /// Sends this test's keys back to `snapshot`, as a Redis restored from it would have them.
    public func sendRedisBack(to snapshot: RedisSnapshot) async throws { try await snapshot.restore(redis, prefix: keys.prefix) }
}
