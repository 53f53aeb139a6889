import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// A client for Redis Cluster: it learns which master serves each slot (`CLUSTER SLOTS`), sends every command to
/// the master of its routing key's slot through that node's own pipelined `RedisClient`, and follows the cluster's
/// redirections: `MOVED` (the slot lives elsewhere now: the map is corrected and read again) and `ASK` (the slot is
/// being migrated and this key already moved: the command goes to the target once, after `ASKING`). A node it has
/// not seen is connected on first use.
///
/// A node that cannot be reached or does not answer makes it read the map again from the other nodes: a dead
/// master never answers `MOVED`, so without that its slots would stay routed to it after the cluster promoted its
/// replica. A node the map no longer names has its connections closed.
///
/// The caller names the routing key, since only it knows which argument is a key (all keys of one command must
/// share a slot: use hash tags). `masters` lists the nodes for what must reach every master (SCAN, outbox reads).
public final class RedisClusterClient: Sendable, Service {
    /// A node's address, "host:port".
    public typealias Address = String

    private struct State {
        /// For each slot, the master serving it ("" until the map is read).
        var owners = [Address](repeating: "", count: HashSlot.count)
        /// Every node of the last map, masters first: where the next map is read.
        var mapped: [Address] = []
        var nodes: [Address: RedisClient] = [:]
        var redirects = 0
        /// The read of the map under way; callers that need one wait for it instead of starting another.
        var refreshing: Task<Void, any Error>?
        var lastRefresh: ContinuousClock.Instant?
        var isShutdown = false
    }

    private let seeds: [Address]
    private let template: RedisConfiguration
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    /// Redirections followed before a command gives up (a cluster that keeps moving a slot); also the number of
    /// times a command that never left is sent on to another node after its node failed.
    private let maxRedirects = 5
    /// How long a command waits in all while its slot is half migrated (TRYAGAIN) before the reply is given up.
    private let maxTryAgainMilliseconds = 2000
    /// ASK redirections followed by one command.
    private let maxAsks = 100
    /// How often failures and redirections may read the map again. Until a dead master's replica is promoted
    /// (seconds), every command for its slots fails: each reading the map would put that load on the live nodes.
    private let refreshInterval: Duration = .milliseconds(200)

    /// - Parameters:
    ///   - seeds: nodes to read the slot map from ("host:port"), tried in order.
    ///   - configuration: connections, timeouts and password of each node's client (host, port and database are
    ///     set per node; a cluster has database 0 only).
    public init(seeds: [Address], configuration: RedisConfiguration, logger: Logger) {
        self.seeds = seeds
        var template = configuration
        template.database = 0
        self.template = template
        self.logger = logger
    }

    /// Redirections (`MOVED`, `ASK`) followed so far.
    public var redirects: Int { state.withLockedValue { $0.redirects } }

    /// The masters of the current map.
    public var masters: [Address] { state.withLockedValue { Array(Set($0.owners.filter { !$0.isEmpty })).sorted() } }

    /// The nodes this client holds a client (and its connections) for.
    public var nodesInUse: [Address] { state.withLockedValue { $0.nodes.keys.sorted() } }

    /// The master the map names for `key`'s slot ("" before the map is read).
    public func owner(of key: String) -> Address { state.withLockedValue { $0.owners[HashSlot.of(key)] } }

    /// Reads the slot map from the first node that answers: the nodes of the current map (masters first), then the
    /// seeds. When a read is already under way, waits for that one instead.
    public func refresh() async throws {
        try await refresh(askingLast: nil, unlessWithin: nil)
    }

