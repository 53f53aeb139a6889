import Dispatch
import Logging
import Metrics
import MySQLClient
import RedisClient

/// What the engine and its collaborators run on: Redis and the scripts, the key layout and the settings, and the one
/// way to run a script, to read Redis's clock, to read an outbox stream and to turn a store's failure into an
/// `InventoryError`.
struct EngineStores: Sendable {
    let configuration: EngineConfiguration
    let redis: any RedisRouter
    let runner: RedisScriptRunner
    let scripts: InventoryScripts
    let logger: Logger
    /// One timer per script, made here so the reserve path does not look one up under a lock on every call.
    let scriptTimers: [String: Timer]
    /// What this instance knows MySQL recorded of each shard's drain mark (`DrainFloors`).
    let floors: DrainFloors
    /// Which outbox entries name which order or move which item, read incrementally (`pendingEvents(of:in:)`).
    let outboxIndex = OutboxIndex()

    var keys: KeyLayout { configuration.keys }

    init(configuration: EngineConfiguration, redis: any RedisRouter, scripts: InventoryScripts, logger: Logger) {
        self.configuration = configuration
        self.redis = redis
        self.runner = RedisScriptRunner(client: redis)
        self.scripts = scripts
        self.logger = logger
        self.scriptTimers = Dictionary(uniqueKeysWithValues: scripts.all.map { ($0.name, InventoryMetrics.scriptTimer($0.name)) })
        self.floors = DrainFloors(keys: configuration.keys)
    }

    /// The items' epochs as Redis has them now (lua/epochs.lua), for applying outbox events through the epoch fence.
    var batchFences: RedisBatchFences { RedisBatchFences(stores: self) }

    /// Runs one call of a script and decodes its reply (Scripts/: one typed call per script).
    func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply {
        try Call.decode(
            try await runScript(scripts[Call.name], keys: call.keys, arguments: call.arguments, drainMark: call.drainMark)
        )
    }

