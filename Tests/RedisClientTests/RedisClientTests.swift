import Foundation
import Logging
import InventoryTestSupport
import RedisClient
import Testing

/// The client against the real Redis that `scripts/setup.sh` starts.
@Suite("Redis client on real Redis")
struct RedisClientTests {
    static func client(timeoutMilliseconds: Int64 = 2000, connections: Int = 2, port: Int? = nil) -> RedisClient {
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "redis-test")
        logger.logLevel = .warning
        return RedisClient(
            configuration: RedisConfiguration(
                host: environment["INVENTORY_REDIS_HOST"] ?? "127.0.0.1",
                port: port ?? Int(environment["INVENTORY_REDIS_PORT"] ?? "") ?? 6390,
                connections: connections,
                connectTimeoutMilliseconds: 500,
                commandTimeoutMilliseconds: timeoutMilliseconds
            ),
            logger: logger
        )
    }

    @Test("replies of every kind come back as Swift values")
    func replyKinds() async throws {
        let redis = Self.client()
        let key = "rc-test:\(UUID().uuidString)"
        #expect(try await redis.command("PING") == .status("PONG"))
        #expect(try await redis.command("SET", key, "héllo wörld") == .status("OK"))
        #expect(try await redis.command("GET", key) == .string("héllo wörld"))
        #expect(try await redis.command("GET", key + ":none") == .null)
        #expect(try await redis.command("INCRBY", key + ":n", "-5") == .integer(-5))
        #expect(try await redis.command("RPUSH", key + ":l", "a", "", "c") == .integer(3))
        #expect(try await redis.command("LRANGE", key + ":l", "0", "-1") == .array([.string("a"), .string(""), .string("c")]))
        let error = try await redis.send(["INCR", key])
        #expect(error.errorMessage?.hasPrefix("ERR") == true)
        _ = try await redis.command("DEL", key, key + ":n", key + ":l")
        await redis.shutdown()
    }

    @Test("2,000 concurrent callers pipelined on 2 connections each get their own reply")
    func pipelining() async throws {
        let redis = Self.client()
        let key = "rc-test:\(UUID().uuidString)"
        let mismatches = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
            for index in 0..<2000 {
                group.addTask {
                    let reply = try await redis.send(["ECHO", "value-\(index)"])
                    return reply == .string("value-\(index)")
                }
            }
            var bad = 0
            for try await matched in group where !matched { bad += 1 }
            return bad
        }
        #expect(mismatches == 0)
        _ = try await redis.command("DEL", key)
        await redis.shutdown()
    }

    @Test("a large value crosses many reads intact")
    func largeValue() async throws {
        let redis = Self.client()
        let key = "rc-test:\(UUID().uuidString)"
        let value = String(repeating: "0123456789", count: 200_000)
        _ = try await redis.command("SET", key, value)
        #expect(try await redis.command("GET", key) == .string(value))
        _ = try await redis.command("DEL", key)
        await redis.shutdown()
    }

    @Test("after the server drops the connection, the next command reconnects")
    func reconnect() async throws {
        let redis = Self.client(connections: 1)
        let name = "rc-\(UUID().uuidString.prefix(8))"
        _ = try await redis.command("CLIENT", "SETNAME", name)
        let admin = Self.client(connections: 1)
        let list = try await admin.command("CLIENT", "LIST").text ?? ""
        for line in list.split(separator: "\n") where line.contains("name=\(name)") {
            if let id = line.split(separator: " ").first(where: { $0.hasPrefix("id=") })?.dropFirst(3) {
                _ = try await admin.command("CLIENT", "KILL", "ID", String(id))
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        var reply: RedisValue?
        for _ in 0..<5 {
            do {
                reply = try await redis.command("PING")
                break
            } catch let error as RedisError where error.code == .connectionClosed {
                continue
            }
        }
        #expect(reply == .status("PONG"))
        await redis.shutdown()
        await admin.shutdown()
    }

    @Test("a command that gets no reply in time fails with timeout instead of hanging, and the client recovers")
    func timeout() async throws {
        let upstream = TestStores.redisAddress()
        let proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        let redis = Self.client(timeoutMilliseconds: 1000, connections: 1, port: proxy.port)
        #expect(try await redis.command("PING") == .status("PONG"))
        proxy.dropReplies = true
        do {
            _ = try await redis.command("PING")
            Issue.record("PING without a reply must not succeed")
        } catch let error as RedisError {
            #expect(error.code == .timeout)
            #expect(error.outcomeUnknown)
        }
        proxy.dropReplies = false
        #expect(try await redis.command("PING") == .status("PONG"))
        await redis.shutdown()
        await proxy.close()
    }

    @Test("an unreachable server is a connection failure, not a hang")
    func unreachable() async throws {
        let redis = Self.client(connections: 1, port: 1)
        await #expect(throws: RedisError.self) { try await redis.command("PING") }
        do {
            _ = try await redis.command("PING")
        } catch let error as RedisError {
            #expect(error.code == .connectionFailed)
        }
        await redis.shutdown()
    }

    @Test("scripts are loaded, run by EVALSHA, and reloaded after SCRIPT FLUSH")
    func scripts() async throws {
        let redis = Self.client(connections: 1)
        let runner = RedisScriptRunner(client: redis)
        let script = RedisScript(name: "echo-\(UUID().uuidString)", source: "return {KEYS[1], ARGV[1]}")
        try await runner.load([script])
        #expect(runner.isLoaded([script]))
        #expect(try await runner.run(script, keys: ["k"], arguments: ["a"]) == .array([.string("k"), .string("a")]))
        _ = try await redis.command("SCRIPT", "FLUSH")
        #expect(try await runner.run(script, keys: ["k2"], arguments: ["b"]) == .array([.string("k2"), .string("b")]))
        await redis.shutdown()
    }
}
