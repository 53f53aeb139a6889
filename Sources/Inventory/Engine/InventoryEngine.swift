import Dispatch
import Foundation
import Logging
import Metrics
import MySQLClient
import NIOConcurrencyHelpers
import RedisClient

/// What the engine has done that is not visible in the stores, for metrics and tests.
public struct EngineCounters: Sendable, Equatable {
    /// Stock items this process rebuilt in Redis from MySQL (the init path).
    public var itemRebuilds = 0
}

/// When a reserve answers.
public enum Durability: String, Sendable {
    /// After Redis has held the stock and appended the journal event (fastest; on a Redis crash at most the AOF
    /// fsync window is lost, stock and event together).
    case async
    /// After the journal row is committed in MySQL as well, through group-committed batches.
    case sync
}

/// Settings of the engine, each with a default that works locally.
public struct EngineConfiguration: Sendable {
    public var durability: Durability
    /// Hold time of a reservation that does not say (`ttlSeconds`).
    public var defaultTTLSeconds: Int
    /// How long orders and de-duplication keys outlive their hold, so replays and late cancels are recognised.
    public var retentionSeconds: Int
    /// TTL of item hashes, extended while the item is being reserved; 0 keeps them until deleted. An item that
    /// expires is rebuilt from MySQL on its next use.
    public var itemTTLSeconds: Int
    public var keys: KeyLayout
    /// Lifetime of an item's init lock: a holder that died is taken over after this.
    public var initLockMilliseconds: Int64 = 5000
    /// How long a caller waits for another caller's rebuild of an item before answering 503.
    public var initWaitMilliseconds: Int64 = 3000
    /// Redis Cluster: how long a reserve of several parts may take to hold them all; a reserve still under way
    /// after this (its caller crashed) is given up by the expiry sweeper, which takes its parts back.
    public var reserveDeadlineMilliseconds: Int64 = 10_000
    /// This instance's clock (Unix ms). Nothing that decides a hold's fate reads it: deadlines, per-user windows
    /// and lock times come from Redis (`TIME` inside the scripts, `redisNow()`), so instances whose clocks differ
    /// agree. It stamps what only this instance sees (journal commit times, the write-back lag). Tests skew it.
    public var clock: @Sendable () -> Int64 = InventoryEngine.nowMilliseconds

    public init(
        durability: Durability = .async, defaultTTLSeconds: Int = 1800, retentionSeconds: Int = 86_400,
        itemTTLSeconds: Int = 7 * 86_400, keys: KeyLayout = KeyLayout()
    ) {
        self.durability = durability
        self.defaultTTLSeconds = defaultTTLSeconds
        self.retentionSeconds = retentionSeconds
        self.itemTTLSeconds = itemTTLSeconds
        self.keys = keys
    }
}

/// The reservation engine: every change of stock in Redis goes through one of its Lua scripts; stock
/// administration also writes MySQL, the system of record, and reverses the Redis half when that fails.
public final class InventoryEngine: Sendable {
    public let configuration: EngineConfiguration
    let redis: any RedisRouter
    private let runner: RedisScriptRunner
    private let scripts: InventoryScripts
    private let stockRepository: StockRepository
    private let codePools: CodePoolRepository
    private let journal: JournalRepository
    private let committer: JournalCommitter
    private let mysql: MySQLClient
    let logger: Logger
    private let counters = NIOLockedValueBox(EngineCounters())
    /// Rebuilds in progress in this process, so concurrent callers share one instead of polling Redis.
    private let rebuilding = NIOLockedValueBox<[StockItemID: Task<Bool, any Error>]>([:])
    /// One timer per script, made here so the reserve path does not look one up under a lock on every call.
    private let scriptTimers: [String: Timer]

    var keys: KeyLayout { configuration.keys }

    public init(
        redis: any RedisRouter,
        mysql: MySQLClient,
        scripts: InventoryScripts,
        configuration: EngineConfiguration = EngineConfiguration(),
        logger: Logger
    ) {
        self.redis = redis
        self.runner = RedisScriptRunner(client: redis)
        self.scripts = scripts
        self.mysql = mysql
        self.stockRepository = StockRepository(client: mysql)
        self.codePools = CodePoolRepository(client: mysql)
        self.journal = JournalRepository(client: mysql)
        self.committer = JournalCommitter(
            journal: journal, epochs: RedisItemEpochs(runner: runner, script: scripts.epochs, keys: configuration.keys)
        )
        self.scriptTimers = Dictionary(uniqueKeysWithValues: scripts.all.map { ($0.name, InventoryMetrics.scriptTimer($0.name)) })
        self.configuration = configuration
        self.logger = logger
    }

    /// Loads the scripts into Redis (SCRIPT LOAD), so a broken script fails the start, not a request.
    /// Also makes every shard's generation marker that is missing (see `askJournal`), so that a cancel made before
    /// any reserve in a shard is guarded by one; MySQL that cannot be asked leaves that to the first reserve.
    public func loadScripts() async throws {
        try await redisCall { try await self.runner.load(self.scripts.all) }
        await markOutboxesIntact()
        for shard in 0..<keys.shards {
            do {
                try await makeGeneration(shard: shard)
            } catch {
                logger.warning(
                    "generation marker not made at start; the first reserve of its shard makes it",
                    metadata: ["shard": "\(shard)", "error": "\(error)"]
                )
                break
            }
        }
    }

    /// Makes the shard's generation marker if it is missing: 0 (trust Redis) on the shard's first start, else (Redis
    /// lost data) a retention period from now, during which a reserve of an order Redis does not know asks the
    /// journal first.
    private func makeGeneration(shard: Int) async throws {
        let marker = keys.generation(shard: shard)
        if try await redisCall({ try await self.redis.command("EXISTS", marker) }).int == 1 { return }
        let first: Bool
        do { first = try await journal.recordGeneration(keyPrefix: keys.prefix, shard: shard) } catch { throw mapMySQL(error) }
        let until = first ? 0 : try await redisNow(routingKey: marker) + Int64(configuration.retentionSeconds) * 1000
        // The shard's first start wins over an instance that raced it and took the row for a loss (it read the
        // marker missing just before the first instance made it): no false window of journal questions.
        let made = try await redisCall {
            first
                ? try await self.redis.command("SET", marker, "0")
                : try await self.redis.command("SET", marker, String(until), "NX")
        }
        if !first && made.text == "OK" {
            logger.error(
                "Redis lost data: for one retention period a reserve of an order Redis does not know asks the journal first",
                metadata: ["shard": "\(shard)", "marker": "\(marker)"]
            )
        }
    }

    // MARK: - Reservations

    /// Holds stock for every item of an order, or for none.
    public func reserve(_ command: ReserveCommand, failpoint: String = "") async throws -> ReserveOutcome {
        do {
            let outcome = try await reserveRebuildingItems(command, failpoint: failpoint)
            if case .created = outcome { InventoryMetrics.reservation(.created) } else { InventoryMetrics.reservation(.replayed) }
            return outcome
        } catch {
            InventoryMetrics.reservation(for: error)
            throw error
        }
    }

    private func reserveRebuildingItems(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        do {
            return try await reserveOnce(command, failpoint: failpoint)
        } catch InventoryError.unknownItems(let skus) {
            // Missing from Redis is not missing: a cold, evicted or lost item is rebuilt from MySQL, then the
            // reserve runs again. Items MySQL does not know either are unknown.
            var unknown: [UInt64] = []
            for sku in skus where try await !ensureItem(StockItemID(bizId: command.bizId, skuId: sku)) {
                unknown.append(sku)
            }
            if !unknown.isEmpty { throw InventoryError.unknownItems(unknown) }
            return try await reserveOnce(command, failpoint: failpoint)
        }
    }

    private func reserveOnce(_ command: ReserveCommand, failpoint: String) async throws -> ReserveOutcome {
        var journalChecked = false
        for _ in 0..<3 {
            do {
                guard keys.clustered else {
                    return try await reservePart(
                        command, shard: keys.shard(of: command.orderId), fingerprint: command.fingerprint,
                        journalChecked: journalChecked, failpoint: failpoint
                    ).outcome
                }
                return try await reserveInParts(command, journalChecked: journalChecked, failpoint: failpoint)
            } catch let ask as AskJournal {
                journalChecked = try await askJournal(ask, command: command)
            }
        }
        throw InventoryError.unavailable("order \(command.orderId) kept changing while the journal was asked about it; retry")
    }

    /// A reserve script's answer that Redis may have lost the order (lua/reserve.lua, generation marker).
    private struct AskJournal: Error {
        /// The shard whose marker answered.
        let shard: Int
        /// The marker itself is missing (else: younger than a retention period).
        let markerMissing: Bool
    }

    /// Redis may have forgotten the order a reserve names: the generation marker of its shard is missing or young.
    /// A missing marker is made: 0 (trust Redis) on the shard's first start, else (Redis lost data) a retention
    /// period from now. Then the journal is asked: an order it has is restored into Redis (the reserve then answers
    /// it as a replay, or as closed), a cancel recorded before any reserve is recorded again; only an order the
    /// journal does not know is held. Returns whether the reserve may skip the question (true: asked, nothing known).
    private func askJournal(_ ask: AskJournal, command: ReserveCommand) async throws -> Bool {
        do {
            if ask.markerMissing {
                try await makeGeneration(shard: ask.shard)
                return false
            }
            // The journal is asked after what the outbox still has of the order is in it.
            try await applyPendingEvents(ofOrder: command.orderId)
            if try await !journal.rows(orderId: command.orderId, bizId: command.bizId).isEmpty {
                _ = try await restoreOrder(command.orderId, bizId: command.bizId, outboxApplied: true)
                return false
            }
            if try await journal.hasTombstone(orderId: command.orderId, keyPrefix: keys.prefix) {
                // Recorded cancelled in Redis again (not through `cancel`, which would look the order up in every
                // business's journal rows): the reserve, run again, finds it closed.
                if keys.clustered {
                    _ = try await decide(command.orderId, .cancelled, from: ["reserved", "reserving"], recording: true)
                } else {
                    _ = try await runScript(
                        scripts.rollback, keys: rollbackKeys(command.orderId, shard: ask.shard, bizId: "", lines: []),
                        arguments: [
                            command.orderId, ReservationStatus.cancelled.rawValue, Self.redisTime,
                            String(configuration.retentionSeconds), "", "",
                        ]
                    )
                }
                return false
            }
            return true
        } catch let error as InventoryError {
            throw error
        } catch {
            throw mapMySQL(error)
        }
    }

