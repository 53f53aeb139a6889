import RedisClient

/// Whether the outbox streams kept every event they were given: the premise on which a rebuild counts the holds of
/// earlier epochs (init_item.lua). A stream deleted alone loses its events, and the next XADD makes it anew, empty;
/// nothing in the stream tells. Its consumer groups go with it, though: each stream carries a group that never reads,
/// `intact-since`, whose last-delivered-id is the Redis time (ms) it was made. A rebuild absorbs only epochs that
/// began after that time on every stream the item's events go to, and makes the group where it is missing.
extension InventoryEngine {
    /// The group's name, as init_item.lua reads it.
    static let intactSinceGroup = "intact-since"

    /// Gives every outbox stream that lacks it the `intact-since` group, dated now (at start: the streams as they
    /// are now are the ones the service writes from here on).
    func markOutboxesIntact() async {
        for stream in keys.outboxes {
            do {
                let now = try await redisNow(routingKey: stream)
                let reply = try await redisCall {
                    try await self.redis.send(
                        ["XGROUP", "CREATE", stream, Self.intactSinceGroup, "\(now)-0", "MKSTREAM"], routingKey: stream
                    )
                }
                if let message = reply.errorMessage, !message.hasPrefix("BUSYGROUP") {
                    throw RedisError(.server, "XGROUP CREATE \(stream): \(message)")
                }
            } catch {
                logger.warning(
                    "outbox stream not marked at start; the first rebuild of an item marks it",
                    metadata: ["stream": "\(stream)", "error": "\(error)"]
                )
                return
            }
        }
    }
}
