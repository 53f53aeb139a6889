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

    func itemMark(_ item: StockItemID) async throws -> String? {
        let key = keys.item(item)
        let fields = try await stores.redisCall {
            try await stores.redis.command("HMGET", key, "stock_num", "epoch", "repairs").array ?? []
        }
        guard fields.count == 3, fields[0].text != nil else { return nil }
        // As lib/fence.lua's itemMark writes it.
        return (fields[1].text ?? "") + "/" + (fields[2].text ?? "0")
    }

    func marks(checkedBeside marks: [String]) -> [String] {
        guard !keys.clustered else { return [] }
        let raised = Set(marks)
        return keys.drainMarks.filter { !raised.contains($0) }
    }

    func raiseDrainMarks(_ raise: [String: Int64], checking check: [String: Int64]) async throws -> [String: Int64] {
        func sorted(_ values: [String: Int64]) -> [(mark: String, seq: Int64)] {
            values.sorted { $0.key < $1.key }.map { (mark: $0.key, seq: $0.value) }
        }
        // One call on a single Redis; on a cluster one per mark, each in its own shard's slot.
        let calls =
            keys.clustered
            ? sorted(raise).map { (raise: [$0], check: []) } + sorted(check).map { (raise: [], check: [$0]) }
            : [(raise: sorted(raise), check: sorted(check))]
        var raised: [String: Int64] = [:]
        var behind: [String] = []
        for call in calls where !call.raise.isEmpty || !call.check.isEmpty {
            let marks = call.raise + call.check
            switch try await run(DrainMarkCall(raise: call.raise, check: call.check, sequence: keys.drainSequence)) {
            case .raised(let values):
                for (mark, value) in zip(call.raise, values) { raised[mark.mark] = value }
            case .behind(let positions):
                for position in positions {
                    guard let (mark, seq) = marks[safe: position] else { continue }
                    stores.logger.critical(
                        "Redis went back in time: its drain mark is below MySQL's (restored from an older snapshot, or a failover to a replica that was behind)",
                        metadata: ["mark": "\(mark)", "mysql": "\(seq)"]
                    )
                    behind.append(mark)
                }
            }
        }
        // (On a cluster the calls before raised their marks: harmless, as for a transaction that rolls back.)
        if !behind.isEmpty { throw RedisWentBack(marks: behind) }
        stores.floors.raise(raised)
        return raised
    }

    func marksBehind(_ values: [String: Int64]) async throws -> [String] {
        do {
            _ = try await raiseDrainMarks([:], checking: values)
            return []
        } catch let wentBack as RedisWentBack {
            return wentBack.marks
        }
    }

    func forgetWentBack(_ marks: [String], journal: JournalRepository) async throws {
        try await stores.forgetWentBack(marks)
        try await raiseToMySQL(keys.drainMarks, journal: journal)
    }

    /// Raises `marks` in Redis to MySQL's values, read with their rows locked: no transaction raises them meanwhile,
    /// and one that raised them before has committed its value by the time it is read here.
    func raiseToMySQL(_ marks: [String], journal: JournalRepository) async throws {
        try await journal.withLockedDrainMarks(marks) { values in
            // A single Redis's sequence first, to the highest of them: it stays at or above every mark throughout, so
            // no script takes the Redis being raised for one still behind.
            if let sequence = keys.drainSequence, let highest = values.values.max() {
                try await raise(sequence, to: highest)
            }
            for (mark, value) in values.sorted(by: { $0.key < $1.key }) { try await raise(mark, to: value) }
        }
    }

    /// Sets `key` to `value` when it is lower or missing (under the caller's locked mark rows: nothing else raises it),
    /// also when Redis is full (lua/raise_to.lua).
    private func raise(_ key: String, to value: Int64) async throws {
        _ = try await run(RaiseToCall(key: key, value: value))
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
    /// Whether Redis went back in time where the drain marks `marks` are, their values below MySQL's: forgotten there
    /// if so (`BatchFences.forgetWentBack`). Returns the marks found behind. The floors of `marks` are MySQL's values
    /// afterwards (`DrainFloors.reset`).
    func forgetIfWentBack(marks: [String], journal: JournalRepository) async throws -> [String] {
        let token = floors.token()
        let values = try await journal.drainMarkCounts(marks)
        let behind = try await batchFences.marksBehind(values)
        if !behind.isEmpty { try await batchFences.forgetWentBack(behind, journal: journal) }
        floors.reset(marks, to: values, since: token)
        return behind
    }

    /// Every shard's floor from MySQL's marks, read without a lock and without asking Redis (`DrainFloors`): what an
    /// instance's scripts check Redis against, whatever transactions of other instances recorded.
    func refreshFloors(journal: JournalRepository) async throws {
        let token = floors.token()
        floors.reset(keys.drainMarks, to: try await journal.drainMarkCounts(keys.drainMarks), since: token)
    }

    /// Redis went back in time (its drain marks `marks` below MySQL's): its items, orders, keys and markers are older
    /// than what MySQL has recorded (an order confirmed since could expire there and give its units back twice; an
    /// item lacks holds the journal has). Every key of this deployment's layout on every node is deleted but the outbox
    /// streams, whose events not yet in the journal are still to be recorded (those recorded already are recorded
    /// again, idempotently), the drain marks (raised to MySQL's afterwards by the caller: until then every check finds
    /// Redis behind again, so a forget cut short is done again) and the leases (workers, sweepers). Every node, not
    /// only those of `marks`: on a cluster an order's directory and its parts are on different nodes, and a node whose
    /// marks MySQL has not moved past since may have gone back too (a restore of the whole cluster). As after a data
    /// loss, items are rebuilt from MySQL on first use (applying their events still in the streams first), orders
    /// restored from the journal, and with the generation markers gone a reserve of an order Redis does not know asks
    /// the journal first, for one retention period (README "What may vanish"). Concurrent scripts meet keys vanishing
    /// one by one, which each handles.
    func forgetWentBack(_ marks: [String]) async throws {
        // By name: a client's id may end in ':lease' or ':drained' too.
        let kept = Set(
            (0..<keys.shards).flatMap { shard in
                [
                    keys.outbox(shard: shard), keys.drainMark(shard: shard), KeyLayout.streamLease(keys.outbox(shard: shard)),
                    keys.sweepLease(shard: shard),
                ]
            } + (keys.drainSequence.map { [$0] } ?? [])
        )
        for node in try await redisCall({ try await redis.dataNodes() }) {
            var deleted = 0
            try await redisCall {
                // The keys of the layout's hash tags (`prefix:{…`: not another deployment's whose prefix starts with
                // this one's), but the outbox streams, their drain marks and the leases.
                try await node.scanKeys(matching: KeyLayout.globEscaped(keys.prefix) + ":{*") { page in
                    let doomed = page.filter { !kept.contains($0) }
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
                metadata: ["node": "\(node.configuration.host):\(node.configuration.port)", "deleted": "\(deleted)", "behind": "\(marks)"]
            )
        }
    }
}