    /// Holds one part of an order (on a single Redis the whole order) with one script; `eventId` is the outbox
    /// entry of a hold made now ("" for a replay).
    /// `journalChecked`: the journal was asked about the order (or, on a cluster, its directory is the guard), so an
    /// order Redis does not know is new.
    /// `holdsChecked`: the order was restored from the journal (and its outbox) because its hash had vanished while a
    /// hold of it was still in Redis (reserve.lua's 'vanished'): what Redis has now is all there is.
    /// `partOfSeveral`: a part of an order of several parts in partial mode, which may hold nothing (the caller
    /// refuses the order when no part held anything).
    private func reservePart(
        _ command: ReserveCommand, shard: Int, fingerprint: String, journalChecked: Bool, failpoint: String,
        holdsChecked: Bool = false, partOfSeveral: Bool = false
    ) async throws -> (outcome: ReserveOutcome, eventId: String) {
        let orderId = command.orderId
        var keyList = [keys.order(orderId, shard: shard), keys.outbox(shard: shard), keys.expiryIndex(shard: shard)]
        var arguments = [
            orderId, fingerprint, command.bizId, command.userId ?? "",
            partOfSeveral && command.shortage == .partial ? "partial_part" : command.shortage.rawValue,
            Self.redisTime, String(command.ttlSeconds), String(configuration.retentionSeconds), failpoint,
            // Sync mode commits the hold first and then confirms it (see below): a dispense in one script would
            // leave nothing a failed commit could take back.
            String(configuration.itemTTLSeconds), command.dispense && configuration.durability == .async ? "1" : "",
            holdsChecked ? "2" : journalChecked ? "1" : "",
        ]
        keyList.reserveCapacity(3 + 5 * command.items.count)
        arguments.reserveCapacity(11 + 3 * command.items.count)
        // Per item: item hash, reserve key, rollback key; then every item's usage hash, then every item's code set.
        var usageKeys: [String] = []
        var codeKeys: [String] = []
        usageKeys.reserveCapacity(command.items.count)
        codeKeys.reserveCapacity(command.items.count)
        for item in command.items {
            let id = StockItemID(bizId: command.bizId, skuId: item.skuId)
            keyList.append(keys.item(id))
            keyList.append(keys.reserveKey(id, orderId: orderId))
            keyList.append(keys.rollbackKey(id, orderId: orderId))
            usageKeys.append(keys.userUsage(id))
            codeKeys.append(keys.codes(id))
            arguments.append(String(item.skuId))
            arguments.append(String(item.quantity))
            arguments.append(item.codes.joined(separator: "|"))
        }
        keyList += usageKeys
        keyList += codeKeys
        keyList.append(keys.generation(shard: shard))
        let reply = try await runScript(scripts.reserve, keys: keyList, arguments: arguments)
        let fields = reply.array ?? []
        switch fields.first?.text {
        case "ask":
            throw AskJournal(shard: shard, markerMissing: fields[safe: 1]?.text == "marker")
        case "vanished":
            // The order's hash is gone while a hold of it is not: it comes back from the journal (after what the
            // outbox still has of it), and the reserve runs again against it.
            _ = try await restoreOrder(orderId, bizId: command.bizId)
            return try await reservePart(
                command, shard: shard, fingerprint: fingerprint, journalChecked: true, failpoint: failpoint,
                holdsChecked: true, partOfSeveral: partOfSeveral
            )
        case "ok":
            let confirmEventId = fields[safe: 6]?.text ?? ""
            let reservation = Reservation(
                orderId: orderId, bizId: command.bizId, status: confirmEventId.isEmpty ? .reserved : .confirmed,
                lines: ReservationLine.parse(fields[safe: 2]?.text ?? "", codes: fields[safe: 5]?.text ?? ""),
                expiresAtMilliseconds: fields[safe: 1]?.int, persisted: false
            )
            let eventId = fields[safe: 3]?.text ?? ""
            guard configuration.durability == .sync else { return (.created(reservation), eventId) }
            let epochs = (fields[safe: 4]?.text ?? "").split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            do {
                try await commitJournal(
                    command, fingerprint: fingerprint, reservation: reservation, eventId: eventId, epochs: epochs,
                    shard: shard
                )
            } catch is JournalHasOrder {
                return (.replayed(try await self.reservation(orderId: orderId)), "")
            }
            if command.dispense {
                return (.created(try await confirm(orderId: orderId).reservation.with(persisted: true)), eventId)
            }
            return (.created(reservation.with(persisted: true)), eventId)
        case "replay":
            let status = ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .reserved
            if configuration.durability == .sync && status == .reserved {
                try await ensureRecorded(orderId: orderId, bizId: command.bizId, shard: shard)
                if command.dispense {
                    return (.replayed(try await confirm(orderId: orderId).reservation.with(persisted: true)), "")
                }
            }
            let reservation = Reservation(
                orderId: orderId, bizId: command.bizId, status: status,
                lines: ReservationLine.parse(fields[safe: 3]?.text ?? "", codes: fields[safe: 4]?.text ?? ""),
                expiresAtMilliseconds: fields[safe: 2]?.int, persisted: nil
            )
            return (.replayed(reservation), "")
        case "conflict":
            throw InventoryError.idempotencyConflict
        case "cancelled":
            throw InventoryError.orderClosed(ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .cancelled)
        case "missing":
            let indices = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
            throw InventoryError.unknownItems(indices.compactMap { command.items[safe: $0 - 1]?.skuId })
        case "short":
            let available = (fields[safe: 1]?.text ?? "").split(separator: ",").map { Int64($0) ?? 0 }
            var shortages: [InventoryError.Shortage] = []
            for (index, item) in command.items.enumerated() {
                let have = available[safe: index] ?? 0
                if have < item.quantity || command.shortage == .partial {
                    shortages.append(.init(skuId: item.skuId, requested: item.quantity, available: have))
                }
            }
            throw InventoryError.insufficientStock(shortages)
        case "userlimit":
            // 'i:limit:used,...', i 1-based
            let lines = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { entry -> InventoryError.UserLimit? in
                let parts = entry.split(separator: ":").compactMap { Int64($0) }
                guard parts.count == 3, let item = command.items[safe: Int(parts[0]) - 1] else { return nil }
                return .init(skuId: item.skuId, requested: item.quantity, limit: parts[1], used: parts[2])
            }
            throw InventoryError.userLimitExceeded(lines)
        case "pool":
            let sku = command.items[safe: Int(fields[safe: 1]?.int ?? 0) - 1]?.skuId ?? 0
            throw InventoryError.poolUnavailable(skuId: sku, reason: fields[safe: 2]?.text ?? "offline")
        case "code":
            let sku = command.items[safe: Int(fields[safe: 1]?.int ?? 0) - 1]?.skuId ?? 0
            throw InventoryError.codeUnavailable(skuId: sku, code: fields[safe: 2]?.text ?? "")
        case "nouser":
            let indices = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
            throw InventoryError.userRequired(indices.compactMap { command.items[safe: $0 - 1]?.skuId })
        default:
            throw InventoryError.unavailable("reserve script answered \(reply)")
        }
    }

