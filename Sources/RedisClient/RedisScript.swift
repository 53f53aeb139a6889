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
/// (after a restart without persistence, a SCRIPT FLUSH, or a failover to a node that never saw it). On a cluster
/// a script runs on the master of its first key's slot: all its keys must share that slot.
public final class RedisScriptRunner: Sendable {
    private let client: any RedisRouter
    private let shas = NIOLockedValueBox<[String: String]>([:])

    public init(client: any RedisRouter) {
        self.client = client
    }

    /// Loads every script into every node now, so that a missing or broken one is found at start, not on the
    /// first request.
    public func load(_ scripts: [RedisScript]) async throws {
        for node in try await client.dataNodes() {
            for script in scripts {
                _ = try await load(script, routingKey: "", on: node)
            }
        }
    }

    /// Whether every one of these scripts has been loaded.
    public func isLoaded(_ scripts: [RedisScript]) -> Bool {
        shas.withLockedValue { shas in scripts.allSatisfy { shas[$0.name] != nil } }
    }

    /// Runs a script and returns its reply; an error reply from the script is thrown as `.server`.
    public func run(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        let routingKey = keys.first ?? ""
        let sha: String
        if let known = shas.withLockedValue({ $0[script.name] }) {
            sha = known
        } else {
            sha = try await load(script, routingKey: routingKey)
        }
        var command: [String] = ["EVALSHA", sha, String(keys.count)]
        command.reserveCapacity(3 + keys.count + arguments.count)
        command.append(contentsOf: keys)
        command.append(contentsOf: arguments)
        var reply = try await client.send(command, routingKey: routingKey)
        if let message = reply.errorMessage, message.hasPrefix("NOSCRIPT") {
            command[1] = try await load(script, routingKey: routingKey)
            reply = try await client.send(command, routingKey: routingKey)
        }
        if let message = reply.errorMessage {
            throw RedisError(.server, "script \(script.name): \(message)")
        }
        return reply
    }

    /// Loads a script into the node serving `routingKey`, or into `node`.
    @discardableResult
    private func load(_ script: RedisScript, routingKey: String, on node: RedisClient? = nil) async throws -> String {
        let arguments = ["SCRIPT", "LOAD", script.source]
        let reply: RedisValue
        if let node {
            reply = try await node.send(arguments)
        } else {
            reply = try await client.send(arguments, routingKey: routingKey)
        }
        if let message = reply.errorMessage { throw RedisError(.server, "SCRIPT LOAD of \(script.name): \(message)") }
        guard let sha = reply.text else {
            throw RedisError(.protocolError, "SCRIPT LOAD of \(script.name) answered \(reply)")
        }
        shas.withLockedValue { $0[script.name] = sha }
        return sha
    }
}
