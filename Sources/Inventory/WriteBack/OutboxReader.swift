import Logging
import RedisClient

/// How the write-back worker reads the outbox streams it holds, chosen once from the topology (`make`).
protocol OutboxReader: Sendable {
    /// Entries of `streams` for this consumer, at most `count` per stream: new ones, or (`pending`) the ones it read
    /// before and never acknowledged; and the streams whose leases turned out not to be the worker's. Waits a while
    /// when there is nothing new.
    func read(_ streams: [String], pending: Bool, count: Int) async throws -> OutboxRead
    /// Closes what the reader opened for itself.
    func shutdown() async
}

/// What one read of the outbox gave.
struct OutboxRead: Sendable {
    var entries: [OutboxEntry] = []
    /// Streams not read because their leases are not the worker's any more (run out, or another worker's).
    var lost: [String] = []
}

/// A stream's consumer group is missing (Redis lost it, or the stream went): the worker makes the groups again.
struct OutboxGroupMissing: Error {
    let message: String
}

enum OutboxReaders {
    /// A fenced read of every held stream, then a blocking wait for new entries, on a connection of the reader's own on
    /// a single Redis; stream by stream on a cluster, through `runner` (the worker's, on the shared client).
    static func make(
        keys: KeyLayout, runner: RedisScriptRunner, scripts: InventoryScripts, owner: String,
        readerConfiguration: RedisConfiguration, configuration: WriteBackConfiguration, logger: Logger
    ) -> any OutboxReader {
        if keys.clustered {
            let fenced = FencedRead(runner: runner, scripts: scripts, owner: owner, configuration: configuration)
            return StreamByStreamReader(fenced: fenced, configuration: configuration)
        }
        var settings = readerConfiguration
        settings.connections = 1
        settings.commandTimeoutMilliseconds = max(
            readerConfiguration.commandTimeoutMilliseconds, Int64(configuration.blockMilliseconds) + 5000
        )
        let connection = RedisClient(configuration: settings, logger: logger)
        let fenced = FencedRead(
            runner: RedisScriptRunner(client: connection), scripts: scripts, owner: owner, configuration: configuration
        )
        return BlockingReader(fenced: fenced, connection: connection, configuration: configuration)
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

    /// Up to `count` entries of each of `streams` (new ones, or this consumer's `pending` ones) and the streams not
    /// read for their leases; besides, the streams read with nothing in them, each with the id of its last entry (to
    /// wait for newer ones from). A stream whose group is missing throws `OutboxGroupMissing`.
    func read(_ streams: [String], pending: Bool, count: Int) async throws -> (read: OutboxRead, idle: [(stream: String, last: String)]) {
        let call = OutboxReadCall(
            streams: streams, owner: owner, group: configuration.group, consumer: configuration.consumer, count: count,
            pending: pending
        )
        let replies = try await runner.run(call, of: scripts)
        guard replies.count == streams.count else { throw OutboxReadCall.unexpected(.integer(Int64(replies.count))) }
        var read = OutboxRead()
        var idle: [(stream: String, last: String)] = []
        for (stream, reply) in zip(streams, replies) {
            switch reply {
            case .read(let entries, let last):
                let before = read.entries.count
                for entry in OutboxEvent.entries(stream: stream, entries) { read.entries.append((stream, entry.id, entry.event)) }
                if read.entries.count == before { idle.append((stream, last)) }
            case .lost: read.lost.append(stream)
            case .noGroup: throw OutboxGroupMissing(message: "outbox_read \(stream): NOGROUP")
            }
        }
        return (read, idle)
    }
}

/// A single Redis: every held stream in one fenced read; when none has anything new, an XREAD that blocks until one
/// has (or `blockMilliseconds` pass) and the fenced read again, all on a connection of the reader's own (a blocking
/// command, or a large batch, would stall every command pipelined behind it on a shared one).
struct BlockingReader: OutboxReader {
    let fenced: FencedRead
    let connection: RedisClient
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> OutboxRead {
        guard !streams.isEmpty else {
            try await Task.sleep(for: .milliseconds(configuration.blockMilliseconds))
            return OutboxRead()
        }
        let first = try await fenced.read(streams, pending: pending, count: count)
        guard first.read.entries.isEmpty, !pending, !first.idle.isEmpty else { return first.read }
        // XREAD only waits: it delivers nothing to the group, so it needs no fence. From the last entry each stream had
        // when the fenced read found nothing new: one appended since wakes it at once.
        let wait = ["XREAD", "COUNT", "1", "BLOCK", String(configuration.blockMilliseconds), "STREAMS"]
            + first.idle.map(\.stream) + first.idle.map(\.last)
        let woken = try await connection.send(wait)
        if let message = woken.errorMessage { throw RedisError(.server, "XREAD: \(message)") }
        guard woken.array != nil else { return first.read }
        var second = try await fenced.read(streams, pending: false, count: count).read
        second.lost = Array(Set(first.read.lost + second.lost)).sorted()
        return second
    }

    func shutdown() async { await connection.shutdown() }
}

/// Redis Cluster: a script's keys share one slot, and each shard's stream has its own, so every stream is read by
/// itself on its master; when all are empty the reader waits `blockMilliseconds` (at most 100 ms): a blocking read
/// would hold the connection the engine's commands to that master share.
struct StreamByStreamReader: OutboxReader {
    let fenced: FencedRead
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> OutboxRead {
        var read = OutboxRead()
        // In a random order, so that busy streams early in the list do not starve the later ones.
        for stream in streams.shuffled() where read.entries.count < count {
            let one = try await fenced.read([stream], pending: pending, count: count - read.entries.count).read
            read.entries += one.entries
            read.lost += one.lost
        }
        if read.entries.isEmpty && !pending && read.lost.count < streams.count {
            try await Task.sleep(for: .milliseconds(min(configuration.blockMilliseconds, 100)))
        }
        return read
    }

    func shutdown() async {}
}