    /// Sends a command to the master of `routingKey`'s slot, following redirections. Error replies other than
    /// redirections come back as `.error`, as with `RedisClient.send`.
    ///
    /// When the node cannot be reached or does not answer, the map is read again (from the other nodes) before the
    /// error is dealt with, so that this or the next command goes to whichever node serves the slot now. A command
    /// that never left (connection refused) is then sent to the new master; one that may have run (the connection
    /// died or timed out after it was sent) is not sent again.
    ///
    /// - Throws: `RedisError`; `outcomeUnknown` when the command may have run without its reply arriving.
    public func send(_ arguments: [String], routingKey: String) async throws -> RedisValue {
        let slot = HashSlot.of(routingKey)
        if state.withLockedValue({ $0.owners[slot].isEmpty }) { try await refresh() }
        var target = state.withLockedValue { $0.owners[slot] }
        var asking = false
        var redirected = 0
        var asked = 0
        var rerouted = 0
        var waited = 0
        // MOVED counts toward `maxRedirects`; ASK does not (while a slot migrates, ASK and TRYAGAIN alternate until
        // it has moved, bounded by the TRYAGAIN wait), only toward a generous bound of its own.
        while redirected <= maxRedirects && asked <= maxAsks {
            let client = node(target)
            let reply: RedisValue
            do {
                reply = asking ? try await client.sendAsking(arguments) : try await client.send(arguments)
            } catch let error as RedisError where Self.isNodeFailure(error) {
                guard rerouted < maxRedirects, let owner = await reroute(slot, after: error, from: target) else {
                    throw error
                }
                rerouted += 1
                target = owner
                asking = false
                continue
            }
            asking = false
            guard let message = reply.errorMessage else { return reply }
            let parts = message.split(separator: " ")
            switch parts.first {
            case "MOVED" where parts.count == 3:
                redirected += 1
                let movedTo = String(parts[2])
                state.withLockedValue { state in
                    state.owners[slot] = movedTo
                    state.redirects += 1
                }
                target = movedTo
                // One slot moved usually means a range did: read the whole map again (a failed read keeps the
                // corrected entry and the command goes on).
                try? await refresh(askingLast: nil, unlessWithin: refreshInterval)
            case "ASK" where parts.count == 3:
                asked += 1
                state.withLockedValue { $0.redirects += 1 }
                target = String(parts[2])
                asking = true
            case "TRYAGAIN" where waited < maxTryAgainMilliseconds:
                // A command over several keys of a slot being migrated, some moved and some not (or not there yet):
                // it can run once the slot has moved, which takes as long as its keys take to migrate. Waits up to
                // `maxTryAgainMilliseconds` in all, then answers TRYAGAIN (a 503 above).
                let pause = min(10 << min(waited / 40, 3), 80)
                try await Task.sleep(for: .milliseconds(pause))
                waited += pause
                target = state.withLockedValue { $0.owners[slot] }
            default:
                return reply
            }
        }
        throw RedisError(.server, "slot \(slot) kept moving: \(redirected) MOVED and \(asked) ASK redirections")
    }

