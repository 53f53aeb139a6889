import Foundation
import Logging
import NIOConcurrencyHelpers
import RedisClient
import ServiceLifecycle

/// Applies the outbox to MySQL: reads every shard's stream through a consumer group (at-least-once), applies a
/// batch in one transaction (idempotent, see `JournalRepository.apply`), then settles Redis (duplicates taken
/// back, applied confirms and refunds no longer counted as in flight) and only then acknowledges and deletes the
/// entries. While MySQL is down it retries the same batch with backoff; nothing is acknowledged before commit.
public final class WriteBackWorker: Service, Sendable {
    let engine: InventoryEngine
    /// How the held streams are read: chosen once from the topology (`OutboxReaders.make`).
    private let reader: any OutboxReader
    let redis: any RedisRouter
    /// Runs the worker's scripts on `redis`: its claims (lua/outbox_claim.lua), on a cluster its reads too.
    let runner: RedisScriptRunner
    private let journal: JournalRepository
    let keys: KeyLayout
    let configuration: WriteBackConfiguration
    let logger: Logger
    let statsBox = NIOLockedValueBox(WriteBackStats())
    private let stopping = NIOLockedValueBox(false)
    /// The streams this worker holds the leases of, and which of them it reads until when (see `refreshLeases`).
    let held = NIOLockedValueBox(HeldStreams())
    /// Who holds this worker's leases and stands for it in `prefix:workers`: the consumer name and a number of this
    /// worker's own, so that two processes given one consumer name never both think a lease is theirs (a worker that
    /// restarts waits for its former leases to run out, then takes them over like any other).
    let leaseOwner: String

    /// - Parameters:
    ///   - redis: the shared client, for scripts and acknowledgements.
    ///   - readerConfiguration: where Redis is; the worker opens its own connection for blocking reads, which
    ///     would otherwise stall every command pipelined behind them.
    public init(
        engine: InventoryEngine,
        redis: any RedisRouter,
        readerConfiguration: RedisConfiguration,
        journal: JournalRepository,
        keys: KeyLayout,
        configuration: WriteBackConfiguration = WriteBackConfiguration(),
        logger: Logger
    ) {
        self.engine = engine
        let leaseOwner = configuration.consumer + "#" + String(UInt64.random(in: 1...UInt64.max), radix: 36)
        self.leaseOwner = leaseOwner
        let runner = RedisScriptRunner(client: redis)
        self.runner = runner
        self.reader = OutboxReaders.make(
            keys: keys, runner: runner, scripts: engine.scripts, owner: leaseOwner, readerConfiguration: readerConfiguration,
            configuration: configuration, logger: logger
        )
        self.redis = redis
        self.journal = journal
        self.keys = keys
        self.configuration = configuration
        self.logger = logger
    }

    /// A copy of the counters.
    public var stats: WriteBackStats { statsBox.withLockedValue { $0 } }

    /// The outbox streams this worker reads now (it holds their leases).
    public var streams: [String] { held.withLockedValue { $0.readable() } }

    /// Recent journal lag and throughput, for the status page.
    public var progress: WriteBackProgress {
        statsBox.withLockedValue { stats in
            let sample = stats.previousLagMilliseconds + stats.recentLagMilliseconds
            return WriteBackProgress(
                lagP50Milliseconds: WriteBackStats.percentile(50, of: sample),
                lagP99Milliseconds: WriteBackStats.percentile(99, of: sample), eventsPerSecond: stats.rate.perSecond()
            )
        }
    }

