import RedisClient

/// The Redis side of a batch of outbox events the journal records (`BatchFences`): the items' epochs, read by
/// `epochs.lua` in chunks of 500 items, and the shards' drain marks (`drain_mark.lua`, migrations/0017).
struct RedisBatchFences: BatchFences {
    let stores: EngineStores

    private var keys: KeyLayout { stores.keys }

    func currentEpochs(_ items: [StockItemID]) async throws -> [StockItemID: ItemEpoch] {
        var epochs: [StockItemID: ItemEpoch] = [:]
        for group in keys.scriptGroups(items) {
            var offset = 0
            while offset < group.count {
                let chunk = group[offset..<min(offset + 500, group.count)]
                for (item, epoch) in zip(chunk, try await run(EpochsCall(chunk, layout: keys))) { epochs[item] = epoch }
                offset += chunk.count
            }
        }
        return epochs
    }

    func marks(checkedBeside marks: [String]) -> [String] {
        guard !keys.clustered else { return [] }
        let raised = Set(marks)
        return (0..<keys.shards).map { keys.drainMark(shard: $0) }.filter { !raised.contains($0) }
    }

    func raiseDrainMarks(_ raise: [String: Int64], checking check: [String: Int64]) async throws -> [String] {
        func sorted(_ counts: [String: Int64]) -> [(mark: String, seq: Int64)] {
            counts.sorted { $0.key < $1.key }.map { (mark: $0.key, seq: $0.value) }
        }
        // One call on a single Redis; on a cluster one per mark, each in its own shard's slot (nothing is checked
        // beside).
        let calls =
            keys.clustered
            ? sorted(raise).map { (raise: [$0], check: []) } + sorted(check).map { (raise: [], check: [$0]) }
            : [(raise: sorted(raise), check: sorted(check))]
        var behind: [String] = []
        for call in calls where !call.raise.isEmpty || !call.check.isEmpty {
            let marks = call.raise + call.check
            for position in try await run(DrainMarkCall(raise: call.raise, check: call.check)) {
                guard let (mark, seq) = marks[safe: position] else { continue }
                reportBehind(mark, mysql: seq)
                behind.append(mark)
            }
        }
        return behind
    }

    func marksBehind(_ counts: [String: Int64]) async throws -> [String] {
        try await raiseDrainMarks([:], checking: counts)
    }

    func forgetWentBack(_ marks: [String], counts: @Sendable ([String]) async throws -> [String: Int64]) async throws {
        let nodes = try await stores.forgetWentBack(marks)
        // Each forgotten node's marks, set to MySQL's counts (SET NX: another instance that forgot it too set the same).
        var reset: [String] = []
        for mark in (0..<keys.shards).map({ keys.drainMark(shard: $0) }) {
            let node = try await stores.redisCall { try await stores.redis.dataNode(holding: mark) }
            if nodes.contains(Self.address(node)) { reset.append(mark) }
        }
        for (mark, seq) in try await counts(reset) {
            _ = try await stores.redisCall { try await stores.redis.command("SET", mark, String(seq), "NX") }
        }
    }

    static func address(_ node: RedisClient) -> String { "\(node.configuration.host):\(node.configuration.port)" }

    private func reportBehind(_ mark: String, mysql seq: Int64) {
        stores.logger.critical(
            "Redis went back in time: its drain mark is below MySQL's (restored from an older snapshot, or a failover to a replica that was behind)",
            metadata: ["mark": "\(mark)", "mysql": "\(seq)"]
        )
    }

    /// Both scripts are safe to run again: a reply lost on the way is `unavailable`, and the batch rolls back.
    private func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply {
        do {
            return try await stores.run(call)
        } catch InventoryError.outcomeUnknown(let detail) {
            throw InventoryError.unavailable(detail)
        }
    }
}

extension EngineStores {
    /// Redis went back in time on the nodes holding `marks`: its items, orders, keys and markers there are older than
    /// what MySQL has recorded (an order confirmed since could expire there and give its units back twice; an item
    /// lacks holds the journal has). Everything of this deployment's key prefix on those nodes is deleted but the
    /// outbox streams, whose events not yet in the journal are still to be recorded (those recorded already are
    /// recorded again, idempotently): as after a data loss, items are rebuilt from MySQL on first use (applying their
    /// events still in the streams first), orders restored from the journal, and with the generation marker gone a
    /// reserve of an order Redis does not know asks the journal first, for one retention period (README "What may
    /// vanish"). Concurrent scripts meet keys vanishing one by one, which each handles.
    /// Returns the nodes forgotten (`RedisBatchFences.address`).
    @discardableResult
    func forgetWentBack(_ marks: [String]) async throws -> Set<String> {
        var seen: Set<String> = []
        for mark in marks {
            let node = try await redisCall { try await redis.dataNode(holding: mark) }
            guard seen.insert(RedisBatchFences.address(node)).inserted else { continue }
            var deleted = 0
            try await redisCall {
                try await node.scanKeys(matching: KeyLayout.globEscaped(keys.prefix) + ":*") { page in
                    let doomed = page.filter { !keys.isOutbox($0) }
                    // (On a cluster one key per command: the keys of a page are in different slots.)
                    for group in keys.clustered ? doomed.map({ [$0] }) : (doomed.isEmpty ? [] : [doomed]) {
                        if case .error(let message) = try await node.send(["UNLINK"] + group) {
                            throw RedisError(.server, message)
                        }
                    }
                    deleted += doomed.count
                }
            }
            InventoryMetrics.redisWentBack()
            logger.critical(
                "Redis went back in time: its keys were deleted but the outbox streams; items are rebuilt from MySQL, orders restored from the journal",
                metadata: ["node": "\(RedisBatchFences.address(node))", "deleted": "\(deleted)"]
            )
        }
        return seen
    }
}
