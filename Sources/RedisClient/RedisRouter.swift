/// Where a command goes: the one Redis there is, or the master of a Redis Cluster that serves the slot of the
/// command's key. Everything above the Redis clients talks to this, so it runs on either unchanged.
public protocol RedisRouter: Sendable {
    /// Sends a command to the node serving `routingKey` (a single Redis serves every key). Error replies come back
    /// as `.error`, as with `RedisClient.send`.
    func send(_ arguments: [String], routingKey: String) async throws -> RedisValue

    /// The client of every node that holds data: a single Redis itself; every master of a cluster.
    func dataNodes() async throws -> [RedisClient]

    /// The client of the node that serves `key`: a single Redis itself; the master of the key's slot on a cluster.
    func dataNode(holding key: String) async throws -> RedisClient

    /// Closes every connection.
    func shutdown() async
}

extension RedisClient: RedisRouter {
    public func send(_ arguments: [String], routingKey: String) async throws -> RedisValue {
        try await send(arguments)
    }

    public func dataNodes() async throws -> [RedisClient] { [self] }

    public func dataNode(holding key: String) async throws -> RedisClient { self }
}

extension RedisClusterClient: RedisRouter {
    public func dataNodes() async throws -> [RedisClient] {
        if masters.isEmpty { try await refresh() }
        return masters.map { node($0) }
    }

    public func dataNode(holding key: String) async throws -> RedisClient {
        if owner(of: key).isEmpty { try await refresh() }
        return node(owner(of: key))
    }
}

extension RedisRouter {
    /// Sends a command whose first argument is its key (`HGET key …`, `XADD key …`, `SSCAN key …`), routed by that
    /// key; an error reply is thrown as `RedisError(.server, …)`. (`RedisClient.command` does the same on its one
    /// node.)
    @discardableResult
    public func command(_ arguments: String...) async throws -> RedisValue {
        let reply = try await send(arguments, routingKey: arguments.count > 1 ? arguments[1] : "")
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// Every member of a set, one SSCAN page at a time (`count` is Redis's hint of a page's size): `body` sees each
    /// page; a member added or removed meanwhile may be seen or not, as SSCAN guarantees.
    public func scanSet(_ key: String, count: Int = 1000, _ body: ([String]) async throws -> Void) async throws {
        var cursor = "0"
        repeat {
            let parts = try await command("SSCAN", key, cursor, "COUNT", String(count)).array ?? []
            cursor = parts.first?.text ?? "0"
            let page = (parts.count > 1 ? parts[1].array ?? [] : []).compactMap(\.text)
            if !page.isEmpty { try await body(page) }
        } while cursor != "0"
    }
}

extension RedisClient {
    /// Every key of this node that matches `pattern` (SCAN MATCH), one page at a time (`count` is Redis's hint of a
    /// page's size): a key added or removed meanwhile may be seen or not, as SCAN guarantees.
    public func scanKeys(matching pattern: String, count: Int = 1000, _ body: ([String]) async throws -> Void) async throws {
        var cursor = "0"
        repeat {
            let parts = try await command("SCAN", cursor, "MATCH", pattern, "COUNT", String(count)).array ?? []
            cursor = parts.first?.text ?? "0"
            let page = (parts.count > 1 ? parts[1].array ?? [] : []).compactMap(\.text)
            if !page.isEmpty { try await body(page) }
        } while cursor != "0"
    }
}
