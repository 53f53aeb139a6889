import Foundation
import InventoryTestSupport
import Testing

@testable import Inventory

/// Redis must not evict what the service keeps: `inventoryd` refuses to start on a Redis whose `maxmemory-policy`
/// can drop keys, naming the setting, unless told otherwise (issue 17, item 14).
@Suite("Redis eviction policy at start")
struct EvictionPolicyTests {
    @Test("an evicting policy: serve exits non-zero naming maxmemory-policy and INVENTORY_ALLOW_EVICTION; allowed, it serves")
    func refusesEvictingRedis() async throws {
        try await TestStores.with(cluster: false) { stores in
            // A Redis of this test's own: the shared one must keep noeviction.
            let redis = try await TestRedisServer.start(["--maxmemory-policy", "allkeys-lru"])
            defer { redis.stop() }
            var environment = stores.serviceEnvironment()
            environment["INVENTORY_REDIS_PORT"] = String(redis.port)
            environment["INVENTORY_REDIS_DB"] = "0"
            environment["INVENTORY_REDIS_CLUSTER"] = ""

            let refused = try ServeProcess.launch(binary: TestStores.inventorydBinary, environment: environment)
            defer { refused.killIfRunning(); refused.removeLog() }
            let status = try await refused.exitStatus(within: .seconds(30))
            #expect(status != nil && status != 0, "exit status \(String(describing: status))")
            let output = refused.output()
            #expect(output.contains("maxmemory-policy allkeys-lru"), "\(output)")
            #expect(output.contains("INVENTORY_ALLOW_EVICTION"), "\(output)")

            environment["INVENTORY_ALLOW_EVICTION"] = "on"
            let allowed = try ServeProcess.launch(binary: TestStores.inventorydBinary, environment: environment)
            defer { allowed.killIfRunning(); allowed.removeLog() }
            try await allowed.waitUntilServing()
            allowed.terminate()
            #expect(try await allowed.exitStatus(within: .seconds(30)) == 0)
        }
    }
}
