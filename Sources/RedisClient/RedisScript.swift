import NIOConcurrencyHelpers

/// A Lua script known by name, loaded with SCRIPT LOAD and called by EVALSHA.
public struct RedisScript: Sendable {
    public let name: String
    public let source: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
    }
}

/// Runs scripts by their SHA1, loading each the first time and again whenever Redis answers NOSCRIPT
/// (after a restart without persistence, a SCRIPT FLUSH, or a failover to a node that never saw it).
public final class RedisScriptRunner: Sendable {
    private let client: RedisClient
    private let shas = NIOLockedValueBox<[String: String]>([:])

    public init(client: RedisClient) {
        self.client = client
    }

    /// Loads every script now, so that a missing or broken one is found at start, not on the first request.
    public func load(_ scripts: [RedisScript]) async throws {
        for script in scripts {
            _ = try await load(script)
        }
    }

    /// Whether every one of these scripts has been loaded.
    public func isLoaded(_ scripts: [RedisScript]) -> Bool {
        shas.withLockedValue { shas in scripts.allSatisfy { shas[$0.name] != nil } }
    }

    /// Runs a script and returns its reply; an error reply from the script is thrown as `.server`.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        let sha: String
        if let known = shas.withLockedValue({ $0[script.name] }) {
            sha = known
        } else {
            sha = try await load(script)
        }
        var command: [String] = ["EVALSHA", sha, String(keys.count)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command.append(contentsOf: keys)
        command.append(contentsOf: arguments)
        var reply = try await client.send(command)
        if let message = reply.errorMessage, message.hasPrefix("NOSCRIPT") {
            command[1] = try await load(script)
            reply = try await client.send(command)
        }
        if let message = reply.errorMessage {
            throw RedisError(.server, "script \(script.name): \(message)")
        }
        return reply
    }

    @discardableResult
    private func load(_ script: RedisScript) async throws -> String {
        let reply = try await client.command("SCRIPT", "LOAD", script.source)
        guard let sha = reply.text else {
            throw RedisError(.protocolError, "SCRIPT LOAD of \(script.name) answered \(reply)")
        }
        shas.withLockedValue { $0[script.name] = sha }
        return sha
    }
}