    /// Runs a script; with `drainMark`, a drain mark (`DrainFloors.fence`) and this instance's floor of it go last
    /// (lua/lib/floor.lua), and a script that finds Redis behind the floor runs again once the marks are checked and
    /// Redis forgotten where it went back (`DrainFloors.settle`; MySQL unreachable, or the check not done within
    /// `EngineConfiguration.drainCheckWaitMilliseconds`: `unavailable`).
    func runScript(_ script: RedisScript, keys: [String], arguments: [String], drainMark: String? = nil) async throws
        -> RedisValue
    {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            (scriptTimers[script.name] ?? InventoryMetrics.scriptTimer(script.name))
                .recordNanoseconds(InventoryMetrics.since(start))
        }
        guard let drainMark else {
            return try await redisCall { try await runner.run(script, keys: keys, arguments: arguments) }
        }
        var keys = keys
        keys.append("")
        var arguments = arguments
        arguments.append("")
        for _ in 0..<3 {
            let fence = floors.fence(for: drainMark)
            keys[keys.count - 1] = fence.key
            arguments[arguments.count - 1] = String(fence.floor)
            let reply = try await redisCall { try await runner.run(script, keys: keys, arguments: arguments) }
            guard reply.array?.first?.text == "behind" else { return reply }
            do {
                try await floors.settle(self, within: .milliseconds(configuration.drainCheckWaitMilliseconds))
            } catch {
                throw mapMySQL(error)
            }
        }
        throw InventoryError.unavailable("\(script.name): Redis stayed behind MySQL's drain marks; retry")
    }

    /// Runs `body` against Redis; a Redis failure is `unavailable` (503), or `outcomeUnknown` when the command may
    /// have run.
    func redisCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            InventoryMetrics.redisError()
            if error.outcomeUnknown { throw InventoryError.outcomeUnknown("Redis: \(error.message)") }
            // Refused before any write (Redis's OOM check, or lib/full.lua's in a script that settles holds).
            if error.outOfMemory {
                InventoryMetrics.redisFullRefusals.increment()
                throw Self.redisFull(error.message)
            }
            throw InventoryError.unavailable("Redis: \(error.message)")
        }
    }

    /// The answer to what Redis refused for memory (`detail`: its words).
    static func redisFull(_ detail: String) -> InventoryError {
        .unavailable(
            "Redis is full (used memory above maxmemory): new holds and records wait for room, while confirms, "
                + "cancels, refunds and the write-back still run (\(detail))"
        )
    }

    /// A MySQL failure as the caller answers it: `outcomeUnknown` when a COMMIT got no answer (the change may be in
    /// MySQL: "nothing was changed" would be a lie), else `unavailable`.
    func mapMySQL(_ error: any Error) -> InventoryError {
        if let error = error as? InventoryError { return error }
        // (Slow, not failed: no MySQL error counted.)
        if error is StockRepository.PastDeadline || error is StockRepository.HalfGone { return .unavailable("\(error)") }
        if error is StockRepository.OneTimePool { return CodePoolAdministration.oneTimeStock }
        InventoryMetrics.mysqlError()
        if (error as? MySQLError)?.code == .commitOutcomeUnknown || error is JournalCommitOutcomeUnknown {
            return .outcomeUnknown("MySQL: \(error)")
        }
        return .unavailable("MySQL: \(error)")
    }

    /// Redis's clock (Unix ms), read on the node of `routingKey`: the one clock every instance shares, for the
    /// decisions made outside a script (is a hold due, which per-user window is current).
    func redisNow(routingKey: String? = nil) async throws -> Int64 {
        let reply = try await redisCall {
            try await redis.send(["TIME"], routingKey: routingKey ?? keys.expiryIndexes[0])
        }
        let parts = (reply.array ?? []).compactMap { $0.text.flatMap { Int64($0) } }
        guard parts.count == 2 else { throw InventoryError.unavailable("Redis TIME answered \(reply)") }
        return parts[0] * 1000 + parts[1] / 1000
    }

    /// The events of `subject` (an order, by its Redis name, or an item) still in `stream`, not yet acknowledged
    /// (acknowledged ones are deleted: they are in the journal), in stream order: found through `outboxIndex`, which
    /// reads each entry of the stream once, then read by their ids, a page of 1,000 in one step (lua/outbox_entries.lua).
    /// A reserve and the undo acknowledged with it are read both or neither: within a page by the script; across pages,
    /// the entries of the earlier pages are checked still there once the last page is read (a reserve still there then
    /// had its undo, if any, read after it).
    func pendingEvents(of subject: OutboxSubject, in stream: String) async throws -> [OutboxEvent] {
        let ids = try await redisCall { try await outboxIndex.entries(of: subject, in: stream, redis: redis) }
        let read = { (ids: [StreamEntryID]) async throws -> [(id: String, event: OutboxEvent?)] in
            let entries = OutboxEvent.entries(stream: stream, try await self.run(OutboxEntriesCall(stream: stream, ids: ids)))
            self.outboxIndex.entriesRead.withLockedValue { $0 += entries.count }
            return entries
        }
        let page = 1000
        var entries: [(id: String, event: OutboxEvent?)] = []
        for start in stride(from: 0, to: ids.count, by: page) {
            entries += try await read(Array(ids[start..<min(start + page, ids.count)]))
        }
        if ids.count > page {
            let earlier = ids.count - (ids.count - 1) % page - 1
            let checked = Set(try await read(Array(ids[..<earlier])).map(\.id))
            let lastPage = Set(ids[earlier...].map(\.description))
            entries = entries.filter { lastPage.contains($0.id) || checked.contains($0.id) }
        }
        return entries.compactMap(\.event).filter { OutboxSubject.subjects(of: $0).contains(subject) }
    }
}

/// A collaborator of the engine: it runs on the engine's `stores`, and reads the layout and settings from them.
protocol EngineCollaborator {
    var stores: EngineStores { get }
}

extension EngineCollaborator {
    var keys: KeyLayout { stores.keys }
    var configuration: EngineConfiguration { stores.configuration }
}
