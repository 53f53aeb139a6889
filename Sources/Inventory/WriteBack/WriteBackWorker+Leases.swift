import RedisClient

/// The outbox streams a worker holds the leases of, and which of them it reads until when.
struct HeldStreams: Sendable {
    /// Streams whose lease this worker took or renewed in its last refresh (given back at shutdown).
    var leased: [String] = []
    /// Taken streams whose earlier holder's pending entries are not claimed yet: read once they are, so that nothing
    /// newer of the stream is applied before them.
    var unclaimed: Set<String> = []
    /// Refreshes in a row whose claim of an unclaimed stream failed, by stream.
    var claimFailures: [String: Int] = [:]
    /// Until when the leased streams may be read: the start of the last refresh that renewed their leases plus the
    /// leases' lifetime less a margin. A worker whose renewals keep failing stops reading before its leases can run out
    /// and another worker take its streams (two workers reading one stream apply its entries out of order).
    var readableUntil = ContinuousClock.now

    /// The streams to read at `now`: the leased ones but the unclaimed, none once the leases may have run out.
    func readable(at now: ContinuousClock.Instant = .now) -> [String] {
        now < readableUntil ? leased.filter { !unclaimed.contains($0) }.sorted() : []
    }

    /// Sets `leased`; what is known of streams no longer leased is dropped.
    mutating func lease(_ leased: [String]) {
        self.leased = leased
        unclaimed.formIntersection(leased)
        claimFailures = claimFailures.filter { unclaimed.contains($0.key) }
    }
}

extension WriteBackWorker {
    /// Several workers share the outbox stream by stream: each stream is read by the one worker holding its lease
    /// (`prefix:{sN}:outbox:lease`, in the stream's slot), so one stream's entries, and with them one order's
    /// events, are applied in their order (two workers splitting a stream could commit a confirm before the
    /// reserve it confirms, and the confirm would find no row). Workers say they are alive in `prefix:workers`; each
    /// holds about streams / workers leases, renews its own, takes free ones up to that share and gives back what is
    /// above it. A stream taken over from a worker that stopped renewing comes with that worker's pending entries,
    /// claimed before the stream is read (a claim that failed is tried again at the next refresh; the stream waits).
    /// Returns true when entries were claimed (this worker's pending entries are then read first).
    ///
    /// The leases are read, and the held ones renewed, all at once: a refresh runs between batches about once a
    /// second, and every event arriving meanwhile waits for it.
    func refreshLeases(mayRelease: Bool) async throws -> Bool {
        let started = ContinuousClock.now
        let now = InventoryEngine.nowMilliseconds()
        let ttl = configuration.leaseMilliseconds
        let members = keys.prefix + ":workers"
        // Refused while Redis is full (a ZADD may grow it): the registry keeps this worker's last entry meanwhile, and
        // the leases below are renewed all the same (lua/lease.lua runs when Redis is full).
        let registered = try await redis.send(["ZADD", members, String(now), leaseOwner], routingKey: members)
        if let message = registered.errorMessage, !RedisError.outOfMemory(message) {
            throw RedisError(.server, "ZADD \(members): \(message)")
        }
        _ = try await redis.command("ZREMRANGEBYSCORE", members, "-inf", String(now - Int64(ttl)))
        let workers = max(1, Int(try await redis.command("ZCARD", members).int ?? 1))
        let share = (keys.outboxes.count + workers - 1) / workers
        let holders = try await concurrently(keys.outboxes) { stream in
            try await self.redis.command("GET", KeyLayout.streamLease(stream)).text
        }
        var mine: [String] = []
        var free: [String] = []
        for (stream, holder) in zip(keys.outboxes, holders) {
            if holder == leaseOwner { mine.append(stream) } else if holder == nil { free.append(stream) }
        }
        // Above the share: given back (only between batches with nothing pending here), each out of what is read
        // before its lease goes.
        while mine.count > share, mayRelease, let stream = mine.popLast() {
            held.withLockedValue { $0.lease($0.leased.filter { $0 != stream }) }
            _ = try await runLease(stream, acquire: false)
        }
        let renewed = try await concurrently(mine) { stream in try await self.runLease(stream, acquire: true) }
        let kept = zip(mine, renewed).filter(\.1).map(\.0)
        // Every lease renewed was renewed after `started`: it lasts at least until `started + ttl`. A stream whose lease
        // names this worker but which it did not hold (a take whose answer was lost, a refresh cut short after a take,
        // a stream dropped as lost whose lease names it again) may hold another consumer's pending entries: it is
        // claimed before it is read, as a stream taken now.
        held.withLockedValue { held in
            let before = Set(held.leased)
            held.lease(kept)
            for stream in kept where !before.contains(stream) { held.unclaimed.insert(stream) }
            held.readableUntil = started + .milliseconds(ttl - ttl / 5)
        }
        var taken: [String] = []
        for stream in free.shuffled() where kept.count + taken.count < share {
            guard try await runLease(stream, acquire: true) else { continue }
            taken.append(stream)
            held.withLockedValue { _ = $0.unclaimed.insert(stream) }
        }
        held.withLockedValue { $0.lease(kept + taken) }
        let claimed = try await claimTakenOver()
        if !taken.isEmpty {
            let leased = held.withLockedValue { $0.leased.count }
            logger.info("outbox streams taken", metadata: ["streams": "\(taken.count)", "held": "\(leased)", "workers": "\(workers)"])
        }
        return claimed > 0
    }