    /// Redis Cluster: an order is held in parts, one script per shard its items are in, all or none. The
    /// directory is opened first (idempotency and the hanging-reservation guard live there), then the parts are
    /// held one after another; when one part fails, the parts held are taken back (undo_reserve: the journal loses their rows
    /// too) and the directory is removed, so the order may be tried again. A dispense holds every part, then
    /// confirms the order.
    private func reserveInParts(_ command: ReserveCommand, journalChecked: Bool, failpoint: String) async throws -> ReserveOutcome {
        let orderId = command.orderId
        var positions: [Int: [Int]] = [:]
        for (index, item) in command.items.enumerated() {
            positions[keys.itemShard(StockItemID(bizId: command.bizId, skuId: item.skuId)), default: []].append(index)
        }
        let shards = positions.keys.sorted()
        let openDirectory = {
            try await self.runScript(
                self.scripts.dirOpen,
                keys: self.directoryKeys(orderId) + [self.keys.generation(shard: self.keys.shard(of: orderId))],
                arguments: [
                    command.fingerprint, command.bizId, shards.map(String.init).joined(separator: ","),
                    String(command.ttlSeconds + self.configuration.retentionSeconds), orderId,
                    shards.count > 1 ? String(self.configuration.reserveDeadlineMilliseconds) : "",
                    journalChecked ? "1" : "",
                ]
            ).array ?? []
        }
        let opened: [RedisValue]
        var missing: [UInt64] = []
        if shards.count > 1 {
            // An item Redis lacks would fail its part after other parts held stock: looked for first (while the
            // directory opens), so that a reserve naming an unknown item holds nothing (the caller rebuilds what
            // MySQL has, and refuses the rest).
            async let lookedFor = missingItems(command)
            opened = try await openDirectory()
            missing = try await lookedFor
        } else {
            opened = try await openDirectory()
        }
        switch opened.first?.text {
        case "new":
            // Opened by this request and nothing held: removed again, so that the order may be tried again.
            if !missing.isEmpty { await closeDirectory(command) }
        case "same": break
        case "conflict": throw InventoryError.idempotencyConflict
        case "closed": throw InventoryError.orderClosed(ReservationStatus(rawValue: opened[safe: 1]?.text ?? "") ?? .cancelled)
        case "ask": throw AskJournal(shard: keys.shard(of: orderId), markerMissing: opened[safe: 1]?.text == "marker")
        default: throw InventoryError.unavailable("dir_open answered \(opened)")
        }
        if !missing.isEmpty { throw InventoryError.unknownItems(missing) }
        // Part after part, in shard order, stopping at the first that fails: orders over the same items then take
        // them in the same order, so concurrent orders do not each hold a part another needs and all fail (an
        // order refused at its first part held nothing; one that got it competes for the next only with the
        // others that did).
        var results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>] = [:]
        for shard in shards {
            let part = ReserveCommand(
                orderId: orderId, bizId: command.bizId, userId: command.userId,
                items: positions[shard, default: []].map { command.items[$0] }, ttlSeconds: command.ttlSeconds,
                shortage: command.shortage, dispense: false
            )
            do {
                results[shard] = .success(
                    try await reservePart(
                        part, shard: shard, fingerprint: command.fingerprint, journalChecked: true,
                        failpoint: failpoint == "after_first_part" ? "" : failpoint, partOfSeveral: shards.count > 1
                    )
                )
            } catch {
                results[shard] = .failure(error)
                break
            }
            // Tests: the caller stops after its first part, as a crash would (nothing taken back).
            if failpoint == "after_first_part" { throw InventoryError.unavailable("failpoint after_first_part") }
        }
        var lines = [ReservationLine?](repeating: nil, count: command.items.count)
        var failures: [any Error] = []
        var allReplayed = true
        var status = ReservationStatus.reserved
        var expiresAt: Int64?
        for shard in shards {
            switch results[shard] {
            case .success(let held)?:
                let reservation: Reservation
                switch held.outcome {
                case .created(let made): reservation = made; allReplayed = false
                case .replayed(let made): reservation = made
                }
                status = reservation.status
                expiresAt = [expiresAt, reservation.expiresAtMilliseconds].compactMap { $0 }.min()
                for (line, position) in zip(reservation.lines, positions[shard, default: []]) { lines[position] = line }
            case .failure(let error)?: failures.append(error)
            case nil: break  // not tried: an earlier part failed
            }
        }
        guard failures.isEmpty else {
            await takeBackParts(command, results: results, positions: positions)
            throw Self.merged(failures)
        }
        // Partial mode: parts may each hold nothing; the order as a whole must hold something.
        if command.shortage == .partial, shards.count > 1, !allReplayed, lines.allSatisfy({ ($0?.reserved ?? 0) == 0 }) {
            await takeBackParts(command, results: results, positions: positions)
            throw InventoryError.insufficientStock(
                command.items.map { InventoryError.Shortage(skuId: $0.skuId, requested: $0.quantity, available: 0) }
            )
        }
        if shards.count > 1 {
            // Every part is held: the order is reserved, unless it was decided otherwise meanwhile (a cancel, or the
            // sweeper giving up on a reserve past its deadline: either takes the parts back).
            let committed = try await runScript(
                scripts.dirCommit, keys: directoryKeys(orderId), arguments: [orderId]
            ).array ?? []
            if committed.first?.text == "decided", let decided = ReservationStatus(rawValue: committed[safe: 1]?.text ?? "") {
                // A retry of an order decided since: a part held now (Redis lost that part) is not the order's.
                for (shard, result) in results {
                    guard case .success(let held) = result, case .created(let made) = held.outcome, !held.eventId.isEmpty
                    else { continue }
                    logger.error(
                        "a retry held a part of an order decided since (Redis lost the part); taking it back",
                        metadata: ["orderId": "\(orderId)", "shard": "\(shard)"]
                    )
                    await undoReserve(
                        orderId: orderId, bizId: command.bizId, lines: made.lines, eventId: held.eventId, routine: true
                    )
                }
                return .replayed(try await reservation(orderId: orderId))
            }
            if committed.first?.text != "ok" {
                let state = committed[safe: 1]?.text ?? ""
                if let closed = ReservationStatus(rawValue: state), closed == .cancelled || closed == .expired {
                    throw InventoryError.orderClosed(closed)
                }
                throw InventoryError.unavailable("order \(orderId) is \(state.isEmpty ? "gone" : state) after its parts were held")
            }
        }
        let reservation = Reservation(
            orderId: orderId, bizId: command.bizId, status: status, lines: lines.compactMap { $0 },
            expiresAtMilliseconds: expiresAt, persisted: configuration.durability == .sync ? true : nil
        )
        if command.dispense {
            let confirmed = try await confirm(orderId: orderId)
            let reservation = confirmed.reservation.with(persisted: configuration.durability == .sync ? true : nil)
            return allReplayed && confirmed.replayed ? .replayed(reservation) : .created(reservation)
        }
        return allReplayed ? .replayed(reservation) : .created(reservation.with(persisted: configuration.durability == .sync ? true : false))
    }

    /// The order's items Redis lacks (one EXISTS per item, all at once).
    private func missingItems(_ command: ReserveCommand) async throws -> [UInt64] {
        try await withThrowingTaskGroup(of: UInt64?.self, returning: [UInt64].self) { group in
            for item in command.items {
                let key = keys.item(StockItemID(bizId: command.bizId, skuId: item.skuId))
                group.addTask {
                    try await self.redisCall { try await self.redis.command("EXISTS", key) }.int == 1 ? nil : item.skuId
                }
            }
            return try await group.reduce(into: []) { if let sku = $1 { $0.append(sku) } }
        }
    }

    /// A cluster reserve that failed in one part: the parts that hold stock for it (held now, or by an earlier
    /// attempt that never finished) are taken back, then the directory is removed if nothing decided the order.
    private func takeBackParts(
        _ command: ReserveCommand, results: [Int: Result<(outcome: ReserveOutcome, eventId: String), any Error>],
        positions: [Int: [Int]]
    ) async {
        for (shard, result) in results {
            guard case .success(let held) = result else { continue }
            let reservation: Reservation
            var eventId = held.eventId
            switch held.outcome {
            case .created(let made): reservation = made
            case .replayed(let made):
                reservation = made
                guard made.status == .reserved else { continue }
                eventId = (try? await redisCall {
                    try await self.redis.command("HGET", self.keys.order(command.orderId, shard: shard), "event")
                })?.text ?? ""
            }
            guard !eventId.isEmpty else { continue }
            await undoReserve(
                orderId: command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId, routine: true
            )
        }
        await closeDirectory(command)
    }

    /// Removes the directory a reserve opened, unless the order was decided meanwhile (dir_close.lua).
    private func closeDirectory(_ command: ReserveCommand) async {
        _ = try? await runScript(
            scripts.dirClose, keys: directoryKeys(command.orderId), arguments: [command.fingerprint, command.orderId]
        )
    }

    /// Redis Cluster: the keys of the directory scripts, the order's directory and its shard's index of reserves
    /// under way.
    private func directoryKeys(_ orderId: String) -> [String] {
        [keys.directory(orderId), keys.pendingIndex(forOrder: orderId)]
    }

    /// One error for the failures of several parts: items Redis lacks first (they are rebuilt and the reserve
    /// runs again), else their shortages together, else the first.
    private static func merged(_ failures: [any Error]) -> any Error {
        let unknown = failures.flatMap { failure -> [UInt64] in
            if case InventoryError.unknownItems(let skus)? = failure as? InventoryError { return skus }
            return []
        }
        if !unknown.isEmpty { return InventoryError.unknownItems(unknown) }
        var shortages: [InventoryError.Shortage] = []
        for failure in failures {
            guard case InventoryError.insufficientStock(let lines)? = failure as? InventoryError else { return failures[0] }
            shortages += lines
        }
        return InventoryError.insufficientStock(shortages)
    }

    /// Payment succeeded: the held stock is sold.
    public func confirm(orderId: String) async throws -> TransitionOutcome {
        for _ in 0..<3 {
            guard let order = try await readOrder(orderId) else { throw InventoryError.notFound }
            if keys.clustered {
                // The deadline is checked here, against Redis's clock, before the directory decides: its parts then
                // follow the directory (confirm.lua checks it itself on a single Redis).
                if order.directoryState == .reserved, let expiresAt = order.expiresAt,
                    try await expiresAt <= redisNow(routingKey: keys.directory(orderId))
                {
                    return try await expireLate(orderId)
                }
                let decided = try await decide(orderId, .confirmed, from: ["reserved"]).state
                if decided == .cancelled || decided == .expired { throw InventoryError.orderClosed(decided) }
            }
            var replayed = true
            var replayStatus = ReservationStatus.confirmed
            var stale = false
            for part in order.pieces {
                var keyList = [
                    keys.order(orderId, shard: part.shard), keys.outbox(shard: part.shard), keys.expiryIndex(shard: part.shard),
                ]
                for line in part.lines {
                    let id = StockItemID(bizId: order.bizId, skuId: line.skuId)
                    keyList.append(keys.item(id))
                    keyList.append(keys.reserveKey(id, orderId: orderId))
                }
                let reply = try await runOnItems(
                    scripts.confirm, keys: keyList,
                    arguments: [orderId, Self.redisTime, part.linesText, keys.clustered ? "1" : ""],
                    items: part.lines.map { StockItemID(bizId: order.bizId, skuId: $0.skuId) }
                )
                let fields = reply.array ?? []
                switch fields.first?.text {
                case "expired":
                    return try await expireLate(orderId)
                case "lost":
                    // Redis lost the hold with its item (rebuilt without it) and the item cannot sell the units again:
                    // nothing was sold. The order is cancelled, so that what it still holds elsewhere comes back.
                    logger.error(
                        "a confirmed payment found its hold lost with its item and no stock left to sell; the order is cancelled",
                        metadata: ["orderId": "\(orderId)"]
                    )
                    _ = try await cancel(orderId: orderId)
                    throw InventoryError.orderClosed(.cancelled)
                case "ok":
                    replayed = false
                    if configuration.durability == .sync {
                        try await recordTransition(
                            orderId: orderId, part: part, eventId: fields[safe: 2]?.text ?? "", journalStatus: "CONFIRMED"
                        )
                    }
                case "replay":
                    replayStatus = ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .confirmed
                    if configuration.durability == .sync && replayStatus == .confirmed && part.holdsStock {
                        try await ensureTransitionRecorded(orderId: orderId, part: part, journalStatus: "CONFIRMED")
                    }
                case "cancelled":
                    throw InventoryError.orderClosed(ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .cancelled)
                case "stale":
                    stale = true
                default:
                    throw InventoryError.unavailable("confirm script answered \(reply)")
                }
                if stale { break }
            }
            if stale { continue }
            return TransitionOutcome(reservation: order.reservation(status: replayed ? replayStatus : .confirmed), replayed: replayed)
        }
        throw InventoryError.unavailable("order \(orderId) kept changing during confirm")
    }

    /// A confirm that came after the hold's deadline, before the sweeper: the hold expires now and the confirm is
    /// refused (409), as it would be a moment later.
    /// Another confirm that decided the order just before the deadline wins: the answer is its replay, not 409.
    private func expireLate(_ orderId: String) async throws -> TransitionOutcome {
        _ = try await expire(orderId: orderId)
        if let order = try await readOrder(orderId), order.status == .confirmed || order.status == .refunded {
            return TransitionOutcome(reservation: order.reservation(status: order.status), replayed: true)
        }
        throw InventoryError.orderClosed(.expired)
    }

    /// Gives an order's held stock back. Cancelling an unknown order records it as cancelled, so that a reserve
    /// arriving later is refused (no hanging reservation).
    public func cancel(orderId: String, failpoint: String = "") async throws -> TransitionOutcome {
        try await rollback(orderId: orderId, reason: .cancelled, failpoint: failpoint)
    }

    func rollback(orderId: String, reason: ReservationStatus, failpoint: String) async throws -> TransitionOutcome {
        for _ in 0..<3 {
            let order = try await readOrder(orderId)
            // What the order's parts (on a single Redis: the order) are moved to; the reason, unless the directory
            // had decided otherwise.
            var transition = reason
            var closedBefore = false
            if keys.clustered {
                guard let order else {
                    // Nothing to read: an order never reserved, or a reserve under way (its directory open, its
                    // parts not all held yet). The directory is the guard: recorded (or turned) cancelled, a
                    // reserve arriving later, or still under way, finds the order cancelled; parts held already are
                    // taken back, and the parts not held yet are fenced.
                    guard reason == .cancelled else { throw InventoryError.notFound }
                    let recorded = try await decide(
                        orderId, .cancelled, from: ["reserved", "reserving"], recording: true, tombstone: true
                    )
                    // Decided otherwise (confirmed, expired) while its parts are gone and the journal has no row
                    // (Redis lost them before the worker wrote it): the directory is the answer, as for an order
                    // that can be read. Reading again would not bring the parts back.
                    guard recorded.state == .cancelled else { throw InventoryError.invalidState(recorded.state) }
                    if !recorded.event.isEmpty { try await recordTombstone(orderId, event: recorded.event) }
                    try await releaseParts(orderId)
                    return TransitionOutcome(
                        reservation: Reservation(
                            orderId: orderId, bizId: "", status: .cancelled, lines: [], expiresAtMilliseconds: nil,
                            persisted: false
                        ),
                        replayed: !recorded.changed
                    )
                }
                if reason == .expired, let expiresAt = order.expiresAt, try await expiresAt > redisNow(routingKey: keys.directory(orderId)) {
                    throw InventoryError.invalidState(.reserved)
                }
                let decided = try await decide(orderId, reason, from: ["reserved"]).state
                if decided == .expired && reason == .cancelled {
                    // A cancel of an order that expired answers the expiry's replay, as rollback.lua does on one
                    // Redis; the parts follow the directory, should the expiry have stopped before moving them.
                    transition = .expired
                    closedBefore = true
                } else if decided != reason {
                    throw InventoryError.invalidState(decided)
                }
            }
            var replayed = true
            var replayStatus = transition
            var outcome: TransitionOutcome?
            var stale = false
            for part in order.map({ $0.pieces.map(Optional.some) }) ?? [nil] {
                let shard = part?.shard ?? keys.shard(of: orderId)
                let keyList = rollbackKeys(orderId, shard: shard, bizId: part?.bizId ?? "", lines: part?.lines ?? [])
                let reply = try await runOnItems(
                    scripts.rollback, keys: keyList,
                    arguments: [
                        orderId, transition.rawValue, Self.redisTime, String(configuration.retentionSeconds),
                        failpoint, part?.linesText ?? "", keys.clustered && transition == .expired ? "1" : "",
                    ],
                    items: (part?.lines ?? []).map { StockItemID(bizId: part?.bizId ?? "", skuId: $0.skuId) }
                )
                let fields = reply.array ?? []
                switch fields.first?.text {
                case "ok":
                    replayed = false
                    if configuration.durability == .sync && transition == .cancelled, let part {
                        try await recordTransition(
                            orderId: orderId, part: part, eventId: fields[safe: 3]?.text ?? "", journalStatus: "CANCELLED"
                        )
                    }
                case "replay":
                    replayStatus = ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? transition
                    if configuration.durability == .sync && transition == .cancelled && replayStatus == .cancelled, let part,
                        part.holdsStock
                    {
                        try await ensureTransitionRecorded(orderId: orderId, part: part, journalStatus: "CANCELLED")
                    }
                case "empty":
                    if configuration.durability == .sync {
                        // The tombstone is what keeps refusing a late reserve once Redis forgets this cancel.
                        if let event = try await outboxEvent(shard: shard, eventId: fields[safe: 1]?.text ?? "") {
                            _ = try await commitFromOutbox(event, what: "cancel")
                        } else if try await !hasTombstone(orderId) {
                            // A worker deletes an entry only after committing it: gone means recorded, unless Redis lost it.
                            throw InventoryError.unavailable("the cancel is made but not recorded yet; retry")
                        }
                    }
                    outcome = TransitionOutcome(
                        reservation: Reservation(
                            orderId: orderId, bizId: "", status: .cancelled, lines: [], expiresAtMilliseconds: nil,
                            persisted: false
                        ),
                        replayed: false
                    )
                case "gone":
                    throw InventoryError.notFound
                case "confirmed":
                    throw InventoryError.invalidState(ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? .confirmed)
                case "notexpired":
                    throw InventoryError.invalidState(.reserved)
                case "stale":
                    stale = true
                default:
                    throw InventoryError.unavailable("rollback script answered \(reply)")
                }
                if stale { break }
            }
            if stale { continue }
            if let outcome { return outcome }
            let status = replayed ? replayStatus : transition
            let reservation =
                order?.reservation(status: status)
                ?? Reservation(orderId: orderId, bizId: "", status: status, lines: [], expiresAtMilliseconds: nil, persisted: false)
            return TransitionOutcome(reservation: reservation, replayed: replayed || closedBefore)
        }
        throw InventoryError.unavailable("order \(orderId) kept changing during rollback")
    }

    /// Redis Cluster: decides the order's next state in its directory (the parts follow). Returns the state the
    /// directory has now (`to` when this caller or an earlier one decided it, else the state that came first) and
    /// whether this caller changed it. With `recording`, an order without a directory is recorded in state `to` (a
    /// cancel of an unknown order).
    /// `from` names directory states: the reservation statuses, and `reserving` (a reserve of several parts under
    /// way, which no transition but a cancel may leave: 503 for the others until it is done).
    /// With `tombstone`, a directory recorded cancelled writes its cancel event (the order's tombstone in MySQL) in
    /// the same step; `event` is its outbox entry ("" otherwise).
    private func decide(
        _ orderId: String, _ to: ReservationStatus, from: [String], recording: Bool = false, tombstone: Bool = false
    ) async throws -> (state: ReservationStatus, changed: Bool, event: String) {
        let reply = try await runScript(
            scripts.dirTransition,
            keys: directoryKeys(orderId) + (tombstone ? [keys.outbox(shard: keys.shard(of: orderId))] : []),
            arguments: [
                to.rawValue, from.joined(separator: "|"), recording ? String(configuration.retentionSeconds) : "", "", "",
                orderId, tombstone ? "1" : "",
            ]
        ).array ?? []
        switch reply.first?.text {
        case "ok": return (to, true, "")
        case "created": return (to, true, reply[safe: 1]?.text ?? "")
        case "same": return (to, false, "")
        case "state":
            let state = reply[safe: 1]?.text ?? ""
            guard let status = ReservationStatus(rawValue: state) else {
                throw InventoryError.unavailable("order \(orderId) is still being reserved; retry")
            }
            return (status, false, "")
        case "none": throw InventoryError.notFound
        default: throw InventoryError.unavailable("dir_transition answered \(reply)")
        }
    }

    /// Redis Cluster: a cancel recorded in the directory of an order no part of which is known wrote its outbox event
    /// in the same step (dir_transition.lua): it becomes the order's tombstone in MySQL (as rollback.lua's on a
    /// single Redis), which keeps refusing a late reserve after Redis lost the directory. Sync mode commits it
    /// before the answer.
    private func recordTombstone(_ orderId: String, event id: String) async throws {
        let shard = keys.shard(of: orderId)
        guard configuration.durability == .sync else { return }
        guard let event = try await outboxEvent(shard: shard, eventId: id) else {
            if try await hasTombstone(orderId) { return }
            throw InventoryError.unavailable("the cancel is made but not recorded yet; retry")
        }
        _ = try await commitFromOutbox(event, what: "cancel")
    }

    /// Whether MySQL has the order's tombstone (a cancel before any reserve).
    private func hasTombstone(_ orderId: String) async throws -> Bool {
        do { return try await journal.hasTombstone(orderId: orderId, keyPrefix: keys.prefix) } catch { throw mapMySQL(error) }
    }

    /// Redis Cluster: takes back what the parts of a cancelled order hold, and fences the parts that hold nothing
    /// (each is recorded cancelled, so a part reserve still under way is refused). Safe to run again.
    private func releaseParts(_ orderId: String) async throws {
        let fields = try await redisCall {
            try await self.redis.command("HMGET", self.keys.directory(orderId), "shards", "biz")
        }.array ?? []
        let bizId = fields[safe: 1]?.text ?? ""
        for shard in (fields[safe: 0]?.text ?? "").split(separator: ",").compactMap({ Int($0) }) {
            let part = try await readPart(orderId, shard: shard)
            if let part, part.status != .reserved { continue }
            _ = try await runOnItems(
                scripts.rollback, keys: rollbackKeys(orderId, shard: shard, bizId: bizId, lines: part?.lines ?? []),
                arguments: [
                    orderId, ReservationStatus.cancelled.rawValue, Self.redisTime,
                    String(configuration.retentionSeconds), "", part?.linesText ?? "",
                ],
                items: (part?.lines ?? []).map { StockItemID(bizId: bizId, skuId: $0.skuId) }
            )
        }
    }

    /// The keys of rollback.lua for a part of an order (on a single Redis the order): its hash, outbox and expiry
    /// index, per line the item, reserve and rollback keys, then every line's usage hash, then every line's code set.
    private func rollbackKeys(_ orderId: String, shard: Int, bizId: String, lines: [ReservationLine]) -> [String] {
        var keyList = [keys.order(orderId, shard: shard), keys.outbox(shard: shard), keys.expiryIndex(shard: shard)]
        let ids = lines.map { StockItemID(bizId: bizId, skuId: $0.skuId) }
        for id in ids {
            keyList.append(keys.item(id))
            keyList.append(keys.reserveKey(id, orderId: orderId))
            keyList.append(keys.rollbackKey(id, orderId: orderId))
        }
        return keyList + ids.map { keys.userUsage($0) } + ids.map { keys.codes($0) }
    }

    /// Redis Cluster: reserves of several parts still under way past their deadline in one shard (their callers
    /// stopped half-way), at most `limit`.
    public func abandonedReserves(shard: Int, nowMilliseconds: Int64, limit: Int) async throws -> [String] {
        let reply = try await redisCall {
            try await self.redis.command(
                "ZRANGEBYSCORE", self.keys.pendingIndex(shard: shard), "-inf", String(nowMilliseconds), "LIMIT", "0",
                String(limit)
            )
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    /// Redis Cluster: gives up on a reserve of several parts that did not finish in time: the order is cancelled
    /// (its caller, if it comes back, is told so) and its parts are taken back. Returns whether it was given up now.
    @discardableResult
    public func abandon(orderId: String) async throws -> Bool {
        let decided = try await decide(orderId, .cancelled, from: ["reserving"])
        if decided.state == .cancelled {
            try await releaseParts(orderId)
            if decided.changed {
                logger.warning("a reserve of several parts did not finish in time; its parts are taken back", metadata: ["orderId": "\(orderId)"])
            }
            return decided.changed
        }
        // Reserved or decided since: nothing under way any more.
        _ = try? await redisCall { try await self.redis.command("ZREM", self.keys.pendingIndex(forOrder: orderId), orderId) }
        return false
    }

    /// The order as Redis holds it.
    public func reservation(orderId: String) async throws -> Reservation {
        guard let order = try await readOrder(orderId) else { throw InventoryError.notFound }
        let persisted: Bool?
        if order.lines.contains(where: { $0.reserved > 0 }) {
            persisted = try? await journal.isPersisted(orderId: orderId, bizId: order.bizId)
        } else {
            persisted = nil
        }
        return order.reservation(status: order.status).with(persisted: persisted)
    }

    /// Refund before shipment: a confirmed order's stock becomes available again, in Redis now and in MySQL
    /// through the write-back worker.
    public func refund(orderId: String) async throws -> TransitionOutcome {
        for _ in 0..<3 {
            guard let order = try await readOrder(orderId) else { throw InventoryError.notFound }
            if keys.clustered {
                let decided = try await decide(orderId, .refunded, from: ["confirmed"]).state
                if decided != .refunded { throw InventoryError.invalidState(decided) }
            }
            var replayed = true
            var stale = false
            for part in order.pieces {
                var keyList = [keys.order(orderId, shard: part.shard), keys.outbox(shard: part.shard)]
                let ids = part.lines.map { StockItemID(bizId: order.bizId, skuId: $0.skuId) }
                keyList += ids.map { keys.item($0) }
                keyList += ids.map { keys.codes($0) }
                let reply = try await runOnItems(
                    scripts.refund, keys: keyList, arguments: [orderId, Self.redisTime, part.linesText],
                    items: ids
                )
                let fields = reply.array ?? []
                switch fields.first?.text {
                case "ok": replayed = false
                case "replay": break
                case "state":
                    throw InventoryError.invalidState(ReservationStatus(rawValue: fields[safe: 1]?.text ?? "") ?? order.status)
                case "stale": stale = true
                default: throw InventoryError.unavailable("refund script answered \(reply)")
                }
                if stale { break }
            }
            if stale { continue }
            return TransitionOutcome(reservation: order.reservation(status: .refunded), replayed: replayed)
        }
        throw InventoryError.unavailable("order \(orderId) kept changing during refund")
    }

    /// Releases an unconfirmed hold whose time is up (the expiry sweeper's step). Returns whether it expired now.
    /// On a cluster, a part left behind by a confirm or cancel that stopped half-way is moved on instead.
    @discardableResult
    public func expire(orderId: String) async throws -> Bool {
        do {
            return try await !rollback(orderId: orderId, reason: .expired, failpoint: "").replayed
        } catch InventoryError.invalidState(let state) where keys.clustered && state != .reserved {
            switch state {
            case .confirmed: _ = try await confirm(orderId: orderId)
            case .cancelled: _ = try await cancel(orderId: orderId)
            default: break
            }
            return false
        } catch InventoryError.notFound, InventoryError.invalidState {
            return false
        }
    }

    /// Takes or renews the lease of sweeping one shard for `owner`; true when `owner` holds it (lua/lease.lua).
    public func sweepLease(shard: Int, owner: String, milliseconds: Int) async throws -> Bool {
        try await runScript(
            scripts.lease, keys: [keys.sweepLease(shard: shard)], arguments: [owner, String(milliseconds)]
        ).int == 1
    }

    /// Orders whose hold expired by `nowMilliseconds`, oldest first, at most `limit` of one shard's index.
    public func expiredOrders(shard: Int, nowMilliseconds: Int64, limit: Int) async throws -> [String] {
        let reply = try await redisCall {
            try await self.redis.command(
                "ZRANGEBYSCORE", self.keys.expiryIndexes[shard], "-inf", String(nowMilliseconds), "LIMIT", "0",
                String(limit)
            )
        }
        return (reply.array ?? []).compactMap(\.text)
    }

    /// Orders the journal still holds RESERVED although their hold ended more than `graceMilliseconds` ago.
    public func staleJournalHolds(graceMilliseconds: Int64, limit: Int, bizId: String? = nil) async throws -> [String] {
        do {
            let result = try await mysql.query(
                """
                SELECT DISTINCT order_id FROM reservation_journal
                WHERE status = 'RESERVED' AND expires_at < ? AND (? = '' OR biz_id = ?)
                LIMIT ?
                """,
                [
                    // expires_at holds UTC text (JournalTime): compared with UTC text, not FROM_UNIXTIME, whose
                    // result is in the session's time zone.
                    .string(JournalTime.datetime(milliseconds: configuration.clock() - graceMilliseconds)),
                    .string(bizId ?? ""), .string(bizId ?? ""),
                    .int(Int64(limit)),
                ]
            )
            return result.rows.compactMap { $0.string("order_id") }
        } catch {
            throw mapMySQL(error)
        }
    }

    // MARK: - Journal

    /// Sync mode: the reserve answers only once its journal rows are committed. When that fails the hold is
    /// taken back, so that a 503 holds nothing and the client may retry the same orderId.
    /// `fingerprint`: the whole order's request (a part's command names only the part's items).
    private func commitJournal(
        _ command: ReserveCommand, fingerprint: String, reservation: Reservation, eventId: String, epochs: [String],
        shard: Int
    ) async throws {
        let held = reservation.lines.filter { $0.reserved > 0 }
        let event = OutboxEvent(
            id: eventId, stream: keys.outbox(shard: shard), kind: .reserve, orderId: command.orderId,
            bizId: command.bizId, userId: command.userId,
            lines: held.enumerated().map { index, line in
                .init(skuId: line.skuId, quantity: line.reserved, epoch: epochs[safe: index] ?? "", codes: line.codes)
            },
            expiresAtMilliseconds: reservation.expiresAtMilliseconds, atMilliseconds: configuration.clock(),
            reserveEventId: nil, requestFingerprint: fingerprint
        )
        let result: JournalBatchResult
        do {
            result = try await committer.commit(event)
        } catch let error as JournalCommitOutcomeUnknown {
            // The commit may have happened: taking the hold back now could leave an undo that later deletes a
            // row a retry's replay relied on. The hold stays; the worker records it from the outbox (or finds it
            // recorded), a retry's replay answers once the journal has it, and unconfirmed it expires.
            logger.warning(
                "journal commit outcome unknown; the hold is left to the write-back worker",
                metadata: ["orderId": "\(command.orderId)", "event": "\(eventId)", "error": "\(error)"]
            )
            throw mapMySQL(error)
        } catch {
            // Taken back now, or, when Redis cannot do that either, left to the outbox: not a retry task, since
            // the client was told 503 and a replay answered 200 meanwhile must not be undone later. The worker
            // records such a hold like any async reserve, and it expires if nobody confirms it.
            await compensate(
                .undoReserve(orderId: command.orderId, bizId: command.bizId, eventId: eventId, lines: reservation.lines),
                storingFailure: false
            )
            throw mapMySQL(error)
        }
        if result.staleLines.contains(where: { $0.eventId == eventId }) {
            try await takeBackStale(command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId)
        }
        guard let duplicate = result.duplicates.first(where: { $0.orderId == command.orderId }) else { return }
        // The journal has this order from an earlier reserve: this second hold is taken back. If that earlier
        // hold was itself taken back (its sync commit failed, but the worker wrote its row from the outbox), the
        // row is about to be removed: the client retries. Otherwise Redis lost the order, and the answer is what
        // the journal holds.
        await undoReserve(
            orderId: command.orderId, bizId: command.bizId, lines: reservation.lines, eventId: eventId,
            earlierEventId: duplicate.existingReserveEvent
        )
        if await wasTakenBack(orderId: command.orderId, eventId: duplicate.existingReserveEvent, shard: shard) {
            throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
        }
        let status = ReservationStatus(rawValue: duplicate.existingStatus.lowercased()) ?? .cancelled
        if status == .cancelled || status == .expired { throw InventoryError.orderClosed(status) }
        throw JournalHasOrder()
    }

    /// Thrown by `commitJournal` when the order's live rows were in the journal already: answer a replay.
    private struct JournalHasOrder: Error {}

    /// Sync mode, a replay of a held order: answers only once the journal has it, committing its reserve event
    /// from the outbox if the worker has not yet (a retry after a 503 whose hold could not be taken back).
    private func ensureRecorded(orderId: String, bizId: String, shard: Int) async throws {
        let eventId = try await redisCall {
            try await self.redis.command("HGET", self.keys.order(orderId, shard: shard), "event")
        }.text ?? ""
        // A restored order ('' event) came from the journal. Otherwise the row must be this hold's own: a row of
        // an earlier attempt of the order may be one an undo is about to remove.
        let recorded = eventId.isEmpty
            ? try? await journal.isPersisted(orderId: orderId, bizId: bizId)
            : try? await journal.hasRow(orderId: orderId, bizId: bizId, reserveEvent: eventId)
        if recorded == true { return }
        guard let event = try await outboxEvent(shard: shard, eventId: eventId), event.kind == .reserve else {
            // A worker deletes an entry only after committing it: a row now means it was recorded meanwhile.
            // Otherwise Redis lost the event (its outbox went), and no one will ever record this hold: it is
            // taken back, so that the retry holds afresh instead of being answered 503 for good.
            let recordedNow = eventId.isEmpty
                ? try? await journal.isPersisted(orderId: orderId, bizId: bizId)
                : try? await journal.hasRow(orderId: orderId, bizId: bizId, reserveEvent: eventId)
            if recordedNow == true { return }
            if recordedNow == false, !eventId.isEmpty, let part = try await readPart(orderId, shard: shard),
                part.status == .reserved
            {
                try await takeBackStale(orderId, bizId: bizId, lines: part.lines, eventId: eventId)
            }
            throw InventoryError.unavailable("the reservation is held but not recorded yet; retry")
        }
        let result: JournalBatchResult
        do { result = try await committer.commit(event) } catch { throw mapMySQL(error) }
        if result.staleLines.contains(where: { $0.eventId == event.id }) {
            try await takeBackStale(
                orderId, bizId: bizId,
                lines: event.lines.map { ReservationLine(skuId: $0.skuId, requested: $0.quantity, reserved: $0.quantity) },
                eventId: event.id
            )
        }
        // The journal's row of the order is an earlier attempt's that was taken back in Redis and is about to be
        // removed: this hold is not recorded yet (a later retry commits it once that row is gone).
        if let duplicate = result.duplicates.first(where: { $0.orderId == orderId && $0.eventId == event.id }),
            await wasTakenBack(orderId: orderId, eventId: duplicate.existingReserveEvent, shard: shard)
        {
            throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
        }
    }

    /// Sync mode: a hold's journal commit left (some of) its lines out, because Redis rebuilt their items since the
    /// hold was made and they no longer count it. The order is taken back (lines still counted give their units back,
    /// the journal rows committed for them go too), so that the client's retry holds afresh instead of replaying an
    /// order that can never be recorded. Throws 503 (retry).
    private func takeBackStale(_ orderId: String, bizId: String, lines: [ReservationLine], eventId: String) async throws -> Never {
        logger.warning(
            "a hold's items were rebuilt before its journal commit; the order is taken back for the client's retry",
            metadata: ["orderId": "\(orderId)", "event": "\(eventId)"]
        )
        await undoReserve(orderId: orderId, bizId: bizId, lines: lines, eventId: eventId, routine: true)
        throw InventoryError.unavailable("Redis lost its data while this reservation was being recorded; retry")
    }

    /// Whether the hold of reserve event `eventId` was taken back in Redis (its undone marker); true when Redis
    /// cannot tell, the safe side for a caller deciding not to answer from that event's journal row.
    private func wasTakenBack(orderId: String, eventId: String, shard: Int) async -> Bool {
        let marker = try? await redisCall {
            try await self.redis.command("EXISTS", self.keys.undoneMarker(orderId: orderId, eventId: eventId, shard: shard))
        }
        return marker?.int != 0
    }

    /// Sync mode, a confirm or cancel just made in Redis: answers only once the journal has it, by committing its
    /// outbox entry (the worker applies it again later, which changes nothing). It is not taken back when the
    /// commit fails: the client gets 503, the worker records it from the outbox, and a retry's replay answers 200
    /// once the journal has it.
    private func recordTransition(orderId: String, part: StoredOrder, eventId: String, journalStatus: String) async throws {
        guard let event = try await outboxEvent(shard: part.shard, eventId: eventId) else {
            // A worker deletes an entry only after committing it: gone means recorded, unless Redis lost it.
            if try await isRecorded(orderId: orderId, part: part, journalStatus: journalStatus) { return }
            throw InventoryError.unavailable("the change is made but not recorded yet; retry")
        }
        _ = try await commitFromOutbox(event, what: "change")
    }

    /// The order's outbox entry `eventId`, nil when there is none (or no id).
    private func outboxEvent(shard: Int, eventId: String) async throws -> OutboxEvent? {
        guard !eventId.isEmpty else { return nil }
        let stream = keys.outbox(shard: shard)
        let reply = try await redisCall { try await self.redis.command("XRANGE", stream, eventId, eventId) }
        return OutboxEvent.entries(stream: stream, reply).first?.event
    }

    /// Sync mode: commits an outbox entry through the group committer before the answer. A line of it left out as
    /// stale means Redis lost the order's items after the change and rebuilt them from the journal without it: 503.
    private func commitFromOutbox(_ event: OutboxEvent, what: String) async throws -> JournalBatchResult {
        let result: JournalBatchResult
        do {
            result = try await committer.commit(event)
        } catch {
            throw mapMySQL(error)
        }
        if result.staleLines.contains(where: { $0.eventId == event.id }) {
            throw InventoryError.unavailable("Redis lost its data while this \(what) was being recorded; retry")
        }
        return result
    }

    /// Sync mode, a replay of a confirm or cancel: answers only once the journal has it, committing the change's
    /// outbox entry if no worker has yet (a retry after a 503).
    private func ensureTransitionRecorded(orderId: String, part: StoredOrder, journalStatus: String) async throws {
        if try await isRecorded(orderId: orderId, part: part, journalStatus: journalStatus) { return }
        let eventId = try await redisCall {
            try await self.redis.command("HGET", self.keys.order(orderId, shard: part.shard), "transition_event")
        }.text ?? ""
        try await recordTransition(orderId: orderId, part: part, eventId: eventId, journalStatus: journalStatus)
    }

    /// Whether the journal's rows of the order's part all have the status (a confirmed order refunded since counts
    /// as confirmed).
    private func isRecorded(orderId: String, part: StoredOrder, journalStatus: String) async throws -> Bool {
        let skus = Set(part.lines.map(\.skuId))
        let rows: [JournalRow]
        do {
            rows = try await journal.rows(orderId: orderId).filter { $0.bizId == part.bizId && skus.contains($0.skuId) }
        } catch {
            throw mapMySQL(error)
        }
        let done = journalStatus == "CONFIRMED" ? ["CONFIRMED", "REFUNDED"] : [journalStatus]
        return !rows.isEmpty && rows.allSatisfy { done.contains($0.status) }
    }

    /// Takes back a hold made by the reserve event `eventId` (compensation: sync-mode journal failure, or a
    /// duplicate the worker found in the journal). When Redis cannot be reached it becomes a durable retry task.
    public func undoReserve(
        orderId: String, bizId: String, lines: [ReservationLine], eventId: String, earlierEventId: String = "",
        routine: Bool = false
    ) async {
        await compensate(
            .undoReserve(orderId: orderId, bizId: bizId, eventId: eventId, lines: lines, earlierEventId: earlierEventId),
            routine: routine
        )
    }

    /// The worker committed these outbox entries: acknowledge and delete them in one step.
    public func acknowledge(stream: String, group: String, ids: [String]) async throws {
        var offset = 0
        while offset < ids.count {
            let chunk = Array(ids[offset..<min(offset + 1000, ids.count)])
            _ = try await runScript(scripts.ack, keys: [stream], arguments: [group] + chunk)
            offset += chunk.count
        }
    }

    /// The worker committed a confirm or refund line: stop counting it as in flight, once per line, unless the
    /// item was rebuilt since the line was made (`epoch`), from a MySQL that had it already.
    public func markApplied(
        _ id: StockItemID, orderId: String, kind: OutboxEvent.Kind, quantity: Int64, epoch: String
    ) async throws {
        let field = kind == .refund ? "refund_unapplied" : "confirmed_unapplied"
        _ = try await runScript(
            scripts.applied, keys: [keys.item(id), keys.appliedMarker(id, orderId: orderId, kind: kind.rawValue)],
            arguments: [field, String(quantity), String(configuration.retentionSeconds), epoch]
        )
    }

    /// Where the write-back worker reads the items' epochs.
    public var itemEpochs: any ItemEpochSource { RedisItemEpochs(runner: runner, script: scripts.epochs, keys: keys) }

    /// A fresh epoch for an item being created or rebuilt in Redis: random, so two rebuilds never share one.
    /// `bornAt`: Redis's time (ms) now; an epoch starts with it (base 36), so a rebuild can tell whether the
    /// outbox streams were intact since the epoch began (init_item.lua).
    static func newEpoch(bornAt milliseconds: Int64) -> String {
        String(milliseconds, radix: 36) + "-" + String(UInt64.random(in: 1...UInt64.max), radix: 36)
    }

    // MARK: - Stock

    /// The item's stock (rebuilt from MySQL first if Redis does not have it).
    public func stock(_ id: StockItemID) async throws -> StockLevel {
        if let level = try await readStock(id) { return level }
        guard try await ensureItem(id), let level = try await readStock(id) else { throw InventoryError.notFound }
        return level
    }

    private func readStock(_ id: StockItemID) async throws -> StockLevel? {
        let reply = try await redisCall {
            try await self.redis.command(
                "HMGET", self.keys.item(id), "stock_num", "used_stock_num", "is_sell_out", "is_infinite", "danger_num",
                "backorder_limit", "user_limit", "user_window"
            )
        }
        let fields = reply.array ?? []
        guard let available = fields[safe: 0]?.int else { return nil }
        let level = StockLevel(
            item: id,
            available: available,
            reserved: fields[safe: 1]?.int ?? 0,
            soldOut: fields[safe: 2]?.text == "1",
            infinite: fields[safe: 3]?.text == "1",
            dangerNum: fields[safe: 4]?.int ?? 0,
            backorderLimit: fields[safe: 5]?.int ?? 0,
            userLimit: fields[safe: 6]?.int ?? 0,
            userWindowSeconds: fields[safe: 7]?.int ?? 0
        )
        noteLowStock(level)
        return level
    }

    /// Low-stock items get gauges, and a warning the first time they are seen low; an item seen recovered loses
    /// them (and its place in the bounded table).
    private func noteLowStock(_ level: StockLevel) {
        guard Self.isWatched(level) else {
            InventoryMetrics.recovered(level.item)
            return
        }
        if InventoryMetrics.lowStock(level.item, available: level.available, reserved: level.reserved) {
            logger.warning(
                "low stock",
                metadata: [
                    "item": "\(level.item)", "available": "\(level.available)", "reserved": "\(level.reserved)",
                    "dangerNum": "\(level.dangerNum)",
                ]
            )
        }
    }

    /// Sets on-hand stock (available + reserved) and the item's settings in Redis and MySQL.
    public func setStock(_ id: StockItemID, _ settings: StockSettings) async throws -> StockLevel {
        let itemKey = keys.item(id)
        let keyList = [itemKey, keys.userUsage(id), keys.codes(id)]
        let arguments: [String] = [
            String(settings.stock), settings.infinite.map { $0 ? "1" : "0" } ?? "",
            settings.dangerNum.map(String.init) ?? "", settings.backorderLimit.map(String.init) ?? "",
            String(configuration.itemTTLSeconds), "",
            settings.userLimit.map(String.init) ?? "", settings.userWindowSeconds.map(String.init) ?? "",
        ]
        var reply = try await runScript(scripts.setStock, keys: keyList, arguments: arguments)
        if reply.array?.first?.text == "missing" {
            // Not in Redis: it comes from MySQL through the one rebuild path, a new item with a row of 0 made first.
            // Two PUTs creating an item then meet in Redis, each moving it by its own delta, and MySQL gets both
            // deltas (a delta taken from an unlocked read of MySQL could miss the other's).
            let created: Bool
            do { created = try await stockRepository.ensureRow(bizId: id.bizId, skuId: id.skuId) } catch { throw mapMySQL(error) }
            // A new item is made, not rebuilt: it does not count as one (the metric tells of Redis losing items).
            _ = try await ensureItem(id, countsAsRebuild: !created)
            reply = try await runOnItems(scripts.setStock, keys: keyList, arguments: arguments, items: [id])
        }
        let fields = reply.array ?? []
        let delta: Int64
        let epoch: String
        let before: String
        switch fields.first?.text {
        case "ok":
            delta = fields[safe: 1]?.int ?? 0
            epoch = fields[safe: 2]?.text ?? ""
            before = fields[safe: 3]?.text ?? ""
        case "below_reserved":
            throw InventoryError.belowReserved(reserved: fields[safe: 1]?.int ?? 0)
        case "codes":
            throw Self.oneTimeStock
        default:
            throw InventoryError.unavailable("set_stock script answered \(reply)")
        }
        do {
            _ = try await stockRepository.apply(
                StockChange(
                    bizId: id.bizId, skuId: id.skuId, delta: delta, reason: "set", source: "set:\(UUID().uuidString)",
                    infinite: settings.infinite, dangerNum: settings.dangerNum, backorderLimit: settings.backorderLimit,
                    userLimit: settings.userLimit, userWindowSeconds: settings.userWindowSeconds
                )
            )
        } catch {
            // The settings the change made go back with its delta: a 503 leaves the item as it was.
            if !keepsRedisHalf(after: error, delta: delta, itemKey: itemKey) {
                await undoStock(itemKey: itemKey, delta: delta, adjustmentKey: nil, fingerprint: "", epoch: epoch, settings: before)
            }
            throw mapMySQL(error)
        }
        await closeFence(itemKey)
        return try await stock(id)
    }

    /// Adds or removes on-hand stock once per adjustment id, in Redis and MySQL.
    public func adjustStock(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        // MySQL's ledger is the authority on what was applied: Redis's key of the adjustment may be gone (retention
        // over, data lost), and a replay must not move Redis even for a moment (a reserve could sell those units).
        let recorded: (delta: Int64, reason: String)?
        do {
            recorded = try await stockRepository.ledgerEntry(source: Self.adjustmentSource(id, adjustment))
        } catch {
            throw mapMySQL(error)
        }
        if let recorded {
            guard recorded.delta == adjustment.delta, recorded.reason == (adjustment.reason ?? "adjustment") else {
                throw InventoryError.idempotencyConflict
            }
            guard try await ensureItem(id) else { throw InventoryError.notFound }
            // Remembered in Redis again, so the next replay is answered there; a Redis half an earlier attempt kept
            // without knowing MySQL's outcome (MySQL had it, the ledger says) is settled.
            let adjustmentKey = keys.adjustmentKey(id, adjustmentId: adjustment.adjustmentId)
            try await settleAdjustmentKey(itemKey: keys.item(id), adjustmentKey: adjustmentKey, adjustment.fingerprint)
            _ = try await redisCall {
                try await self.redis.command(
                    "SET", adjustmentKey, adjustment.fingerprint, "NX", "EX", String(self.configuration.retentionSeconds)
                )
            }
            return AdjustmentOutcome(level: try await stock(id), replayed: true)
        }
        do {
            return try await adjustStockOnce(id, adjustment)
        } catch InventoryError.notFound {
            guard try await ensureItem(id) else { throw InventoryError.notFound }
            return try await adjustStockOnce(id, adjustment)
        }
    }

    private func adjustStockOnce(_ id: StockItemID, _ adjustment: StockAdjustment) async throws -> AdjustmentOutcome {
        let itemKey = keys.item(id)
        let adjustmentKey = keys.adjustmentKey(id, adjustmentId: adjustment.adjustmentId)
        let reply = try await runScript(
            scripts.adjustStock, keys: [itemKey, adjustmentKey],
            arguments: [String(adjustment.delta), adjustment.fingerprint, String(configuration.retentionSeconds)]
        )
        let fields = reply.array ?? []
        switch fields.first?.text {
        case "ok":
            let epoch = fields[safe: 3]?.text ?? ""
            let outcome: StockChangeOutcome
            do {
                outcome = try await stockRepository.apply(
                    StockChange(
                        bizId: id.bizId, skuId: id.skuId, delta: adjustment.delta,
                        reason: adjustment.reason ?? "adjustment",
                        source: Self.adjustmentSource(id, adjustment),
                        infinite: nil, dangerNum: nil, backorderLimit: nil
                    )
                )
            } catch {
                if keepsRedisHalf(after: error, delta: adjustment.delta, itemKey: itemKey) {
                    // A retry must not take the kept half for a finished adjustment: it completes the MySQL half.
                    _ = try? await redisCall {
                        try await self.redis.command(
                            "SET", adjustmentKey, Self.unsettled + adjustment.fingerprint, "XX", "KEEPTTL"
                        )
                    }
                } else {
                    await undoStock(
                        itemKey: itemKey, delta: adjustment.delta, adjustmentKey: adjustmentKey,
                        fingerprint: adjustment.fingerprint, epoch: epoch
                    )
                }
                throw mapMySQL(error)
            }
            if outcome == .duplicate {
                // MySQL's ledger is the authority: it had this adjustment already (Redis forgot its key: retention
                // over, or data lost), so this is a replay. The Redis half made now is reversed; the key stays, so
                // the next replay is answered in Redis. (A conflicting body cannot be told from the ledger, which
                // keeps the source only: a replay after the key is gone is taken as the same adjustment.)
                await undoStock(itemKey: itemKey, delta: adjustment.delta, adjustmentKey: nil, fingerprint: "", epoch: epoch)
                return AdjustmentOutcome(level: try await stock(id), replayed: true)
            }
            await closeFence(itemKey)
            return AdjustmentOutcome(level: try await stock(id), replayed: false)
        case "replay":
            return AdjustmentOutcome(level: try await stock(id), replayed: true)
        case "unsettled":
            // An earlier attempt kept its Redis half without learning whether MySQL had it, and the ledger (read
            // just before) does not: the MySQL half is made now, once whatever races it (the ledger's source).
            do {
                _ = try await stockRepository.apply(
                    StockChange(
                        bizId: id.bizId, skuId: id.skuId, delta: adjustment.delta, reason: adjustment.reason ?? "adjustment",
                        source: Self.adjustmentSource(id, adjustment), infinite: nil, dangerNum: nil, backorderLimit: nil
                    )
                )
            } catch {
                throw mapMySQL(error)
            }
            try await settleAdjustmentKey(itemKey: itemKey, adjustmentKey: adjustmentKey, adjustment.fingerprint)
            return AdjustmentOutcome(level: try await stock(id), replayed: true)
        case "conflict":
            throw InventoryError.idempotencyConflict
        case "missing":
            throw InventoryError.notFound
        case "below_reserved":
            throw InventoryError.belowReserved(reserved: fields[safe: 2]?.int ?? 0)
        case "codes":
            throw Self.oneTimeStock
        default:
            throw InventoryError.unavailable("adjust_stock script answered \(reply)")
        }
    }

    /// Whether a stock change whose MySQL half failed keeps its Redis half instead of being reversed: only when
    /// MySQL may have it (its COMMIT got no answer and the ledger could not be read: `StockRepository.settle`) and
    /// it removed units. Either way Redis is then left with no more to sell than MySQL may have: a removal stays,
    /// an addition goes. The fence stays open and lapses, and the reconciler then brings Redis to MySQL's count.
    private func keepsRedisHalf(after error: any Error, delta: Int64, itemKey: String) -> Bool {
        guard let error = error as? MySQLError, error.code == .commitOutcomeUnknown else { return false }
        logger.warning(
            "stock change's MySQL outcome unknown",
            metadata: [
                "item": "\(itemKey)", "delta": "\(delta)", "redisHalf": delta < 0 ? "kept" : "reversed",
                "error": "\(error)",
            ]
        )
        return delta < 0
    }

    /// A stock change's MySQL half is done: its item is no longer fenced from the reconciler's repair
    /// (lua/lib/fence.lua). A fence left open (Redis did not answer) lapses after a minute.
    private func closeFence(_ itemKey: String) async {
        do {
            _ = try await runScript(scripts.adminDone, keys: [itemKey], arguments: [])
        } catch {
            logger.warning("stock change's fence not closed; it lapses", metadata: ["item": "\(itemKey)", "error": "\(error)"])
        }
    }

    /// The value of an adjustment key whose Redis half was kept without knowing MySQL's outcome, before the
    /// request's fingerprint.
    static let unsettled = "unsettled:"

    /// An adjustment MySQL now has: its key, if it was left unsettled, holds the plain fingerprint again and the
    /// fence its kept Redis half opened is closed. Nothing happens when the key is not unsettled.
    private func settleAdjustmentKey(itemKey: String, adjustmentKey: String, _ fingerprint: String) async throws {
        let current = try await redisCall { try await self.redis.command("GET", adjustmentKey) }.text
        guard current == Self.unsettled + fingerprint else { return }
        let swapped = try await redisCall {
            try await self.redis.command("SET", adjustmentKey, fingerprint, "XX", "KEEPTTL", "GET")
        }.text
        if swapped == Self.unsettled + fingerprint { await closeFence(itemKey) }
    }

    /// The ledger source of an adjustment: unique per item and adjustment id.
    static func adjustmentSource(_ id: StockItemID, _ adjustment: StockAdjustment) -> String {
        "adj:\(id.bizId):\(id.skuId):\(adjustment.adjustmentId)"
    }

    // MARK: - Code pools

    /// Creates or changes the item's code pool (its kind is fixed once set), in MySQL, then in Redis.
    public func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool {
        do {
            try await codePools.setPool(bizId: id.bizId, skuId: id.skuId, pool)
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw mapMySQL(error)
        }
        // An item Redis does not have is rebuilt with its pool; one it has gets the settings written.
        guard try await ensureItem(id) else { throw InventoryError.notFound }
        let reply = try await runScript(
            scripts.setPool, keys: [keys.item(id)], arguments: pool.scriptArguments + [pool.maxPerUser.map(String.init) ?? ""]
        )
        if reply.array?.first?.text == "missing", try await !ensureItem(id) {
            throw InventoryError.notFound
        }
        return try await self.pool(id)
    }

    /// The item's code pool; `notFound` when it has none.
    public func pool(_ id: StockItemID) async throws -> CodePool {
        let pool: CodePool?
        do { pool = try await codePools.pool(bizId: id.bizId, skuId: id.skuId) } catch { throw mapMySQL(error) }
        guard let pool else { throw InventoryError.noCodePool(id.skuId) }
        return pool
    }

    /// Adds codes to the item's pool: recorded in MySQL (new ones only, in one transaction; a one-time pool's
    /// stock grows by as many), then added in Redis. `codes` must already be valid and distinct.
    public func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome {
        let fresh: [String]
        do {
            fresh = try await codePools.loadCodes(bizId: id.bizId, skuId: id.skuId, codes)
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw mapMySQL(error)
        }
        if !fresh.isEmpty {
            do {
                let reply = try await runScript(scripts.addCodes, keys: [keys.item(id), keys.codes(id)], arguments: fresh)
                // Not whole in Redis (lib/items.lua): rebuilt now, with the codes MySQL just recorded.
                if reply.array?.first?.text == "missing" { _ = try await ensureItem(id) }
            } catch {
                // MySQL has the codes: an item Redis drops is rebuilt from it on its next use.
                _ = try? await redisCall { try await self.redis.command("DEL", self.keys.item(id)) }
                throw error
            }
        }
        return CodeLoadOutcome(added: fresh.count, duplicates: codes.count - fresh.count)
    }

    /// The pool's codes still unused, live from Redis, sorted: a one-time pool's usable codes (neither held nor
    /// used), a reusable pool's codes (never used up), a batch pool's code.
    public func unusedCodes(_ id: StockItemID) async throws -> [String] {
        let pool = try await pool(id)
        if pool.kind == .batch { return pool.batchCode.map { [$0] } ?? [] }
        guard try await ensureItem(id) else { throw InventoryError.notFound }
        var codes: [String] = []
        try await redisCall { try await self.redis.scanSet(self.keys.codes(id)) { codes += $0 } }
        return codes.sorted()
    }

    static let oneTimeStock = InventoryError.poolConflict(
        "the item has a one-time code pool: its stock is its codes; upload codes instead of setting or adjusting stock"
    )

    private static func inventoryError(_ refusal: CodePoolRepository.Refusal, _ id: StockItemID) -> InventoryError {
        switch refusal {
        case .kindChange(let kind):
            return .poolConflict("the pool is \(kind.rawValue); a pool's kind cannot change")
        case .stockWithoutCodes(let stock):
            return .poolConflict(
                "the item has \(stock) unit(s) of stock: a one-time pool's stock is its codes, so it needs an item with none"
            )
        case .noPool:
            return .noCodePool(id.skuId)
        case .infinite:
            return .poolConflict("the item never runs out: a one-time pool has exactly its codes")
        }
    }

    // MARK: - Initialisation with a lock

    /// Counters of this engine.
    public var stats: EngineCounters { counters.withLockedValue { $0 } }

    /// Makes sure the item is in Redis, rebuilding it from MySQL when it is missing: one caller across all
    /// instances takes the init lock and rebuilds, the others wait (bounded) and then see the rebuilt item.
    /// Returns false when MySQL has no such item either.
    /// `countsAsRebuild` false: the item is new (its MySQL row was just made), not lost by Redis; it is not counted
    /// in `stats.itemRebuilds` and the rebuild metric.
    public func ensureItem(_ id: StockItemID, countsAsRebuild: Bool = true) async throws -> Bool {
        let (task, owner) = rebuilding.withLockedValue { running -> (Task<Bool, any Error>, Bool) in
            if let task = running[id] { return (task, false) }
            let task = Task { try await self.rebuild(id, counting: countsAsRebuild) }
            running[id] = task
            return (task, true)
        }
        if owner {
            defer { _ = rebuilding.withLockedValue { $0.removeValue(forKey: id) } }
            return try await task.value
        }
        return try await task.value
    }

    private func rebuild(_ id: StockItemID, counting: Bool) async throws -> Bool {
        let caller = UUID().uuidString
        let itemKey = keys.item(id)
        let deadline = ContinuousClock.now + .milliseconds(configuration.initWaitMilliseconds)
        var pause = 2
        while true {
            let reply = try await runScript(
                scripts.initLock, keys: [itemKey, keys.codes(id), keys.userUsage(id)],
                arguments: [caller, Self.redisTime, String(configuration.initLockMilliseconds)]
            )
            switch reply.array?.first?.text {
            case "ready":
                return true
            case "locked":
                return try await rebuildLocked(id, itemKey: itemKey, caller: caller, counting: counting)
            default:
                guard ContinuousClock.now < deadline else {
                    throw InventoryError.unavailable("stock item \(id) is being rebuilt by another caller; retry")
                }
                try await Task.sleep(for: .milliseconds(pause))
                pause = min(pause * 2, 50)
            }
        }
    }

    /// Rebuilds the item while holding its MySQL stock row locked, from the read until Redis has the result: a
    /// write-back batch touching the item either commits before the read (and is counted) or waits and then sees
    /// the new epoch (and leaves out its lines of the old one; see `JournalRepository.apply(_:epochs:)`).
    ///
    /// The item's outbox events still in the streams are applied to the journal first, in the same transaction:
    /// the item vanished alone (its TTL ran out, Redis evicted it, it was deleted) while the rest of Redis kept
    /// them, and the rebuilt item must count them. Their epochs are recorded as absorbed (init_item.lua), so their
    /// lines are not stale when the worker or a sync commit brings them again (applying them twice changes nothing).
    /// Only events Redis itself lost (a whole data loss) stay out, as stale lines of an epoch nothing absorbed.
    private func rebuildLocked(_ id: StockItemID, itemKey: String, caller: String, counting: Bool) async throws -> Bool {
        // The per-user window the rebuilt usage counts is Redis's current one, as reserve.lua computes it.
        let now = try await redisNow(routingKey: itemKey)
        let epoch = Self.newEpoch(bornAt: now)
        let pending = try await pendingEvents(touching: id)
        var drainedEpochs = Set(pending.flatMap { $0.lines.filter { $0.skuId == id.skuId }.map(\.epoch) })
        drainedEpochs.remove("")
        let outcome: (written: Bool, row: StockRow, liveReserved: Int64)?
        do {
            outcome = try await stockRepository.withInitSnapshot(
                bizId: id.bizId, skuId: id.skuId, nowMilliseconds: now, pending: pending
            ) { snapshot in
                guard let snapshot else { return nil }
                let row = snapshot.row
                var arguments = [
                    caller, String(row.infinite ? row.stock : row.stock - snapshot.liveReserved),
                    String(snapshot.liveReserved), row.infinite ? "1" : "0", String(row.dangerNum),
                    String(row.backorderLimit), String(self.configuration.itemTTLSeconds), epoch,
                    String(row.userLimit), String(row.userWindowSeconds), String(snapshot.userWindow),
                ]
                arguments += snapshot.pool?.scriptArguments ?? ["", "", "0", ""]
                arguments.append(drainedEpochs.sorted().joined(separator: ","))
                arguments.append(String(snapshot.codes.count))
                arguments += snapshot.codes
                // The holds this rebuild counts keep counting: their reserve keys get the new epoch.
                arguments.append(String(snapshot.liveHolds.count))
                // Per hold: its quantity, and how long (s) its reserve key lives if the rebuild writes it anew (it
                // vanished alone): the hold's time left plus the retention, as reserve.lua gives it.
                for hold in snapshot.liveHolds {
                    arguments.append(String(hold.quantity))
                    arguments.append(
                        String(max(hold.expiresAtMilliseconds - now, 0) / 1000 + Int64(self.configuration.retentionSeconds))
                    )
                }
                arguments.reserveCapacity(arguments.count + 2 * snapshot.usage.count)
                for usage in snapshot.usage {
                    arguments.append(usage.userId)
                    arguments.append(String(usage.units))
                }
                let reply = try await self.runScript(
                    self.scripts.initItem,
                    keys: [itemKey, self.keys.userUsage(id), self.keys.codes(id)]
                        + snapshot.liveHolds.map { self.keys.reserveKey(id, orderId: $0.orderId) }
                        + self.outboxes(of: id),
                    arguments: arguments
                )
                return (reply.array?.first?.text == "ok", row, snapshot.liveReserved)
            }
        } catch let error as InventoryError {
            throw error
        } catch {
            _ = try? await redisCall { try await self.redis.command("DEL", itemKey) }
            throw mapMySQL(error)
        }
        guard let outcome else {
            // Nothing to rebuild: drop the lock-only hash so the item stays plainly absent.
            _ = try await redisCall { try await self.redis.command("DEL", itemKey) }
            return false
        }
        if outcome.written && counting {
            counters.withLockedValue { $0.itemRebuilds += 1 }
            InventoryMetrics.itemRebuilds.increment()
            logger.notice(
                "stock item rebuilt from MySQL",
                metadata: [
                    "item": "\(id)", "stock": "\(outcome.row.stock)", "liveReserved": "\(outcome.liveReserved)",
                    "epoch": "\(epoch)",
                ]
            )
        }
        return true
    }

    /// The outbox events not yet acknowledged (acknowledged ones are deleted: they are in the journal) that have a
    /// line of `id`, in stream order, a reserve and its undo reduced as the worker reduces them. On a single Redis an
    /// item's events may be in any shard's stream (an order's shard decides); on a cluster only in the item's shard.
    /// The outbox streams an item's events go to: every shard's on one Redis (an order's shard picks the stream),
    /// its own shard's on a cluster.
    private func outboxes(of id: StockItemID) -> [String] {
        keys.clustered ? [keys.outbox(shard: keys.itemShard(id))] : keys.outboxes
    }

    private func pendingEvents(touching id: StockItemID) async throws -> [OutboxEvent] {
        let streams = outboxes(of: id)
        var found: [OutboxEvent] = []
        for stream in streams {
            found += try await pendingEvents(in: stream) { event in
                event.bizId == id.bizId && event.lines.contains(where: { $0.skuId == id.skuId })
            }
        }
        return WriteBackWorker.cancellingUndone(found)
    }

    /// The events of `stream` not yet acknowledged that `wanted` keeps, in stream order (read in pages).
    private func pendingEvents(in stream: String, _ wanted: (OutboxEvent) -> Bool) async throws -> [OutboxEvent] {
        let page = 1000
        var found: [OutboxEvent] = []
        var start = "-"
        while true {
            let reply = try await redisCall {
                try await self.redis.send(["XRANGE", stream, start, "+", "COUNT", String(page)], routingKey: stream)
            }
            if case .error(let message) = reply { throw InventoryError.unavailable("Redis: \(message)") }
            let entries = OutboxEvent.entries(stream: stream, reply)
            for case let event? in entries.map(\.event) where wanted(event) { found.append(event) }
            guard entries.count == page, let last = entries.last else { break }
            start = "(" + last.id
        }
        return found
    }

    // MARK: - Eviction

    /// What `checkEvictionPolicy` found on one Redis node.
    public enum EvictionPolicy: Sendable, Equatable {
        /// `noeviction`: Redis refuses writes when full instead of dropping keys.
        case safe
        /// A policy that may evict keys the service keeps (items, holds, orders, outbox streams).
        case evicting(node: String, policy: String)
        /// `CONFIG GET` is not allowed (a managed Redis): the policy cannot be read.
        case unknown(node: String, reason: String)
    }

    /// Reads `maxmemory-policy` on every Redis node. Every key the service owns may carry a TTL (`volatile-*`
    /// policies pick those too), so anything but `noeviction` can drop a hold, an order or a journal event while
    /// clients rely on it: the service refuses to start on such a Redis unless told otherwise.
    public func evictionPolicies() async throws -> [EvictionPolicy] {
        var found: [EvictionPolicy] = []
        for node in try await redisCall({ try await self.redis.dataNodes() }) {
            let name = "\(node.configuration.host):\(node.configuration.port)"
            do {
                let reply = try await node.command("CONFIG", "GET", "maxmemory-policy")
                let policy = (reply.array ?? []).compactMap(\.text).dropFirst().first ?? ""
                found.append(policy == "noeviction" ? .safe : .evicting(node: name, policy: policy))
            } catch let error as RedisError where error.code == .server {
                found.append(.unknown(node: name, reason: error.message))
            } catch let error as RedisError {
                InventoryMetrics.redisError()
                throw InventoryError.unavailable("Redis: \(error.message)")
            }
        }
        return found
    }

    // MARK: - Health

    /// Whether Redis answers and the scripts are loaded, and whether MySQL answers.
    public func readiness() async -> (redis: Bool, scripts: Bool, mysql: Bool) {
        var redisUp = true
        do {
            for node in try await redis.dataNodes() { try await node.command("PING") }
        } catch {
            redisUp = false
        }
        let mysqlUp = (try? await mysql.ping()) != nil
        return (redisUp, runner.isLoaded(scripts.all), mysqlUp)
    }

    // MARK: - Status

    /// Items worth an operator's eye: at or below a threshold that was set, or at (or below) zero.
    private static func isWatched(_ level: StockLevel) -> Bool {
        level.lowStock && (level.dangerNum > 0 || level.available <= 0)
    }

    /// The items seen low (the low-stock gauges' set, bounded by `InventoryMetrics.lowStockLimit`) as Redis has
    /// them now, the lowest first; items restocked since, or not in Redis, are left out.
    public func lowStockLevels() async throws -> [StockLevel] {
        let levels = try await withThrowingTaskGroup(of: StockLevel?.self) { group in
            for item in InventoryMetrics.lowStockItems() {
                group.addTask { try await self.readStock(item) }
            }
            var levels: [StockLevel] = []
            for try await level in group {
                if let level, Self.isWatched(level) { levels.append(level) }
            }
            return levels
        }
        return levels.sorted { ($0.available, $0.item.bizId, $0.item.skuId) < ($1.available, $1.item.bizId, $1.item.skuId) }
    }

    /// Entries in every outbox stream: events the write-back worker has not applied yet.
    public func outboxLength() async throws -> Int {
        var total = 0
        for stream in keys.outboxes {
            total += Int(try await redisCall { try await self.redis.command("XLEN", stream) }.int ?? 0)
        }
        return total
    }

    /// Low items, outbox length and the last reconciliation. Redis failing is an error; MySQL failing only
    /// leaves the reconciliation out.
    public func status(lowStockLimit: Int) async throws -> EngineStatus {
        async let reconcile = try? ReconcileSummary.latest(in: mysql)
        let low = try await lowStockLevels()
        let outbox = try await outboxLength()
        return EngineStatus(
            lowStock: Array(low.prefix(lowStockLimit)), lowStockCount: low.count, outboxEntries: outbox,
            lastReconcile: await reconcile
        )
    }

    // MARK: - Internals

    /// First level of compensation: reverse a Redis stock change whose MySQL half failed. When that fails too,
    /// it becomes a durable retry task (second level); the reconciler is the third.
    /// `epoch`: the item's epoch the change was made in (a rebuilt item never counted it).
    private func undoStock(
        itemKey: String, delta: Int64, adjustmentKey: String?, fingerprint: String, epoch: String, settings: String = ""
    ) async {
        // Same hash tag as the item: "prefix:{biz:sku}:item" → "prefix:{biz:sku}:undo:<id>".
        let marker = String(itemKey.dropLast("item".count)) + "undo:" + UUID().uuidString
        await compensate(
            .undoStock(
                itemKey: itemKey, adjustmentKey: adjustmentKey ?? itemKey, delta: delta, fingerprint: fingerprint,
                marker: marker, epoch: epoch, settings: settings
            )
        )
    }

    /// Runs a reversal now; a failure is stored in MySQL for the retrier, and only if that fails too is it left
    /// to the reconciler.
    /// `routine`: an expected step (a cluster order's parts taken back after another part was short), logged at
    /// debug level instead of as a warning.
    func compensate(_ task: CompensationTask, storingFailure: Bool = true, routine: Bool = false) async {
        do {
            try await runCompensation(task)
            logger.log(level: routine ? .debug : .warning, "change reversed", metadata: ["compensation": "\(task)"])
        } catch {
            guard storingFailure else {
                logger.error(
                    "reversal failed; not stored, the write-back worker records the change from the outbox",
                    metadata: ["compensation": "\(task)", "error": "\(error)"]
                )
                return
            }
            do {
                _ = try await mysql.query(
                    "INSERT INTO compensation_tasks (kind, key_prefix, payload, last_error) VALUES (?, ?, ?, ?)",
                    [.string(task.kind), .string(keys.prefix), .string(task.payload), .string("\(error)")]
                )
                logger.error(
                    "reversal failed; stored as a retry task", metadata: ["compensation": "\(task)", "error": "\(error)"]
                )
            } catch let storeError {
                logger.critical(
                    "reversal failed and could not be stored; the reconciler must repair it",
                    metadata: ["compensation": "\(task)", "error": "\(error)", "storeError": "\(storeError)"]
                )
            }
        }
    }

    /// Runs one reversal; safe to run again (undo_stock has a marker, undo_reserve checks the order's event).
    func runCompensation(_ task: CompensationTask) async throws {
        switch task {
        case .undoStock(let itemKey, let adjustmentKey, let delta, let fingerprint, let marker, let epoch, let settings):
            _ = try await runScript(
                scripts.undoStock, keys: [itemKey, adjustmentKey, marker],
                arguments: [String(delta), fingerprint, String(configuration.retentionSeconds), epoch, settings]
            )
        case .undoReserve(let orderId, let bizId, let eventId, let lines, let earlierEventId):
            // With no earlier event, a marker name no event has ("" is never an event id). The lines of one reserve
            // event are one part of the order: its shard follows from any of them.
            let firstSku = lines.split(separator: ",").first.flatMap { UInt64($0.split(separator: ":").first ?? "") } ?? 0
            let shard = keys.partShard(orderId: orderId, item: StockItemID(bizId: bizId, skuId: firstSku))
            // With no earlier event, this event's own marker stands in its place (undo_reserve.lua).
            let marker = keys.undoneMarker(orderId: orderId, eventId: eventId, shard: shard)
            var keyList = [
                keys.order(orderId, shard: shard), keys.outbox(shard: shard), keys.expiryIndex(shard: shard), marker,
                earlierEventId.isEmpty ? marker : keys.undoneMarker(orderId: orderId, eventId: earlierEventId, shard: shard),
            ]
            var quantities: [String] = []
            var usageKeys: [String] = []
            var codeKeys: [String] = []
            var items: [StockItemID] = []
            for line in lines.split(separator: ",") {
                let parts = line.split(separator: ":")
                guard let sku = UInt64(parts.first ?? "") else { continue }
                let id = StockItemID(bizId: bizId, skuId: sku)
                items.append(id)
                keyList.append(keys.item(id))
                keyList.append(keys.reserveKey(id, orderId: orderId))
                usageKeys.append(keys.userUsage(id))
                codeKeys.append(keys.codes(id))
                quantities.append(parts.count > 1 ? String(parts[1]) : "0")
            }
            keyList += usageKeys + codeKeys
            let reply = try await runOnItems(
                scripts.undoReserve, keys: keyList,
                arguments: [orderId, eventId, Self.redisTime, String(configuration.retentionSeconds)]
                    + quantities,
                items: items
            )
            if reply.array?.first?.text == "settled" {
                logger.warning(
                    "a duplicate hold was confirmed or cancelled before it was taken back; its item counts it no more",
                    metadata: ["orderId": "\(orderId)", "event": "\(eventId)"]
                )
            }
        }
    }

    /// Runs stored retry tasks, oldest first; returns how many succeeded now.
    public func retryCompensations(limit: Int = 100) async throws -> Int {
        let pending = try await mysql.query(
            """
            SELECT id, kind, payload FROM compensation_tasks
            WHERE status = 'PENDING' AND key_prefix IN ('', ?) ORDER BY id LIMIT ?
            """,
            [.string(keys.prefix), .int(Int64(limit))]
        )
        var done = 0
        for row in pending.rows {
            guard let id = row.int64("id"), let task = CompensationTask(kind: row.string("kind") ?? "", payload: row.string("payload") ?? "")
            else { continue }
            do {
                try await runCompensation(task)
                _ = try await mysql.query("UPDATE compensation_tasks SET status = 'DONE', attempts = attempts + 1 WHERE id = ?", [.int(id)])
                logger.notice("retry task succeeded", metadata: ["compensation": "\(task)"])
                done += 1
            } catch {
                _ = try? await mysql.query(
                    "UPDATE compensation_tasks SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                    [.string("\(error)"), .int(id)]
                )
            }
        }
        return done
    }

    private struct StoredOrder {
        let orderId: String
        let bizId: String
        let status: ReservationStatus
        let linesText: String
        /// The codes held per line ("" when no line's item has a code pool).
        var codesText = ""
        let expiresAt: Int64?
        /// The shard the order (or this part of it) is kept in.
        var shard = 0
        /// Redis Cluster: the order's parts, and the state its directory has decided; nil on a single Redis.
        var parts: [StoredOrder]?
        var directoryState: ReservationStatus?

        var lines: [ReservationLine] { ReservationLine.parse(linesText, codes: codesText) }
        /// Whether any line held stock, and so has a journal row.
        var holdsStock: Bool { lines.contains { $0.reserved > 0 } }
        /// What a transition runs a script on: each part, or the order itself.
        var pieces: [StoredOrder] { parts ?? [self] }

        /// Whether the journal has it is not known from Redis: nil, not a guess.
        func reservation(status: ReservationStatus) -> Reservation {
            Reservation(
                orderId: orderId, bizId: bizId, status: status, lines: lines, expiresAtMilliseconds: expiresAt,
                persisted: nil
            )
        }

        /// A cluster order from its directory's state and its parts: lines in the parts' order, the state the parts
        /// agree on (the directory's while they do not: a transition under way).
        static func merged(orderId: String, bizId: String, state: ReservationStatus, parts: [StoredOrder]) -> StoredOrder {
            let statuses = Set(parts.map(\.status))
            let withCodes = parts.contains { !$0.codesText.isEmpty }
            let codes = parts.map { part -> String in
                guard withCodes, part.codesText.isEmpty else { return part.codesText }
                return Array(repeating: "", count: part.lines.count).joined(separator: ",")
            }
            return StoredOrder(
                orderId: orderId, bizId: bizId, status: statuses.count == 1 ? statuses.first! : state,
                linesText: parts.map(\.linesText).filter { !$0.isEmpty }.joined(separator: ","),
                codesText: withCodes ? codes.joined(separator: ",") : "",
                expiresAt: parts.compactMap(\.expiresAt).min(), shard: 0, parts: parts, directoryState: state
            )
        }
    }

    /// The order as Redis holds it; an order Redis lost but the journal has is restored first.
    private func readOrder(_ orderId: String) async throws -> StoredOrder? {
        if let order = try await readStoredOrder(orderId) { return order }
        guard try await restoreOrder(orderId) else { return nil }
        return try await readStoredOrder(orderId)
    }

    /// Rebuilds an order's hash (on a cluster: its missing parts, and its directory if that is missing too) and its
    /// reserve/rollback keys from its journal rows. Returns false when the journal has no row of it (or MySQL cannot
    /// be asked: then the order is as unknown as Redis says).
    /// `bizId`: the business whose rows to restore (a reserve's), nil for the first business the journal has.
    /// `outboxApplied`: the caller applied the order's pending outbox events just now (no second scan).
    private func restoreOrder(_ orderId: String, bizId: String? = nil, outboxApplied: Bool = false) async throws -> Bool {
        // MySQL that cannot be asked is 503, not "no such order": a cancel would otherwise be recorded as one
        // before any reserve and answered 200, while the journal still holds the order's stock.
        let journalRows = { [journal] in
            do {
                let rows = try await journal.rows(orderId: orderId)
                return bizId.map { biz in rows.filter { $0.bizId == biz } } ?? rows
            } catch {
                throw self.mapMySQL(error)
            }
        }
        // What the outbox still has of the order goes to the journal first: the order's hash may have vanished
        // alone while its events wait for the worker (a restore from the journal alone would miss its hold, or
        // bring back as reserved an order Redis had confirmed).
        if !outboxApplied { try await applyPendingEvents(ofOrder: orderId) }
        let seen = try await journalRows()
        guard let any = seen.first else { return false }
        // Rows of a reserve Redis took back (a sync commit that failed, a duplicate) are about to be removed by its
        // undo event: restoring them would make a live order of a hold no item counts. The caller retries.
        for row in seen where !row.reserveEvent.isEmpty {
            let shard = keys.partShard(orderId: orderId, item: StockItemID(bizId: row.bizId, skuId: row.skuId))
            if await wasTakenBack(orderId: orderId, eventId: row.reserveEvent, shard: shard) {
                throw InventoryError.unavailable("an earlier attempt of this order is still being taken back; retry")
            }
        }
        // Items first, so they count these holds from the same journal. The rows are read again afterwards: a
        // write-back batch may have moved them before the rebuild read MySQL (a confirm Redis lost, say), and
        // once the items are rebuilt no line of the lost epoch changes them any more.
        for line in seen where line.bizId == any.bizId {
            _ = try await ensureItem(StockItemID(bizId: any.bizId, skuId: line.skuId))
        }
        let rows = try await journalRows()
        guard let first = rows.first else { return false }
        let status = first.status.lowercased()
        // The request as the journal keeps it (its hash): a retry with another body is still told apart.
        let request = rows.compactMap(\.requestHash).first.map { "#" + $0 } ?? ""
        let assigned: [UInt64: [String]]
        do { assigned = try await codePools.assignedCodes(orderId: orderId, bizId: first.bizId) } catch { throw mapMySQL(error) }
        var parts: [Int: [JournalRow]] = [:]
        for line in rows where line.bizId == first.bizId {
            parts[keys.partShard(orderId: orderId, item: StockItemID(bizId: first.bizId, skuId: line.skuId)), default: []].append(line)
        }
        for (shard, lines) in parts.sorted(by: { $0.key < $1.key }) {
            var keyList = [keys.order(orderId, shard: shard), keys.expiryIndex(shard: shard)]
            let ids = lines.map { StockItemID(bizId: first.bizId, skuId: $0.skuId) }
            for id in ids {
                keyList.append(keys.reserveKey(id, orderId: orderId))
                keyList.append(keys.rollbackKey(id, orderId: orderId))
            }
            keyList += ids.map { keys.item($0) }
            let linesText = lines.map { "\($0.skuId):\($0.quantity):\($0.quantity)" }.joined(separator: ",")
            let codesText =
                assigned.isEmpty ? "" : lines.map { assigned[$0.skuId, default: []].joined(separator: "|") }.joined(separator: ",")
            let reply = try await runScript(
                scripts.restoreOrder, keys: keyList,
                arguments: [
                    orderId, first.bizId, first.userId ?? "", status, linesText, String(first.expiresAtMilliseconds),
                    Self.redisTime, String(configuration.retentionSeconds),
                ] + lines.map { String($0.quantity) } + [codesText, request]
            )
            if reply.array?.first?.text == "ok" {
                logger.notice("order restored from the journal", metadata: ["orderId": "\(orderId)", "status": "\(status)"])
            }
        }
        if keys.clustered {
            _ = try await runScript(
                scripts.dirTransition, keys: directoryKeys(orderId),
                arguments: [
                    status, "", String(configuration.retentionSeconds),
                    parts.keys.sorted().map(String.init).joined(separator: ","), first.bizId, orderId, "", request,
                ]
            )
            try await restoreEmptyParts(orderId, restored: Set(parts.keys), from: first, status: status, request: request)
        }
        return true
    }

    /// Redis Cluster: a part of a partial order that held nothing has no journal row, so a restore from the journal
    /// does not bring it back, and the directory, which still names it, would never find the order whole. Such a
    /// part is written anew with no lines (it holds nothing, as before): the order answers again, and a retry of the
    /// same request finds the part and holds nothing more on it. Not for an order still `reserving` (a part missing
    /// then is one being held now).
    private func restoreEmptyParts(
        _ orderId: String, restored: Set<Int>, from row: JournalRow, status: String, request: String
    ) async throws {
        let directory = try await redisCall {
            try await self.redis.command("HMGET", self.keys.directory(orderId), "state", "shards")
        }.array ?? []
        guard let state = directory[safe: 0]?.text, state != "reserving" else { return }
        let shards = (directory[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
        for shard in shards where !restored.contains(shard) {
            let reply = try await runScript(
                scripts.restoreOrder, keys: [keys.order(orderId, shard: shard), keys.expiryIndex(shard: shard)],
                arguments: [
                    orderId, row.bizId, row.userId ?? "", status, "", String(row.expiresAtMilliseconds), Self.redisTime,
                    String(configuration.retentionSeconds), "", request,
                ]
            )
            if reply.array?.first?.text == "ok" {
                logger.notice("an order's part that held nothing restored empty", metadata: ["orderId": "\(orderId)", "shard": "\(shard)"])
            }
        }
    }

    /// Applies the order's outbox entries not yet acknowledged to the journal (through the epoch fence, like the
    /// worker; applying them again later changes nothing). On a single Redis they are in the order's shard's
    /// stream; on a cluster in the streams of its parts' shards, which only its directory names: every shard's.
    private func applyPendingEvents(ofOrder orderId: String) async throws {
        let streams = keys.clustered ? keys.outboxes : [keys.outbox(forOrder: orderId)]
        var found: [OutboxEvent] = []
        for stream in streams {
            found += try await pendingEvents(in: stream) { $0.orderId == orderId }
        }
        guard !found.isEmpty else { return }
        do {
            _ = try await journal.apply(WriteBackWorker.cancellingUndone(found), epochs: itemEpochs)
        } catch {
            throw mapMySQL(error)
        }
    }

    private func readStoredOrder(_ orderId: String) async throws -> StoredOrder? {
        guard keys.clustered else { return try await readPart(orderId, shard: keys.shard(of: orderId)) }
        let fields = try await redisCall {
            try await self.redis.command("HMGET", self.keys.directory(orderId), "state", "shards", "biz")
        }.array ?? []
        guard let stateText = fields[safe: 0]?.text, let state = ReservationStatus(rawValue: stateText) else { return nil }
        let shards = (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap { Int($0) }
        // The parts are read all at once (one round trip, not one per part), kept in the directory's order.
        let read: [StoredOrder?]
        if shards.count == 1 {
            read = [try await readPart(orderId, shard: shards[0])]
        } else {
            read = try await withThrowingTaskGroup(of: (Int, StoredOrder?).self) { group in
                for (index, shard) in shards.enumerated() {
                    group.addTask { (index, try await self.readPart(orderId, shard: shard)) }
                }
                var parts = [StoredOrder?](repeating: nil, count: shards.count)
                for try await (index, part) in group { parts[index] = part }
                return parts
            }
        }
        // A part not there: a reserve still under way or one that stopped half-way (nothing to answer from yet),
        // or a part Redis lost (restored from the journal by the caller).
        let parts = read.compactMap { $0 }
        guard parts.count == shards.count else { return nil }
        return StoredOrder.merged(orderId: orderId, bizId: fields[safe: 2]?.text ?? "", state: state, parts: parts)
    }

    private func readPart(_ orderId: String, shard: Int) async throws -> StoredOrder? {
        let reply = try await redisCall {
            try await self.redis.command(
                "HMGET", self.keys.order(orderId, shard: shard), "status", "biz", "lines", "expires_at", "codes"
            )
        }
        let fields = reply.array ?? []
        guard let statusText = fields[safe: 0]?.text, let status = ReservationStatus(rawValue: statusText) else {
            return nil
        }
        return StoredOrder(
            orderId: orderId,
            bizId: fields[safe: 1]?.text ?? "",
            status: status,
            linesText: fields[safe: 2]?.text ?? "",
            codesText: fields[safe: 4]?.text ?? "",
            expiresAt: fields[safe: 3]?.int,
            shard: shard
        )
    }

    /// Runs a script that changes items (lib/items.lua): when it answers `missing`, the items it names are rebuilt
    /// from MySQL through the one init path, and it runs again. `items` are the script's items in the order its key
    /// list names them.
    private func runOnItems(
        _ script: RedisScript, keys: [String], arguments: [String], items: [StockItemID]
    ) async throws -> RedisValue {
        for _ in 0..<3 {
            let reply = try await runScript(script, keys: keys, arguments: arguments)
            guard let fields = reply.array, fields.first?.text == "missing" else { return reply }
            for position in (fields[safe: 1]?.text ?? "").split(separator: ",").compactMap({ Int($0) }) {
                guard let id = items[safe: position - 1] else {
                    throw InventoryError.unavailable("\(script.name) named item \(position) of \(items.count) missing")
                }
                if try await !ensureItem(id) {
                    throw InventoryError.unavailable("stock item \(id) is in neither Redis nor MySQL")
                }
            }
        }
        throw InventoryError.unavailable("the items of \(script.name) kept vanishing from Redis; retry")
    }

    private func runScript(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisValue {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            (scriptTimers[script.name] ?? InventoryMetrics.scriptTimer(script.name))
                .recordNanoseconds(InventoryMetrics.since(start))
        }
        return try await redisCall { try await self.runner.run(script, keys: keys, arguments: arguments) }
    }

    func redisCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RedisError {
            InventoryMetrics.redisError()
            if error.outcomeUnknown { throw InventoryError.outcomeUnknown("Redis: \(error.message)") }
            throw InventoryError.unavailable("Redis: \(error.message)")
        }
    }

    private func mapMySQL(_ error: any Error) -> InventoryError {
        if let error = error as? InventoryError { return error }
        InventoryMetrics.mysqlError()
        return .unavailable("MySQL: \(error)")
    }

    /// The wall clock of this process (Unix ms): the default of `EngineConfiguration.clock`.
    public static func nowMilliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }

    /// The `now` argument that makes a script read Redis's own clock (lua/lib/clock.lua).
    static let redisTime = ""

    /// Redis's clock (Unix ms), read on the node of `routingKey`: the one clock every instance shares, for the
    /// decisions the engine makes outside a script (is a hold due, which per-user window is current).
    public func redisNow(routingKey: String? = nil) async throws -> Int64 {
        let reply = try await redisCall {
            try await self.redis.send(["TIME"], routingKey: routingKey ?? self.keys.expiryIndexes[0])
        }
        let parts = (reply.array ?? []).compactMap { $0.text.flatMap { Int64($0) } }
        guard parts.count == 2 else { throw InventoryError.unavailable("Redis TIME answered \(reply)") }
        return parts[0] * 1000 + parts[1] / 1000
    }
}

/// The items' epochs as Redis has them now, read by `epochs.lua` in chunks of 500 items.
struct RedisItemEpochs: ItemEpochSource {
    let runner: RedisScriptRunner
    let script: RedisScript
    let keys: KeyLayout

    func currentEpochs(_ items: [StockItemID]) async throws -> [StockItemID: ItemEpoch] {
        var epochs: [StockItemID: ItemEpoch] = [:]
        // On a cluster one script reads the items of one shard (one slot).
        let groups = keys.clustered ? Array(Dictionary(grouping: items, by: keys.itemShard).values) : [items]
        do {
            for group in groups {
                var offset = 0
                while offset < group.count {
                    let chunk = group[offset..<min(offset + 500, group.count)]
                    let reply = try await runner.run(script, keys: chunk.map { keys.item($0) }, arguments: [])
                    let values = reply.array ?? []
                    for (index, item) in chunk.enumerated() {
                        // {epoch, absorbed (',e1,e2,')}, or nil for an item that is not whole
                        guard let pair = values[safe: index]?.array, let epoch = pair.first?.text else { continue }
                        let absorbed = (pair[safe: 1]?.text ?? "").split(separator: ",").map(String.init)
                        epochs[item] = ItemEpoch(epoch, absorbed: Set(absorbed))
                    }
                    offset += chunk.count
                }
            }
        } catch let error as RedisError {
            InventoryMetrics.redisError()
            throw InventoryError.unavailable("Redis: \(error.message)")
        }
        return epochs
    }
}

extension Array {
    subscript(safe index: Int) -> Element? {
        indices.contains(index) ? self[index] : nil
    }
}