    /// Runs until graceful shutdown (or cancellation), finishing the batch in hand first.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.loop()
        } onGracefulShutdown: {
            self.stop()
        }
        // The batch in hand is applied: the streams go back at once, not when their leases run out.
        for stream in held.withLockedValue({ $0.leased }) { _ = try? await runLease(stream, acquire: false) }
        held.withLockedValue { $0 = HeldStreams() }
        _ = try? await redis.command("ZREM", keys.prefix + ":workers", leaseOwner)
        await reader.shutdown()
    }

    /// Asks the loop to stop after the batch in hand.
    public func stop() {
        stopping.withLockedValue { $0 = true }
    }

    private var shouldStop: Bool { stopping.withLockedValue { $0 } || Task.isCancelled }

    private func loop() async throws {
        statsBox.withLockedValue { $0.rate = EventRate() }
        var groupsReady = false
        // Entries this consumer read before a crash come first ("0"), then new ones (">").
        var readOwnPending = true
        var lastClaim = ContinuousClock.now
        var lastGauge = ContinuousClock.now
        // (In the past: the first pass checks the drain marks at once.)
        var lastCheck = ContinuousClock.now - .seconds(2)
        var lastLease: ContinuousClock.Instant?
        var lastReport = (at: ContinuousClock.now, events: 0)
        var backoff = 50
        // The next batch of new entries, read while the one in hand is applied.
        var prefetched: Task<[OutboxEntry]?, any Error>?
        defer { prefetched?.cancel() }
        // The acknowledgement of the batch before, sent while this one is applied (one at a time). Awaited before
        // anything that must not see those entries still pending here: a lease given up (its next holder would
        // claim and apply them again), a read of this consumer's pending entries, the end.
        var acknowledging: Task<Void, any Error>?
        func acknowledged() async throws {
            guard let task = acknowledging else { return }
            acknowledging = nil
            try await task.value
        }
        // A batch read ahead is applied before stopping: left unapplied, its entries would wait as this consumer's
        // pending entries until it restarts (or another worker claims them).
        while !shouldStop || prefetched != nil {
            if ContinuousClock.now - lastReport.at >= .seconds(10) {
                lastReport = report(since: lastReport)
            }
            do {
                if !groupsReady {
                    try await createGroups()
                    groupsReady = true
                }
                // Leases change between batches only: with nothing read ahead and nothing of this worker's left
                // pending, so a stream given up has no entry of it held here.
                if prefetched == nil, lastLease.map({ ContinuousClock.now - $0 >= .seconds(1) }) ?? true {
                    try await acknowledged()
                    lastLease = ContinuousClock.now
                    let taken = try await timed(\.leaseRefreshMilliseconds) { try await refreshLeases(mayRelease: !readOwnPending) }
                    if taken { readOwnPending = true }
                }
                if ContinuousClock.now - lastCheck >= .seconds(1) {
                    lastCheck = ContinuousClock.now
                    try await timed(\.checkMilliseconds) { try await checkWentBack() }
                }
                // Like the refresh, only with nothing read ahead: entries claimed now are older than a batch read ahead.
                if prefetched == nil, ContinuousClock.now - lastClaim > .milliseconds(configuration.claimIdleMilliseconds / 2) {
                    lastClaim = ContinuousClock.now
                    if try await timed(\.claimMilliseconds, { try await claimAbandoned() }) > 0 { readOwnPending = true }
                }
                let read: [OutboxEntry]?
                if let next = prefetched {
                    prefetched = nil
                    read = try await next.value
                } else {
                    if readOwnPending { try await acknowledged() }
                    read = try await self.read(pending: readOwnPending)
                }
                // No stream readable now (none held, or their leases may have run out): what is pending here stays
                // to be read first once there is.
                guard let entries = read else { continue }
                if entries.isEmpty {
                    readOwnPending = false
                    if ContinuousClock.now - lastGauge > .seconds(1) {
                        lastGauge = ContinuousClock.now
                        InventoryMetrics.outboxEntries.record(try await engine.outboxLength())
                    }
                    continue
                }
                // Only new entries (">") are read ahead: re-reading this consumer's pending ones ("0") would return
                // the batch in hand. Read entries stay pending until acknowledged, so a failure below loses none:
                // the retry reads them back with the batch in hand (once the read ahead is done: the failure waits).
                if !readOwnPending && !shouldStop && ContinuousClock.now - (lastLease ?? .now) < .milliseconds(900) {
                    prefetched = Task { try await self.read(pending: false) }
                }
                try await process(entries)
                try await acknowledged()
                acknowledging = Task { try await self.acknowledge(entries) }
                backoff = 50
            } catch {
                if let next = prefetched {
                    prefetched = nil
                    _ = await next.result
                }
                // What it left pending is read again below.
                try? await acknowledged()
                statsBox.withLockedValue { $0.failedAttempts += 1 }
                logger.warning(
                    "write-back batch failed; retrying",
                    metadata: ["error": "\(error)", "backoffMs": "\(backoff)"]
                )
                readOwnPending = true
                try? await Task.sleep(for: .milliseconds(backoff))
                backoff = min(backoff * 2, configuration.maxBackoffMilliseconds)
            }
        }
        // The last batch's (one that fails leaves its entries pending on this consumer: whoever holds the stream next
        // claims and applies them again, which changes nothing).
        try? await acknowledged()
    }

    /// Between batches, about once a second (and first thing): whether Redis went back in time where this worker's
    /// streams are (on a single Redis: anywhere), their drain marks below MySQL's, so that a Redis restored from an
    /// older snapshot is found out before the next batch of its shard, and forgotten there
    /// (`BatchFences.forgetWentBack`).
    private func checkWentBack() async throws {
        let own = held.withLockedValue { $0.leased }.map { KeyLayout.drainMark(ofStream: $0) }
        try await engine.forgetIfWentBack(marks: own + engine.batchFences.marks(checkedBeside: own), journal: journal)
    }

    /// One structured log line of progress every 10 s while events flow: rate and journal lag.
    private func report(since last: (at: ContinuousClock.Instant, events: Int)) -> (at: ContinuousClock.Instant, events: Int) {
        let now = ContinuousClock.now
        let stats = statsBox.withLockedValue { stats in
            let copy = stats
            stats.previousLagMilliseconds = stats.recentLagMilliseconds
            stats.recentLagMilliseconds = []
            return copy
        }
        let applied = stats.events - last.events
        if applied > 0 {
            let seconds = Double((now - last.at).components.seconds) + Double((now - last.at).components.attoseconds) / 1e18
            logger.info(
                "write-back progress",
                metadata: [
                    "events": "\(applied)", "eventsPerSecond": "\(Int(Double(applied) / max(seconds, 0.001)))",
                    "lagP50Ms": "\(stats.lagPercentile(50) ?? 0)", "lagP99Ms": "\(stats.lagPercentile(99) ?? 0)",
                    "lagMaxMs": "\(stats.lagPercentile(100) ?? 0)", "batches": "\(stats.batches)",
                    "readMs": "\(Int(stats.readMilliseconds))", "applyMs": "\(Int(stats.applyMilliseconds))",
                    "settleMs": "\(Int(stats.settleMilliseconds))", "ackMs": "\(Int(stats.acknowledgeMilliseconds))",
                    "leaseMs": "\(Int(stats.leaseRefreshMilliseconds))", "checkMs": "\(Int(stats.checkMilliseconds))",
                    "claimMs": "\(Int(stats.claimMilliseconds))",
                ]
            )
        }
        return (now, stats.events)
    }

    /// Makes the group on every stream where it is missing (lua/outbox_group.lua, which runs when Redis is full: a
    /// stream a settling script made again while Redis is full, after Redis lost it, is written back all the same).
    private func createGroups() async throws {
        for stream in keys.outboxes {
            _ = try await engine.run(OutboxGroupCall(stream: stream, group: configuration.group))
        }
    }

    /// Runs `body`, adding the time it took to the counter at `counter` (whether it returned or threw).
    private func timed<T>(_ counter: WritableKeyPath<WriteBackStats, Double>, _ body: () async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        defer {
            let elapsed = Self.milliseconds(ContinuousClock.now - started)
            statsBox.withLockedValue { $0[keyPath: counter] += elapsed }
        }
        return try await body()
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    /// The next entries of the streams readable now; nil when none is (after a pause of `blockMilliseconds`, as an
    /// empty read would have taken).
    private func read(pending: Bool) async throws -> [OutboxEntry]? {
        let streams = held.withLockedValue { $0.readable() }
        guard !streams.isEmpty else {
            try await Task.sleep(for: .milliseconds(configuration.blockMilliseconds))
            return nil
        }
        let started = ContinuousClock.now
        defer {
            let elapsed = Self.milliseconds(ContinuousClock.now - started)
            statsBox.withLockedValue { $0.readMilliseconds += elapsed }
        }
        let read: OutboxRead
        do {
            read = try await reader.read(streams, pending: pending, count: configuration.batchSize)
        } catch let missing as OutboxGroupMissing {
            try await createGroups()
            throw RedisError(.server, missing.message)
        }
        if !read.lost.isEmpty {
            dropLost(read.lost)
            // Every stream lost and nothing read: as when none is readable (what is pending here stays to be read first).
            if read.lost.count == streams.count && read.entries.isEmpty { return nil }
        }
        return read.entries
    }

    private func process(_ entries: [OutboxEntry]) async throws {
        let clock = ContinuousClock()
        let events = Self.cancellingUndone(entries.compactMap(\.event))
        let start = clock.now
        let result = try await journal.apply(events, fences: engine.batchFences)
        let committedAt = InventoryEngine.nowMilliseconds()
        let applied = clock.now
        if !result.staleLines.isEmpty { reportStale(result.staleLines) }
        if !result.missingStockItems.isEmpty {
            logger.error(
                "confirm or refund lines of items MySQL has no stock row of: rows made at 0 and moved; reconcile them",
                metadata: ["items": "\(result.missingStockItems.prefix(20))"]
            )
        }
        try await settleRedis(events, result: result)
        let settled = clock.now
        InventoryMetrics.batchSize.record(entries.count)
        InventoryMetrics.eventsApplied.increment(by: events.count)
        InventoryMetrics.mysqlTimer("journal_batch").recordNanoseconds(Int64(Self.milliseconds(applied - start) * 1_000_000))
        for event in events where event.kind == .reserve && event.atMilliseconds > 0 {
            InventoryMetrics.journalLag.recordMilliseconds(committedAt - event.atMilliseconds)
        }
        statsBox.withLockedValue { stats in
            stats.applyMilliseconds += Self.milliseconds(applied - start)
            stats.settleMilliseconds += Self.milliseconds(settled - applied)
            stats.batches += 1
            stats.events += events.count
            stats.duplicates += result.duplicates.count
            stats.rate.record(events.count)
            for event in events where event.kind == .reserve && event.atMilliseconds > 0 {
                stats.recentLagMilliseconds.append(committedAt - event.atMilliseconds)
            }
            if stats.recentLagMilliseconds.count > 20_000 {
                stats.recentLagMilliseconds.removeFirst(stats.recentLagMilliseconds.count - 20_000)
            }
        }
    }

    /// Acknowledges (and deletes) a committed batch's entries, each stream's in one call, the streams at once.
    private func acknowledge(_ entries: [OutboxEntry]) async throws {
        var byStream: [String: [String]] = [:]
        for entry in entries { byStream[entry.stream, default: []].append(entry.id) }
        try await timed(\.acknowledgeMilliseconds) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (stream, ids) in byStream {
                    group.addTask { try await self.engine.acknowledge(stream: stream, group: self.configuration.group, ids: ids) }
                }
                try await group.waitForAll()
            }
        }
    }

    /// A reserve and its undo in the same batch: the reserve is left out (applying it would report it as a duplicate
    /// of the row its retry has since written); the undo stays, since the reserve's row may be in the journal already
    /// (a sync commit, or an earlier delivery) and must go (it removes only a RESERVED row of that reserve event).
    static func cancellingUndone(_ events: [OutboxEvent]) -> [OutboxEvent] {
        // Entry ids are unique within a stream only: two shards' streams hand out the same "ms-seq" all the time.
        // An undo is written to the stream of the reserve it undoes, so the pair is matched within a stream.
        func entry(_ stream: String, _ id: String) -> String { stream + "\u{0}" + id }
        let undone = Set(events.compactMap { event in
            event.kind == .undo ? event.reserveEventId.map { entry(event.stream, $0) } : nil
        })
        guard !undone.isEmpty else { return events }
        return events.filter { event in
            switch event.kind {
            case .reserve: return !undone.contains(entry(event.stream, event.id))
            default: return true
            }
        }
    }

    /// Lines Redis lost before they were committed: the item was rebuilt from MySQL without them, so they were
    /// left out (async mode's loss window; see README, "Durability").
    private func reportStale(_ lines: [StaleLine]) {
        InventoryMetrics.staleLines.increment(by: lines.count)
        for line in lines.prefix(100) {
            logger.error(
                "outbox line of an item Redis has rebuilt since; left out of the journal",
                metadata: [
                    "orderId": "\(line.orderId)", "item": "\(line.item)", "kind": "\(line.kind.rawValue)",
                    "quantity": "\(line.quantity)", "event": "\(line.eventId)",
                ]
            )
        }
    }

    /// After commit: confirm and refund lines stop counting as in flight; duplicate holds are taken back.
    private func settleRedis(_ events: [OutboxEvent], result: JournalBatchResult) async throws {
        let stale = Set(result.staleLines.map { "\($0.eventId)\u{0}\($0.item.skuId)" })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for event in events where event.kind == .confirm || event.kind == .refund {
                for line in event.lines where line.quantity > 0 && !stale.contains("\(event.id)\u{0}\(line.skuId)") {
                    group.addTask {
                        try await self.engine.markApplied(
                            StockItemID(bizId: event.bizId, skuId: line.skuId), orderId: event.orderId, kind: event.kind,
                            quantity: line.quantity, epoch: line.epoch
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        // The earlier reserve's hold is in the item only while its order was live when the duplicate was made: a
        // rebuild from the journal counted it, and the take-back of a settled order hands that one back
        // (undo_reserve.lua). An earlier order that had ended (confirmed, cancelled, expired: the retry came after its
        // keys' retention period) counts nothing in the item, so the take-back names no earlier event (it would give
        // the units back a second time). The journal decides that once per duplicate (`earlierHold`).
        // By line: on a cluster an order's parts are events of their own (each with its earlier event), in one batch.
        // (Almost every batch has none: nothing is looked up then.)
        guard !result.duplicates.isEmpty else { return }
        func line(_ bizId: String, _ orderId: String, _ skuId: UInt64) -> String { "\(bizId)\u{0}\(orderId)\u{0}\(skuId)" }
        let earlierHolds = Dictionary(
            result.duplicates.map { (line($0.bizId, $0.orderId, $0.skuId) + "\u{0}" + $0.eventId, $0.earlierHold) },
            uniquingKeysWith: { first, _ in first }
        )
        for event in events where event.kind == .reserve {
            // A part's lines share one earlier event; "" (an earlier order that had ended) wins.
            let found = event.lines.compactMap { earlierHolds[line(event.bizId, event.orderId, $0.skuId) + "\u{0}" + event.id] }
            guard let first = found.first else { continue }
            logger.error(
                "reservation duplicates a journal row of an earlier reserve; taking the new hold back",
                metadata: ["orderId": "\(event.orderId)", "event": "\(event.id)"]
            )
            await engine.undoReserve(
                orderId: event.orderId, bizId: event.bizId,
                lines: event.lines.map { ReservationLine(skuId: $0.skuId, requested: $0.quantity, reserved: $0.quantity) },
                eventId: event.id, earlierEventId: found.contains("") ? "" : first,
                epochs: event.lineEpochs
            )
        }
    }
}
