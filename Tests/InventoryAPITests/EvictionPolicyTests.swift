import Foundation
import InventoryTestSupport
import Testing

@testable import Inventory

/// Redis must not evict what the service keeps: `inventoryd` refuses to start on a Redis whose `maxmemory-policy`
/// can drop keys, naming the setting, unless told otherwise (issue 17, item 14).
@Suite("Redis eviction policy at start")
struct EvictionPolicyTests {
    /// A Redis of this test's own (the shared one must keep noeviction): evicting policy, no persistence.
    func startRedis(policy: String) async throws -> (process: Process, port: Int) {
        let port = try await ServeProcess.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", policy,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        do {
            try await waitFor("redis-server on \(port) answers PING", every: .milliseconds(20)) {
                guard let connection = try? await RawConnection.connect(port: port) else { return false }
                try? await connection.send("*1\r\n$4\r\nPING\r\n")
                let reply = await connection.receive(within: 1) { $0.contains(UInt8(ascii: "\n")) }
                await connection.close()
                return String(decoding: reply, as: UTF8.self).hasPrefix("+PONG")
            }
        } catch {
            Self.stop(process)
            throw error
        }
        return (process, port)
    }

    /// Kills the test's Redis and waits for it: `Process.terminate()` left it running (one stray redis-server per
    /// run, seen on this machine and in the fresh-clone runs).
    static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    @Test("an evicting policy: serve exits non-zero naming maxmemory-policy and INVENTORY_ALLOW_EVICTION; allowed, it serves")
    func refusesEvictingRedis() async throws {
        try await TestStores.with(cluster: false) { stores in
            let redis = try await startRedis(policy: "allkeys-lru")
            defer { Self.stop(redis.process) }
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
