import Foundation
import Logging
import RedisClient
import Testing

/// Key slots, and the cluster client against the local 3-master cluster `scripts/cluster.sh` starts (the test
/// command starts it). One test at a time: the routing test counts redirections, which a slot the migration test
/// moves meanwhile would cause.
@Suite("Redis Cluster client", .serialized)
struct RedisClusterTests {
    static var seeds: [String] {
        let base = Int(ProcessInfo.processInfo.environment["INVENTORY_CLUSTER_PORT_BASE"] ?? "") ?? 7390
        return (0..<3).map { "127.0.0.1:\(base + $0)" }
    }

    static func client() -> RedisClusterClient {
        var logger = Logger(label: "cluster-test")
        logger.logLevel = .warning
        return RedisClusterClient(
            seeds: seeds, configuration: RedisConfiguration(connections: 2, commandTimeoutMilliseconds: 2000), logger: logger
        )
    }

    /// Test vectors of the Redis Cluster specification.
    @Test("slots: CRC16/XMODEM of the key or its hash tag, modulo 16384")
    func slots() {
        #expect(HashSlot.of("123456789") == Int(0x31C3) % 16384)
        #expect(HashSlot.of("foo") == 12182)
        #expect(HashSlot.of("bar") == 5061)
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("{user1000}.followers"))
        #expect(HashSlot.of("{user1000}.following") == HashSlot.of("user1000"))
        #expect(HashSlot.of("foo{}{bar}") != HashSlot.of("bar"), "an empty tag: the whole key is hashed")
        #expect(HashSlot.of("foo{{bar}}zap") == HashSlot.of("{bar"))
        #expect(HashSlot.of("foo{bar}{zap}") == HashSlot.of("bar"))
        // The service's own layout: an item's keys share its slot.
        #expect(HashSlot.of("inv:{default:42}:item") == HashSlot.of("inv:{default:42}:rsv:o-1"))
    }

    @Test("1,000 keys over the cluster: each answered by the master its slot names, no redirection once the map is read")
    func routing() async throws {
        let cluster = Self.client()
        try await cluster.refresh()
        #expect(cluster.masters.count == 3)
        let run = UUID().uuidString.prefix(8)
        var byNode: [String: Int] = [:]
        for index in 0..<1000 {
            let key = "rc-cluster:\(run):\(index)"
            try await cluster.command(routingKey: key, "SET", key, "v\(index)", "EX", "3600")
            byNode[cluster.owner(of: key), default: 0] += 1
        }
        for index in stride(from: 0, to: 1000, by: 7) {
            let key = "rc-cluster:\(run):\(index)"
            #expect(try await cluster.command(routingKey: key, "GET", key) == .string("v\(index)"))
            // The key is where the map says, and only there.
            #expect(try await cluster.node(cluster.owner(of: key)).command("EXISTS", key) == .integer(1))
        }
        #expect(byNode.count == 3, "keys spread over every master: \(byNode)")
        #expect(cluster.redirects == 0)
        await cluster.shutdown()
    }

    /// Moves one slot by hand, the way `redis-cli --cluster reshard` does, while the client keeps using it.
    @Test("a slot migrated under the client: ASK while it moves, MOVED once it has, every value read right")
    func migration() async throws {
        let cluster = Self.client()
        try await cluster.refresh()
        // Not a slot the service's shard tags use ({s0}, {s1}, ...): the engine tests of the same run keep writing
        // there, and a slot cannot change hands while its old owner gets new keys.
        let shardSlots = Set((0..<256).map { HashSlot.of("s\($0)") })
        var tag = ""
        repeat { tag = "{rc-mig-\(UUID().uuidString.prefix(8))}" } while shardSlots.contains(HashSlot.of(tag))
        let moved = "\(tag):moved"
        let stays = "\(tag):stays"
        let late = "\(tag):late"
        try await cluster.command(routingKey: moved, "SET", moved, "1", "EX", "60")
        try await cluster.command(routingKey: stays, "SET", stays, "2", "EX", "60")
        let slot = String(HashSlot.of(moved))
        let source = cluster.owner(of: moved)
        let target = try #require(cluster.masters.first { $0 != source })
        let sourceId = try await cluster.node(source).command("CLUSTER", "MYID").text ?? ""
        let targetId = try await cluster.node(target).command("CLUSTER", "MYID").text ?? ""
        let targetParts = target.split(separator: ":")

        // Migrating: one key already on the target, the other still on the source.
        try await cluster.node(target).command("CLUSTER", "SETSLOT", slot, "IMPORTING", sourceId)
        try await cluster.node(source).command("CLUSTER", "SETSLOT", slot, "MIGRATING", targetId)
        try await cluster.node(source).command(
            "MIGRATE", String(targetParts[0]), String(targetParts[1]), "", "0", "5000", "KEYS", moved
        )
        #expect(try await cluster.command(routingKey: moved, "GET", moved) == .string("1"), "ASK to the target")
        #expect(try await cluster.command(routingKey: stays, "GET", stays) == .string("2"), "still on the source")
        try await cluster.command(routingKey: late, "SET", late, "3", "EX", "60")
        #expect(try await cluster.node(target).send(["EXISTS", late]).errorMessage?.hasPrefix("MOVED") == true,
                "a new key of a migrating slot goes to the target, which serves it after ASKING only")
        let afterAsk = cluster.redirects
        #expect(afterAsk >= 2)

        // Done: the rest moves (every key of the slot, as a reshard does: keys of other tests may share it), every
        // node learns the new owner; the client's map is stale until MOVED.
        try await migrateAll(slot, from: source, to: target, cluster)
        for node in cluster.masters {
            try await cluster.node(node).command("CLUSTER", "SETSLOT", slot, "NODE", targetId)
        }
        #expect(cluster.owner(of: moved) == source)
        #expect(try await cluster.command(routingKey: stays, "GET", stays) == .string("2"), "MOVED, followed")
        #expect(cluster.owner(of: moved) == target)
        #expect(cluster.redirects == afterAsk + 1)
        #expect(try await cluster.command(routingKey: late, "GET", late) == .string("3"))
        #expect(try await cluster.command(routingKey: moved, "GET", moved) == .string("1"))

        // Put the slot back where it was, so runs do not drift the cluster.
        try await cluster.node(source).command("CLUSTER", "SETSLOT", slot, "IMPORTING", targetId)
        try await cluster.node(target).command("CLUSTER", "SETSLOT", slot, "MIGRATING", sourceId)
        try await migrateAll(slot, from: target, to: source, cluster)
        for node in cluster.masters {
            try await cluster.node(node).command("CLUSTER", "SETSLOT", slot, "NODE", sourceId)
        }
        #expect(try await cluster.command(routingKey: moved, "GET", moved) == .string("1"))
        #expect(cluster.owner(of: moved) == source)
        await cluster.shutdown()
    }

    /// Moves every key of `slot` from one master to another (the slot is migrating/importing between them).
    private func migrateAll(_ slot: String, from: String, to: String, _ cluster: RedisClusterClient) async throws {
        let parts = to.split(separator: ":")
        while true {
            let keys = (try await cluster.node(from).command("CLUSTER", "GETKEYSINSLOT", slot, "100").array ?? []).compactMap(\.text)
            if keys.isEmpty { return }
            let reply = try await cluster.node(from).send(
                ["MIGRATE", String(parts[0]), String(parts[1]), "", "0", "5000", "KEYS"] + keys
            )
            if let message = reply.errorMessage { throw RedisError(.server, message) }
        }
    }
}
