import Logging
import RedisClient

/// A Redis that came back from an older state than MySQL already has: restored from a stale snapshot, or a replica
/// promoted before it had everything. Its generation marker came back with it, so nothing else tells; the outbox's
/// drain marks do. The write-back worker records, per stream, the highest entry it committed in MySQL
/// (`outbox_drained`, in the batch's transaction) and in Redis (`…:drained`, by lua/ack.lua in the same step that
/// deletes the entries). An entry is deleted from its stream only by that script, so MySQL's entry missing from the
/// stream while Redis's mark is behind it means Redis lost what it had written after that state.
///
/// Redis is then treated as having lost data, which it did: its orders get the generation window, and its items,
/// whose counts are as stale as the rest, are dropped, to be rebuilt from MySQL on their next use (the init path
/// counts the journal's holds and what the outbox still has), as after any item that vanished.
extension InventoryEngine {
    /// Checks the drain marks of `streams` (the worker's, between its batches). A stream found behind opens its
    /// shard's generation window, as a lost marker does (for a retention period a reserve of an order Redis does not
    /// know asks the journal first, so a retry of an order MySQL has is answered from it, not held again), and its
    /// Redis mark is raised to MySQL's, so each loss is reported once. Returns the streams found behind.
    @discardableResult
    public func checkDrainMarks(streams: [String]) async throws -> [String] {
        let committed: [String: OutboxEntryID]
        do { committed = try await journal.drainMarks(streams: streams) } catch { throw mapMySQL(error) }
        var behind: [String] = []
        for stream in streams {
            guard let last = committed[stream] else { continue }
            // The entry first, then the mark: lua/ack.lua raises the mark and deletes the entry in one step, so an
            // entry found gone by a caller racing an acknowledgement is covered by the mark read after it.
            let entry = try await redisCall {
                try await self.redis.send(["XRANGE", stream, "\(last)", "\(last)"], routingKey: stream)
            }
            if !(entry.array ?? []).isEmpty { continue }
            let markKey = KeyLayout.drainMark(ofStream: stream)
            let mark = try await redisCall { try await self.redis.send(["GET", markKey], routingKey: markKey) }
            if let mark = mark.text.flatMap(OutboxEntryID.init), mark >= last { continue }
            let marker = KeyLayout.generation(ofStream: stream)
            let until = try await redisNow(routingKey: marker) + Int64(configuration.retentionSeconds) * 1000
            _ = try await redisCall { try await self.redis.send(["SET", marker, String(until)], routingKey: marker) }
            let dropped = try await dropItems(besideStream: stream)
            _ = try await redisCall { try await self.redis.send(["SET", markKey, "\(last)"], routingKey: markKey) }
            InventoryMetrics.redisWentBack.increment()
            logger.error(
                "Redis came back from an older state than MySQL has (a stale snapshot or replica): for one retention period a reserve of an order Redis does not know asks the journal first",
                metadata: [
                    "stream": "\(stream)", "mysqlDrained": "\(last)", "redisDrained": "\(mark.text ?? "none")",
                    "windowUntilMs": "\(until)", "itemsDropped": "\(dropped)",
                ]
            )
            behind.append(stream)
        }
        return behind
    }

    /// Deletes the item hashes that live where `stream` does (every item on a single Redis; the stream's shard's on a
    /// cluster, which the SCAN of the stream's node finds by their tag), each to be rebuilt on its next use. Returns
    /// how many.
    func dropItems(besideStream stream: String) async throws -> Int {
        let pattern = keys.itemPattern(besideStream: stream)
        var cursor = "0"
        var dropped = 0
        repeat {
            let page = try await redisCall {
                try await self.redis.send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"], routingKey: stream)
            }.array ?? []
            cursor = page.first?.text ?? "0"
            let found = (page[safe: 1]?.array ?? []).compactMap(\.text)
            for key in found {
                _ = try await redisCall { try await self.redis.send(["DEL", key], routingKey: key) }
            }
            dropped += found.count
        } while cursor != "0"
        return dropped
    }
}
