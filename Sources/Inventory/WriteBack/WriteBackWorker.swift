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
    private let engine: InventoryEngine
    /// How the held streams are read: chosen once from the topology (`OutboxReaders.make`).
    private let reader: any OutboxReader
    private let redis: any RedisRouter
    private let journal: JournalRepository
    private let keys: KeyLayout
    private let configuration: WriteBackConfiguration
    private let logger: Logger
    private let statsBox = NIOLockedValueBox(WriteBackStats())
    private let stopping = NIOLockedValueBox(false)
    /// The streams this worker holds the lease of, and so reads (see `refreshLeases`).
    private let owned = NIOLockedValueBox<[String]>([])
    /// How long a stream's lease lasts without renewal; a worker renews its leases every second.
    static let leaseMilliseconds = 10_000

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
        self.reader = OutboxReaders.make(
            keys: keys, redis: redis, readerConfiguration: readerConfiguration, configuration: configuration, logger: logger
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
    public var streams: [String] { owned.withLockedValue { $0 } }

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
        for stream in owned.withLockedValue({ $0 }) { _ = try? await runLease(stream, acquire: false) }
        owned.withLockedValue { $0 = [] }
        _ = try? await redis.command("ZREM", keys.prefix + ":workers", configuration.consumer)
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
        var prefetched: Task<[OutboxEntry], any Error>?
        defer { prefetched?.cancel() }
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
                    lastLease = ContinuousClock.now
                    let taken = try await timed(\.leaseMilliseconds) { try await refreshLeases(mayRelease: !readOwnPending) }
                    if taken { readOwnPending = true }
                }
                if ContinuousClock.now - lastCheck >= .seconds(1) {
                    lastCheck = ContinuousClock.now
                    try await timed(\.checkMilliseconds) { try await checkWentBack() }
                }
                if ContinuousClock.now - lastClaim > .milliseconds(configuration.claimIdleMilliseconds / 2) {
                    lastClaim = ContinuousClock.now
                    if try await claimAbandoned() > 0 { readOwnPending = true }
                }
                let entries: [OutboxEntry]
                if let next = prefetched {
                    prefetched = nil
                    entries = try await next.value
                } else {
                    entries = try await read(pending: readOwnPending)
                }
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
                // the retry reads them back with the batch in hand (same connection, so after this read).
                if !readOwnPending && !shouldStop && ContinuousClock.now - (lastLease ?? .now) < .milliseconds(900) {
                    prefetched = Task { try await self.read(pending: false) }
                }
                try await process(entries)
                backoff = 50
            } catch {
                if let next = prefetched {
                    prefetched = nil
                    _ = await next.result
                }
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
    }

    /// Between batches, about once a second (and first thing): whether Redis went back in time where this worker's
    /// streams are (on a single Redis: anywhere), their drain marks below MySQL's, so that a Redis restored from an
    /// older snapshot is found out before the next batch of its shard, and forgotten there
    /// (`BatchFences.forgetWentBack`).
    private func checkWentBack() async throws {
        let own = owned.withLockedValue { $0 }.map { KeyLayout.drainMark(ofStream: $0) }
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
                    "leaseMs": "\(Int(stats.leaseMilliseconds))", "checkMs": "\(Int(stats.checkMilliseconds))",
                ]
            )
        }
        return (now, stats.events)
    }

    private func createGroups() async throws {
        for stream in keys.outboxes {
            let reply = try await redis.send(
                ["XGROUP", "CREATE", stream, configuration.group, "0", "MKSTREAM"], routingKey: stream
            )
            guard let message = reply.errorMessage, !message.hasPrefix("BUSYGROUP") else { continue }
            // Refused while Redis is full (MKSTREAM may grow it), whether or not the group is there: fine when it is,
            // or when the stream is not there either (nothing to read; its first XADD waits for room too).
            if RedisError.outOfMemory(message) {
                let groups = try await redis.send(["XINFO", "GROUPS", stream], routingKey: stream)
                let there = (groups.array ?? []).contains { ($0.array ?? []).contains(.string(configuration.group)) }
                if there || groups.errorMessage?.contains("no such key") == true { continue }
            }
            throw RedisError(.server, "XGROUP CREATE \(stream): \(message)")
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

    private func read(pending: Bool) async throws -> [OutboxEntry] {
        let started = ContinuousClock.now
        defer {
            let elapsed = Self.milliseconds(ContinuousClock.now - started)
            statsBox.withLockedValue { $0.readMilliseconds += elapsed }
        }
        do {
            return try await reader.read(owned.withLockedValue { $0 }, pending: pending, count: configuration.batchSize)
        } catch let missing as OutboxGroupMissing {
            try await createGroups()
            throw RedisError(.server, missing.message)
        }
    }

    /// Several workers share the outbox stream by stream: each stream is read by the one worker holding its lease
    /// (`prefix:{sN}:outbox:lease`, in the stream's slot), so one stream's entries, and with them one order's
    /// events, are applied in their order (two workers splitting a stream could commit a confirm before the
    /// reserve it confirms, and the confirm would find no row). Workers say they are alive in `prefix:workers`; each
    /// holds about streams / workers leases, renews its own, takes free ones up to that share and gives back what is
    /// above it. A stream taken over from a worker that stopped renewing comes with that worker's pending entries,
    /// claimed at once and applied first. Returns true when this worker took streams over.
    private func refreshLeases(mayRelease: Bool) async throws -> Bool {
        let now = InventoryEngine.nowMilliseconds()
        let ttl = Self.leaseMilliseconds
        let members = keys.prefix + ":workers"
        // Refused while Redis is full (a ZADD may grow it): the registry keeps this worker's last entry meanwhile, and
        // the leases below are renewed all the same (lua/lease.lua runs when Redis is full).
        let registered = try await redis.send(["ZADD", members, String(now), configuration.consumer], routingKey: members)
        if let message = registered.errorMessage, !RedisError.outOfMemory(message) {
            throw RedisError(.server, "ZADD \(members): \(message)")
        }
        _ = try await redis.command("ZREMRANGEBYSCORE", members, "-inf", String(now - Int64(ttl)))
        let workers = max(1, Int(try await redis.command("ZCARD", members).int ?? 1))
        let share = (keys.outboxes.count + workers - 1) / workers
        // Each stream's lease read, and the held ones renewed, all at once: one after another they were ~35 round
        // trips, a pause of 20-70 ms every second on a loaded machine, which every event arriving meanwhile waited for.
        let holders = try await concurrently(keys.outboxes) { stream in
            try await self.redis.command("GET", KeyLayout.streamLease(stream)).text
        }
        var held: [String] = []
        var free: [String] = []
        for (stream, holder) in zip(keys.outboxes, holders) {
            if holder == configuration.consumer { held.append(stream) } else if holder == nil { free.append(stream) }
        }
        // Above the share: give back (only between batches with nothing pending here).
        while held.count > share, mayRelease, let stream = held.popLast() {
            _ = try await runLease(stream, acquire: false)
        }
        let renewed = try await concurrently(held) { stream in try await self.runLease(stream, acquire: true) }
        let kept = zip(held, renewed).filter(\.1).map(\.0)
        var taken: [String] = []
        for stream in free.shuffled() where kept.count + taken.count < share {
            if try await runLease(stream, acquire: true) { taken.append(stream) }
        }
        for stream in taken {
            // Whatever a stopped worker had read of it is applied before anything newer.
            _ = try await redis.send(
                [
                    "XAUTOCLAIM", stream, configuration.group, configuration.consumer, "0", "0", "COUNT", "100000",
                    "JUSTID",
                ], routingKey: stream
            )
        }
        let streams = (kept + taken).sorted()
        owned.withLockedValue { $0 = streams }
        if !taken.isEmpty {
            logger.info("outbox streams taken", metadata: ["streams": "\(taken.count)", "held": "\(streams.count)", "workers": "\(workers)"])
        }
        return !taken.isEmpty
    }

    /// `body` of each element at once; the results in the elements' order.
    private func concurrently<T: Sendable>(
        _ elements: [String], _ body: @escaping @Sendable (String) async throws -> T
    ) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for (index, element) in elements.enumerated() {
                group.addTask { (index, try await body(element)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Takes or renews (`acquire`) or gives back a stream's lease (lua/lease.lua); true when this worker holds it
    /// afterwards.
    private func runLease(_ stream: String, acquire: Bool) async throws -> Bool {
        let key = KeyLayout.streamLease(stream)
        let owner = configuration.consumer
        return try await engine.run(
            acquire ? LeaseCall(key: key, owner: owner, milliseconds: Self.leaseMilliseconds) : .giveBack(key: key, owner: owner)
        )
    }

    /// Takes over entries another consumer read and never acknowledged (it crashed).
    private func claimAbandoned() async throws -> Int {
        var claimed = 0
        for stream in owned.withLockedValue({ $0 }) {
            let reply = try await redis.send(
                [
                    "XAUTOCLAIM", stream, configuration.group, configuration.consumer,
                    String(configuration.claimIdleMilliseconds), "0", "COUNT", String(configuration.batchSize), "JUSTID",
                ], routingKey: stream
            )
            claimed += reply.array?[safe: 1]?.array?.count ?? 0
        }
        if claimed > 0 {
            logger.warning("took over outbox entries of a consumer that stopped", metadata: ["entries": "\(claimed)"])
        }
        return claimed
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
        var byStream: [String: [String]] = [:]
        for entry in entries { byStream[entry.stream, default: []].append(entry.id) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (stream, ids) in byStream {
                group.addTask { try await self.engine.acknowledge(stream: stream, group: self.configuration.group, ids: ids) }
            }
            try await group.waitForAll()
        }
        let acknowledged = clock.now
        InventoryMetrics.batchSize.record(entries.count)
        InventoryMetrics.eventsApplied.increment(by: events.count)
        InventoryMetrics.mysqlTimer("journal_batch").recordNanoseconds(Int64(Self.milliseconds(applied - start) * 1_000_000))
        for event in events where event.kind == .reserve && event.atMilliseconds > 0 {
            InventoryMetrics.journalLag.recordMilliseconds(committedAt - event.atMilliseconds)
        }
        statsBox.withLockedValue { stats in
            stats.applyMilliseconds += Self.milliseconds(applied - start)
            stats.settleMilliseconds += Self.milliseconds(settled - applied)
            stats.acknowledgeMilliseconds += Self.milliseconds(acknowledged - settled)
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
                eventId: event.id, earlierEventId: found.contains("") ? "" : first
            )
        }
    }
}