    /// Claims what the earlier holders of the unclaimed streams had read, so that it is applied before anything newer;
    /// returns how many entries. A claim that fails leaves its stream unread until a later refresh's claim succeeds,
    /// without holding up the other streams; one that fails `claimAttempts` refreshes in a row gives the stream back
    /// (another worker may claim it).
    private func claimTakenOver() async throws -> Int {
        let unclaimed = held.withLockedValue { $0.unclaimed.sorted() }
        let claims = try await concurrently(unclaimed) { stream -> Result<Int?, any Error> in
            do { return .success(try await self.claimPending(of: stream, idle: 0)) } catch { return .failure(error) }
        }
        var claimed = 0
        var givenUp: [String] = []
        var lost: [String] = []
        held.withLockedValue { held in
            for (stream, claim) in zip(unclaimed, claims) {
                switch claim {
                case .success(let entries?):
                    claimed += entries
                    held.unclaimed.remove(stream)
                    held.claimFailures[stream] = nil
                case .success(nil):
                    lost.append(stream)
                case .failure:
                    held.claimFailures[stream, default: 0] += 1
                    if held.claimFailures[stream, default: 0] >= Self.claimAttempts { givenUp.append(stream) }
                }
            }
            held.lease(held.leased.filter { !givenUp.contains($0) })
        }
        if !lost.isEmpty { dropLost(lost) }
        for (stream, claim) in zip(unclaimed, claims) {
            guard case .failure(let error) = claim else { continue }
            statsBox.withLockedValue { $0.failedClaims += 1 }
            logger.warning(
                "could not claim the pending entries of an outbox stream taken over; it is not read until they are",
                metadata: ["stream": "\(stream)", "error": "\(error)"]
            )
        }
        for stream in givenUp {
            logger.error("giving an outbox stream back: its pending entries could not be claimed", metadata: ["stream": "\(stream)"])
            _ = try await runLease(stream, acquire: false)
        }
        return claimed
    }

    /// Streams Redis found leased to another worker (or to no one) at a read or a claim: no longer read here (the
    /// next refresh takes them again if they are free).
    func dropLost(_ lost: [String]) {
        held.withLockedValue { held in held.lease(held.leased.filter { !lost.contains($0) }) }
        statsBox.withLockedValue { $0.lostStreams += lost.count }
        logger.warning("outbox streams whose leases are not this worker's any more are no longer read", metadata: ["streams": "\(lost)"])
    }

    /// Refreshes in a row whose claim of a taken stream may fail before the stream is given back.
    static let claimAttempts = 5

    /// Takes or renews (`acquire`) or gives back a stream's lease (lua/lease.lua); true when this worker holds it
    /// afterwards.
    func runLease(_ stream: String, acquire: Bool) async throws -> Bool {
        let key = KeyLayout.streamLease(stream)
        let owner = leaseOwner
        return try await engine.run(
            acquire
                ? LeaseCall(key: key, owner: owner, milliseconds: configuration.leaseMilliseconds)
                : .giveBack(key: key, owner: owner)
        )
    }

    /// Takes over entries another consumer read and never acknowledged (it crashed), in every stream read now.
    func claimAbandoned() async throws -> Int {
        let streams = held.withLockedValue { $0.readable() }
        let claims = try await concurrently(streams) { stream in
            try await self.claimPending(of: stream, idle: self.configuration.claimIdleMilliseconds)
        }
        let claimed = claims.reduce(0) { $0 + ($1 ?? 0) }
        let lost = zip(streams, claims).filter { $0.1 == nil }.map(\.0)
        if !lost.isEmpty { dropLost(lost) }
        if claimed > 0 {
            logger.warning("took over outbox entries of a consumer that stopped", metadata: ["entries": "\(claimed)"])
        }
        return claimed
    }

    /// Claims for this consumer every entry of `stream` another consumer has held for `idle` ms or more, page by
    /// page (lua/outbox_claim.lua: each page only while the stream's lease is this worker's); returns how many, nil
    /// when the lease is not this worker's. An error reply is thrown (the entries are not claimed); a stream or group
    /// that is not there has nothing pending.
    private func claimPending(of stream: String, idle: Int) async throws -> Int? {
        var cursor = "0-0"
        var claimed = 0
        repeat {
            let call = OutboxClaimCall(
                stream: stream, owner: leaseOwner, group: configuration.group, consumer: configuration.consumer, idle: idle,
                cursor: cursor, count: configuration.batchSize
            )
            switch try await runner.run(call, of: engine.scripts) {
            case .claimed(let next, let entries):
                cursor = next
                claimed += entries
            case .lost: return nil
            // No stream or no group (Redis lost them): no entry is pending, so none is left to claim; the read makes
            // the group again.
            case .noGroup: return claimed
            }
        } while cursor != "0-0"
        return claimed
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
}
