import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// A client for Redis Cluster: it learns which master serves each slot (`CLUSTER SLOTS`), sends every command to
/// the master of its routing key's slot through that node's own pipelined `RedisClient`, and follows the cluster's
/// redirections: `MOVED` (the slot lives elsewhere now: the map is corrected and read again) and `ASK` (the slot is
/// being migrated and this key already moved: the command goes to the target once, after `ASKING`). A node it has
/// not seen is connected on first use.
///
/// The caller names the routing key, since only it knows which argument is a key (all keys of one command must
/// share a slot: use hash tags). `masters` lists the nodes for what must reach every master (SCAN, outbox reads).
public final class RedisClusterClient: Sendable, Service {
    /// A node's address, "host:port".
    public typealias Address = String

    private struct State {
        /// For each slot, the master serving it ("" until the map is read).
        var owners = [Address](repeating: "", count: HashSlot.count)
        var nodes: [Address: RedisClient] = [:]
        var redirects = 0
    }

    private let seeds: [Address]
    private let template: RedisConfiguration
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    /// Redirections followed before a command gives up (a cluster that keeps moving a slot).
    private let maxRedirects = 5
    /// How long a command waits in all while its slot is half migrated (TRYAGAIN) before the reply is given up.
    private let maxTryAgainMilliseconds = 2000
    /// ASK redirections followed by one command.
    private let maxAsks = 100

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

    /// Reads the slot map from the first node that answers: the known masters first, then the seeds.
    public func refresh() async throws {
        var lastError: (any Error)?
        for address in Array(Set(masters + seeds)).sorted() {
            do {
                let reply = try await node(address).command("CLUSTER", "SLOTS")
                apply(slots: reply)
                return
            } catch {
                lastError = error
            }
        }
        throw lastError ?? RedisError(.connectionFailed, "no Redis Cluster node to read the slot map from")
    }

    /// Sends a command to the master of `routingKey`'s slot, following redirections. Error replies other than
    /// redirections come back as `.error`, as with `RedisClient.send`.
    public func send(_ arguments: [String], routingKey: String) async throws -> RedisValue {
        let slot = HashSlot.of(routingKey)
        if state.withLockedValue({ $0.owners[slot].isEmpty }) { try await refresh() }
        var target = state.withLockedValue { $0.owners[slot] }
        var asking = false
        var redirected = 0
        var asked = 0
        var waited = 0
        // MOVED counts toward `maxRedirects`; ASK does not (while a slot migrates, ASK and TRYAGAIN alternate until
        // it has moved, bounded by the TRYAGAIN wait), only toward a generous bound of its own.
        while redirected <= maxRedirects && asked <= maxAsks {
            let client = node(target)
            let reply = asking ? try await client.sendAsking(arguments) : try await client.send(arguments)
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
                try? await refresh()
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
        for client in state.withLockedValue({ Array($0.nodes.values) }) {
            await client.shutdown()
        }
    }

    /// `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replicas…], …]`; the first node of a range is its master.
    private func apply(slots reply: RedisValue) {
        var owners = [Address](repeating: "", count: HashSlot.count)
        for range in reply.array ?? [] {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].int, let end = fields[1].int,
                let master = fields[2].array, master.count >= 2, let host = master[0].text, let port = master[1].int,
                start >= 0, end < HashSlot.count, start <= end
            else { continue }
            let address = "\(host):\(port)"
            for slot in Int(start)...Int(end) { owners[slot] = address }
        }
        state.withLockedValue { $0.owners = owners }
    }
}
