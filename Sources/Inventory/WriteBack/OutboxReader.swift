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
    /// One blocking read of every held stream on a single Redis; stream by stream on a cluster.
    static func make(
        keys: KeyLayout, redis: any RedisRouter, readerConfiguration: RedisConfiguration,
        configuration: WriteBackConfiguration, logger: Logger
    ) -> any OutboxReader {
        if keys.clustered {
            return StreamByStreamReader(redis: redis, configuration: configuration)
        }
        var settings = readerConfiguration
        settings.connections = 1
        settings.commandTimeoutMilliseconds = max(
            readerConfiguration.commandTimeoutMilliseconds, Int64(configuration.blockMilliseconds) + 5000
        )
        return BlockingReader(connection: RedisClient(configuration: settings, logger: logger), configuration: configuration)
    }

    static func entries(of reply: RedisValue, stream fallback: String? = nil) -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        for streamReply in reply.array ?? [] {
            guard let parts = streamReply.array, parts.count > 1, let stream = fallback ?? parts.first?.text else { continue }
            for entry in OutboxEvent.entries(stream: stream, parts[1]) {
                entries.append((stream, entry.id, entry.event))
            }
        }
        return entries
    }
}

/// A single Redis: every held stream in one XREADGROUP that blocks for new entries, on a connection of its own (a
/// blocking read would stall every command pipelined behind it on a shared one).
struct BlockingReader: OutboxReader {
    let connection: RedisClient
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> [OutboxEntry] {
        guard !streams.isEmpty else {
            try await Task.sleep(for: .milliseconds(configuration.blockMilliseconds))
            return []
        }
        var command = ["XREADGROUP", "GROUP", configuration.group, configuration.consumer, "COUNT", String(count)]
        if !pending { command += ["BLOCK", String(configuration.blockMilliseconds)] }
        command.append("STREAMS")
        command += streams
        command += Array(repeating: pending ? "0" : ">", count: streams.count)
        let reply = try await connection.send(command)
        if let message = reply.errorMessage {
            if message.hasPrefix("NOGROUP") { throw OutboxGroupMissing(message: "XREADGROUP: \(message)") }
            throw RedisError(.server, "XREADGROUP: \(message)")
        }
        return OutboxReaders.entries(of: reply)
    }

    func shutdown() async { await connection.shutdown() }
}

/// Redis Cluster: one read can only name streams of one slot, and each shard's stream has its own, so every stream
/// is read by itself on its master, without blocking (a blocking read would hold the connection the engine's
/// commands to that master share); when all are empty the reader waits `blockMilliseconds` (at most 100 ms).
struct StreamByStreamReader: OutboxReader {
    let redis: any RedisRouter
    let configuration: WriteBackConfiguration

    func read(_ streams: [String], pending: Bool, count: Int) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        // In a random order, so that busy streams early in the list do not starve the later ones.
        for stream in streams.shuffled() where entries.count < count {
            let command = [
                "XREADGROUP", "GROUP", configuration.group, configuration.consumer, "COUNT",
                String(count - entries.count), "STREAMS", stream, pending ? "0" : ">",
            ]
            let reply = try await redis.send(command, routingKey: stream)
            if let message = reply.errorMessage {
                if message.hasPrefix("NOGROUP") { throw OutboxGroupMissing(message: "XREADGROUP \(stream): \(message)") }
                throw RedisError(.server, "XREADGROUP \(stream): \(message)")
            }
            entries += OutboxReaders.entries(of: reply, stream: stream)
        }
        if entries.isEmpty && !pending {
            try await Task.sleep(for: .milliseconds(min(configuration.blockMilliseconds, 100)))
        }
        return entries
    }

    func shutdown() async {}
}
