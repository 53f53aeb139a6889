import Logging
import RedisClient

/// How the write-back worker reads the outbox streams it holds, chosen once from the topology (`make`).
protocol OutboxReader: Sendable {
    /// Entries of `streams` for this consumer, at most `count`: new ones, or (`pending`) the ones it read before
    /// and never acknowledged. Waits a while when there is nothing new.
    func read(_ streams: [String], pending: Bool, count: Int) async throws -> [OutboxEntry]
    /// Closes what the reader opened for itself.
    func shutdown() async
}

/// A stream's consumer group is missing (Redis lost it, or the stream went): the worker makes the groups again.
struct OutboxGroupMissing: Error {
    let message: String
}

enum OutboxReaders {
    /// A fenced read of every held stream, then a blocking wait for new entries, on a single Redis; stream by stream on
    /// a cluster.
    static func make(
        keys: KeyLayout, redis: any RedisRouter, scripts: InventoryScripts, owner: String,
        readerConfiguration: RedisConfiguration, configuration: WriteBackConfiguration, logger: Logger
    ) -> any OutboxReader {
        let fenced = FencedRead(
            runner: RedisScriptRunner(client: redis), scripts: scripts, owner: owner, configuration: configuration
        )
        if keys.clustered {
            return StreamByStreamReader(fenced: fenced, configuration: configuration)
        }
        var settings = readerConfiguration
        settings.connections = 1
        settings.commandTimeoutMilliseconds = max(
            readerConfiguration.commandTimeoutMilliseconds, Int64(configuration.blockMilliseconds) + 5000
        )
        return BlockingReader(
            fenced: fenced, connection: RedisClient(configuration: settings, logger: logger), configuration: configuration
        )
    }
}

/// The one way the worker reads the outbox (lua/outbox_read.lua): a stream is read only while its lease names this
/// worker, checked by Redis in the same step as the read, so a read that reaches Redis after the lease ran out (the
/// worker stalled, Redis slow) reads nothing of a stream another worker may hold by then.
struct FencedRead: Sendable {
    let runner: RedisScriptRunner
    let scripts: InventoryScripts
    /// The worker's lease owner (`WriteBackWorker.leaseOwner`).
    let owner: String
    let configuration: WriteBackConfiguration

    /// Up to `count` entries of each of `streams` (new ones, or this consumer's `pending` ones), and the streams read
    /// with nothing in them, each with the id of its last entry (to wait for newer ones from). A stream whose lease is
    /// not this worker's is left out of both; one whose group is missing throws `OutboxGroupMissing`.
    func read(_ streams: [String], pending: Bool, count: Int) async throws -> (entries: [OutboxEntry], idle: [(stream: String, last: String)]) {
        let call = OutboxReadCall(
            streams: streams, owner: owner, group: configuration.group, consumer: configuration.consumer, count: count,
            pending: pending
        )
        let replies = try await runner.run(call, of: scripts)
        guard replies.count == streams.count else { throw OutboxReadCall.unexpected(.integer(Int64(replies.count))) }
        var entries: [OutboxEntry] = []
        var idle: [(stream: String, last: String)] = []
        for (stream, reply) in zip(streams, replies) {
            switch reply {
            case .read(let read, let last):
                let before = entries.count
                for entry in OutboxEvent.entries(stream: stream, read) { entries.append((stream, entry.id, entry.event)) }
                if entries.count == before { idle.append((stream, last)) }
            case .lost: continue
            case .noGroup: throw OutboxGroupMissing(message: "outbox_read \(stream): NOGROUP")
            }
        }
        return (entries, idle)
    }
}

/// A single Redis: every held stream in one fenced read; when none has anything new, an XREAD that blocks until one
/// has (or `blockMilliseconds` pass), on a connection of its own (a blocking command would stall every command
/// pipelined behind it on a shared one), and the fenced read again.
struct BlockingReader: OutboxReader {
    let fenced: FencedRead
    let connection: RedisClient
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> [OutboxEntry] {
        guard !streams.isEmpty else {
            try await Task.sleep(for: .milliseconds(configuration.blockMilliseconds))
            return []
        }
        let first = try await fenced.read(streams, pending: pending, count: count)
        guard first.entries.isEmpty, !pending, !first.idle.isEmpty else { return first.entries }
        // XREAD only waits: it delivers nothing to the group, so it needs no fence.
        let wait = ["XREAD", "BLOCK", String(configuration.blockMilliseconds), "STREAMS"]
            + first.idle.map(\.stream) + first.idle.map(\.last)
        let woken = try await connection.send(wait)
        if let message = woken.errorMessage { throw RedisError(.server, "XREAD: \(message)") }
        guard woken.array != nil else { return [] }
        return try await fenced.read(streams, pending: false, count: count).entries
    }

    func shutdown() async { await connection.shutdown() }
}

/// Redis Cluster: a script's keys share one slot, and each shard's stream has its own, so every stream is read by
/// itself on its master; when all are empty the reader waits `blockMilliseconds` (at most 100 ms): a blocking read
/// would hold the connection the engine's commands to that master share.
struct StreamByStreamReader: OutboxReader {
    let fenced: FencedRead
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        // In a random order, so that busy streams early in the list do not starve the later ones.
        for stream in streams.shuffled() where entries.count < count {
            entries += try await fenced.read([stream], pending: pending, count: count - entries.count).entries
        }
        if entries.isEmpty && !pending {
            try await Task.sleep(for: .milliseconds(min(configuration.blockMilliseconds, 100)))
        }
        return entries
    }

    func shutdown() async {}
}