    /// `send`, with an error reply thrown as `RedisError(.server, …)`.
    @discardableResult
    public func command(routingKey: String, _ arguments: String...) async throws -> RedisValue {
        let reply = try await send(arguments, routingKey: routingKey)
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    /// The client of one node (made on first use).
    public func node(_ address: Address) -> RedisClient {
        state.withLockedValue { state in
            if let client = state.nodes[address] { return client }
            var configuration = template
            let parts = address.split(separator: ":")
            configuration.host = parts.dropLast().joined(separator: ":")
            configuration.port = parts.last.flatMap { Int($0) } ?? 6379
            let client = RedisClient(configuration: configuration, logger: logger)
            state.nodes[address] = client
            return client
        }
    }

    /// Runs until graceful shutdown, then closes the connections.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes every node's connections.
    public func shutdown() async {
        let clients = state.withLockedValue { state in
            state.isShutdown = true
            return Array(state.nodes.values)
        }
        for client in clients {
            await client.shutdown()
        }
    }

    /// Errors that say nothing about the command and something about its node: it is down, unreachable, stuck, or
    /// its client was closed because the map dropped it. (Error replies and garbled replies come from a live node.)
    private static func isNodeFailure(_ error: RedisError) -> Bool {
        switch error.code {
        case .connectionFailed, .connectionClosed, .timeout, .notSent, .shutdown: return true
        case .protocolError, .server: return false
        }
    }

    /// Reads the map again after `failed` failed the command, and says where to send the command now: nil when it
    /// must not be sent again (it may have run: the caller gets that error, the next command the new map) or the map
    /// still names the failed node (the cluster has not replaced it yet).
    private func reroute(_ slot: Int, after error: RedisError, from failed: Address) async -> Address? {
        if state.withLockedValue({ $0.isShutdown }) { return nil }
        do {
            try await refresh(askingLast: failed, unlessWithin: refreshInterval)
        } catch {
            logger.debug("redis cluster: slot map not read", metadata: ["redis.error": "\(error)"])
        }
        if error.outcomeUnknown { return nil }
        return state.withLockedValue { state in
            let owner = state.owners[slot]
            // A client closed because its node left the map never sent the command; a node back in the map since
            // has a new client.
            return owner.isEmpty || (owner == failed && error.code != .shutdown) ? nil : owner
        }
    }

    /// Reads the map, or waits for the read under way; with `interval`, not when a read started less than that ago
    /// (the map is as new as it may get for now). `suspect` is asked last: it is the node that just failed.
    private func refresh(askingLast suspect: Address?, unlessWithin interval: Duration?) async throws {
        let now = ContinuousClock.now
        let read: Task<Void, any Error>? = state.withLockedValue { state in
            if let running = state.refreshing { return running }
            if let interval, let last = state.lastRefresh, now - last < interval { return nil }
            var seen = Set<Address>()
            let candidates = (state.mapped + seeds).filter { seen.insert($0).inserted }
            let ordered = candidates.filter { $0 != suspect } + candidates.filter { $0 == suspect }
            let task = Task { try await self.readMap(from: ordered) }
            state.refreshing = task
            state.lastRefresh = now
            return task
        }
        try await read?.value
    }

    private func readMap(from candidates: [Address]) async throws {
        defer { state.withLockedValue { $0.refreshing = nil } }
        var lastError: (any Error)?
        for address in candidates {
            do {
                try await apply(slots: try await node(address).command("CLUSTER", "SLOTS"))
                return
            } catch {
                lastError = error
            }
        }
        throw lastError ?? RedisError(.connectionFailed, "no Redis Cluster node to read the slot map from")
    }

    /// `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replicas…], …]`; the first node of a range is its master.
    /// Clients of nodes the map no longer names (a dead master once its replica took over) are closed.
    private func apply(slots reply: RedisValue) async throws {
        var owners = [Address](repeating: "", count: HashSlot.count)
        var masters: [Address] = []
        var replicas: [Address] = []
        for range in reply.array ?? [] {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].int, let end = fields[1].int,
                let master = Self.address(fields[2]), start >= 0, end < HashSlot.count, start <= end
            else { continue }
            masters.append(master)
            replicas.append(contentsOf: fields.dropFirst(3).compactMap(Self.address))
            for slot in Int(start)...Int(end) { owners[slot] = master }
        }
        // A node that has not joined a cluster yet answers an empty map: keep the one there is.
        guard !masters.isEmpty else { throw RedisError(.protocolError, "CLUSTER SLOTS named no slot") }
        var seen = Set<Address>()
        let mapped = (masters + replicas).filter { seen.insert($0).inserted }
        let dropped = state.withLockedValue { state in
            state.owners = owners
            state.mapped = mapped
            let gone = state.nodes.filter { !seen.contains($0.key) }
            for address in gone.keys { state.nodes[address] = nil }
            return gone
        }
        for (address, client) in dropped {
            let metadata: Logger.Metadata = ["redis.node": "\(address)"]
            logger.info("redis cluster: node left the slot map, connections closed", metadata: metadata)
            await client.shutdown()
        }
    }

    /// A node of a `CLUSTER SLOTS` range: `[host, port, id, …]`.
    private static func address(_ node: RedisValue) -> Address? {
        guard let fields = node.array, fields.count >= 2, let host = fields[0].text, let port = fields[1].int else {
            return nil
        }
        return "\(host):\(port)"
    }
}
