import FaultSuite
import Foundation
import Inventory
import MySQLClient
import InventoryTestSupport
import RedisClient

/// Runs a program against the real engine (real Redis, real MariaDB, the real write-back worker and reconciler) and
/// the reference model side by side, and checks after every step that the answer is one the model allows, that the
/// items' levels are the model's and that no item in Redis is partial; at the end, after a drain, that the
/// reconciler finds nothing, MySQL's stock is the model's, and the journal holds every order as the model has it;
/// and that another business's orders of the same ids were untouched throughout (`Driver+Bystander`).
public struct Driver: Sendable {
    /// Why a run failed: the step (nil: the final checks) and what did not hold.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let step: Int?
        public let message: String

        public var description: String { "\(step.map { "step \($0)" } ?? "final checks"): \(message)" }

        public init(step: Int?, message: String) {
            self.step = step
            self.message = message
        }
    }

    let stores: TestStores
    /// A second instance on the same stores, its clock 2 s ahead (`Step.onSecondInstance`).
    let second: InventoryEngine
    /// The proxy MariaDB is reached through when the program takes it down (`Fault.mysqlDown`), else nil.
    let mysqlProxy: FaultProxy?
    /// How often a call answered 503 (outcome unknown or a store unreachable) is retried before the run fails.
    let retries = 5
    /// When (Redis's clock, ms) the last short-lived hold made so far is due at the latest.
    let shortHoldsDue = LatestTime()
    /// The program's own Redis (or cluster), which it kills (`Features.processKills`), else nil.
    let ownRedis: PrivateRedis?
    /// Set while Redis is being restarted: a call failing meanwhile waits for it before it retries (a client
    /// retrying with backoff would get there too).
    let redisRestarting = Flag()
    /// The deadlines of the short-lived holds, by order, as their reserves answered them.
    let holdDeadlines = Deadlines()
    /// The copy of Redis `Fault.goBack` returns to (`Fault.copyRedis`).
    let redisCopy = Kept<RedisSnapshot>()
    /// Set by `Fault.goBack` when the service found Redis behind MySQL and forgot it.
    let wentBack = Flag()
    /// Set while Redis is full (`Fault.redisFull`).
    let redisFull = Flag()

    /// How far ahead the second instance's clock is.
    public static let secondInstanceSkewMilliseconds: Int64 = 2000

    public init(stores: TestStores, mysqlProxy: FaultProxy? = nil, ownRedis: PrivateRedis? = nil) throws {
        self.stores = stores
        self.mysqlProxy = mysqlProxy
        self.ownRedis = ownRedis
        var configuration = stores.engine.configuration
        configuration.clock = { InventoryEngine.nowMilliseconds() + Self.secondInstanceSkewMilliseconds }
        self.second = InventoryEngine(
            redis: stores.redis, mysql: stores.mysql, scripts: try InventoryScripts.load(), configuration: configuration,
            logger: stores.logger
        )
    }

    func orderId(_ order: Int) -> String { "\(stores.bizId)-o\(order)" }

    /// Runs `program`; throws `Failure` at the first step that does not hold.
    public func run(_ program: Program) async throws {
        var model = ReferenceModel(namesUsers: program.features.contains(.userLimits))
        model.reservesAskJournal = stores.engine.configuration.durability == .sync
        // Another business holding orders of the same ids (Driver+Bystander): untouched by all that follows.
        let shadowed = Self.shadowed(program)
        do {
            try await startBystander(shadowed)
        } catch let failure as CheckFailed {
            throw Failure(step: nil, message: "before the program: \(failure.message)")
        }
        for (index, step) in program.steps.enumerated() {
            do {
                try await perform(step, model: &model)
                try await checkLevels(model)
                try await checkWhole(model)
                // The export reads the pool from MariaDB, and rebuilds an item whose code set is gone: not while
                // MariaDB is down (the check would end the outage), not right after the set or item vanished (it
                // would mend them before the next step could meet them gone).
                if mysqlProxy?.down != true, !Self.removesCodes(step) { try await checkCodes(model) }
            } catch let failure as CheckFailed {
                throw Failure(step: index, message: "\(step): \(failure.message)")
            } catch let failure as Failure {
                throw failure
            } catch {
                throw Failure(step: index, message: "\(step): \(error)")
            }
        }
        mysqlProxy?.down = false
        try await roomInRedis()
        do {
            try await finalChecks(model)
            try await checkBystander(shadowed)
        } catch let failure as CheckFailed {
            throw Failure(step: nil, message: failure.message)
        } catch {
            throw Failure(step: nil, message: "\(error)")
        }
    }

    struct CheckFailed: Error {
        let message: String
    }

    // MARK: - Steps

    func perform(_ step: Step, model: inout ReferenceModel, on instance: InventoryEngine? = nil) async throws {
        let engine = instance ?? stores.engine
        switch step {
        case .onSecondInstance(let inner):
            try await perform(inner, model: &model, on: second)
        case .setStock(let sku, let stock):
            let expected = model.setStock(sku: sku, stock: stock)
            try await expect(expected, "PUT", model) {
                let level = try await engine.setStock(stores.item(sku), StockSettings(stock: stock))
                return .level(available: level.available, reserved: level.reserved)
            }
        case .setUserLimit(let sku, let limit):
            try await putSettings(sku, &model, engine, userLimit: limit)
        case .setBackorderLimit(let sku, let limit):
            try await putSettings(sku, &model, engine, backorderLimit: limit)
        case .setInfinite(let sku, let infinite):
            try await putSettings(sku, &model, engine, infinite: infinite)
        case .adjust(let sku, let id, let delta):
            let expected = model.adjust(sku: sku, id: id, delta: delta)
            try await expect(expected, "adjust", model) {
                let outcome = try await engine.adjustStock(
                    stores.item(sku), StockAdjustment(adjustmentId: "a\(id)", delta: delta, reason: nil)
                )
                return .level(available: outcome.level.available, reserved: outcome.level.reserved)
            }
        case .reserve(let order, let lines, let shortage, let options):
            if model.unspecified(order: order, lines: lines) { return }
            // A body naming an unknown item may be refused for that first, whatever the order (a cluster checks
            // the items of an order of several parts before it looks at the order).
            var alsoAccepting: [ReferenceModel.Answer] = []
            if lines.contains(where: { model.items[$0.sku] == nil }) { alsoAccepting.append(.failure(.unknownItems)) }
            let user = model.namesUsers ? ReferenceModel.user(order) : nil
            // An order of several parts on a cluster is held part after part and stops at the first refusal, so
            // when one line is refused for a user's allowance and another for stock, the first part's reason is the
            // answer (one Redis names the allowance first); partial mode merges the parts' refusals likewise.
            let refusals = model.lineRefusals(lines: lines, shortage: shortage, user: user)
            let expected = model.reserve(order: order, lines: lines, shortage: shortage, user: user, options: options)
            if stores.keys.clustered, lines.count > 1, refusals.count > 1,
                expected == .failure(.userLimitExceeded) || expected == .failure(.insufficientStock)
            {
                alsoAccepting += refusals.map { .failure($0) }
            }
            // A partial order of several parts that holds nothing anywhere is refused as short whatever the parts
            // said (a known limit on a cluster: README "Redis Cluster").
            if stores.keys.clustered, lines.count > 1, shortage == .partial, expected == .failure(.userLimitExceeded) {
                alsoAccepting.append(.failure(.insufficientStock))
            }
            var codes: [String] = []
            var deadline: Int64?
            let answer = try await expect(expected, "reserve", model, order: order, alsoAccepting: alsoAccepting) {
                let (answer, answeredCodes, expiresAt) = try await reserveWithCodes(
                    order, lines, shortage, user: user, options: options, on: engine
                )
                codes = answeredCodes
                deadline = expiresAt
                return answer
            }
            model.remembered(order: order)
            if options.contains(.shortLived), case .reservation(.reserved, _, false) = answer, let deadline {
                holdDeadlines.set(order, deadline)
            }
            if case .reservation = answer, let problem = model.answeredCodes(order: order, codes) {
                throw CheckFailed(message: problem)
            }
            if options.contains(.shortLived) {
                shortHoldsDue.advance(to: try await retrying { try await engine.redisNow() } + 1000)
            }
        case .confirm(let order):
            // A short-lived hold's deadline may have passed: then the confirm expires it and is refused.
            let late = model.confirmedLate(order: order)
            let expected = model.confirm(order: order)
            let answer = try await expect(expected, "confirm", model, order: order, alsoAccepting: late.map { [$0.answer] } ?? []) {
                transition(try await engine.confirm(orderId: orderId(order), bizId: stores.bizId))
            }
            if let late, answer == late.answer, answer != expected {
                // only once its deadline is behind Redis's clock
                let now = try await retrying { try await engine.redisNow() }
                if let deadline = holdDeadlines.value[order], now < deadline {
                    throw CheckFailed(message: "confirm of o\(order) was refused as expired \(deadline - now) ms before its deadline")
                }
                model = late.model
            }
            model.remembered(order: order)
        case .cancel(let order):
            let expected = model.cancel(order: order)
            try await expect(expected, "cancel", model, order: order) { transition(try await engine.cancel(orderId: orderId(order), bizId: stores.bizId)) }
            model.remembered(order: order, byCancel: true)
        case .refund(let order):
            let expected = model.refund(order: order)
            try await expect(expected, "refund", model, order: order) { transition(try await engine.refund(orderId: orderId(order), bizId: stores.bizId)) }
            model.remembered(order: order)
        case .read(let order):
            var codes: [String] = []
            let answer = try await expect(model.read(order: order), "read", model, order: order) {
                let reservation = try await engine.reservation(orderId: orderId(order), bizId: stores.bizId)
                codes = reservation.lines.flatMap(\.codes)
                return .reservation(status: reservation.status, lines: Self.plain(reservation.lines), replayed: false)
            }
            if case .reservation = answer, let problem = model.answeredCodes(order: order, codes) {
                throw CheckFailed(message: problem)
            }
            model.remembered(order: order)
        case .setOneTimePool(let sku):
            let expected = model.setOneTimePool(sku: sku)
            try await expect(expected, "PUT pool", model) {
                _ = try await engine.setPool(stores.item(sku), CodePool(kind: .oneTime))
                let level = try await engine.stock(stores.item(sku))
                return .level(available: level.available, reserved: level.reserved)
            }
        case .uploadCodes(let sku, let codes):
            let expected = model.upload(sku: sku, codes: codes)
            try await expect(expected, "upload codes", model) {
                let outcome = try await engine.loadCodes(stores.item(sku), codes)
                return .loaded(added: outcome.added, duplicates: outcome.duplicates)
            }
        case .lateCall(let cancel):
            guard let order = model.dueHolds.last else { return }
            try await perform(cancel ? .cancel(order: order) : .confirm(order: order), model: &model, on: engine)
        case .burst(let orders, let lines):
            try await burst(orders, lines, model: &model, on: engine)
        case .retryAfterRetention(let order, let lines, let shortage, let options, let confirm, let rebuild):
            try await retryAfterRetention(
                order: order, lines: lines, shortage: shortage, options: options, confirm: confirm, rebuild: rebuild, model: &model
            )
        case .burstThroughKilledService(let orders, let lines, let after):
            try await burstThroughKilledService(orders, lines, afterMilliseconds: after, model: &model, on: engine)
        case .burstWhileRedisRestarts(let orders, let lines):
            try await burst(orders, lines, model: &model, on: engine) {
                try await Task.sleep(for: .milliseconds(2))
                try await restartRedis()
            }
        case .fault(.deadlinesPass):
            let due = shortHoldsDue.value
            try await waitFor("Redis's clock past the short-lived holds' deadlines", within: .seconds(30)) {
                try await stores.engine.redisNow() > due
            }
            model.deadlinesPassed()
        case .fault(.expireDue):
            // the sweeper's step for each hold found due
            for order in model.dueHolds {
                _ = try await retrying { try await engine.expire(named: stores.orderName(orderId(order))) }
                model.expire(order: order)
            }
        case .fault(let fault):
            if case .deleteOrder(let order, _) = fault, model.partLossUnspecified(order: order, clustered: stores.keys.clustered) {
                return
            }
            try await inject(fault)
            if fault == .drainThenLoseEverything { model.redisLostEverything() }
            if fault == .goBack && wentBack.isSet { model.redisLostEverything() }
            if fault == .deleteGenerationMarkers { model.generationLost() }
            // Without its usage hash the item is not whole: its next use rebuilds it, recounting every user.
            if case .deleteUsage(let sku) = fault { model.itemRebuilt(sku: sku) }
            // A cluster's cancel before any reserve lives in the order's directory (no part): losing it is losing the
            // order hash on one Redis.
            if case .deleteDirectory(let order) = fault, stores.keys.clustered { model.directoryLost(order: order) }
            if case .deleteOrder(let order, let sku) = fault {
                // On a cluster only the part of `sku`'s shard is lost: the order's items of that shard.
                let part: Set<UInt64>? =
                    stores.keys.clustered
                    ? Set(model.skusEverHeld(order: order).filter { stores.partShard(orderId(order), sku: $0) == stores.partShard(orderId(order), sku: sku) })
                    : nil
                model.orderHashLost(order: order, recordedElsewhere: stores.keys.clustered, part: part)
            }
            // The level check after this step reads the item, which rebuilds it from MySQL.
            if case .deleteItem(let sku) = fault { model.itemRebuilt(sku: sku) }
        }
    }

    /// A PUT of the item's stock as the model has it (10 for an item it lacks) with one setting changed.
    func putSettings(
        _ sku: UInt64, _ model: inout ReferenceModel, _ engine: InventoryEngine, userLimit: Int64? = nil,
        backorderLimit: Int64? = nil, infinite: Bool? = nil
    ) async throws {
        let stock = model.items[sku]?.onHand ?? 10
        let expected = model.setStock(
            sku: sku, stock: stock, userLimit: userLimit, backorderLimit: backorderLimit, infinite: infinite
        )
        try await expect(expected, "PUT", model) {
            let settings = StockSettings(stock: stock, infinite: infinite, backorderLimit: backorderLimit, userLimit: userLimit)
            let level = try await engine.setStock(stores.item(sku), settings)
            return .level(available: level.available, reserved: level.reserved)
        }
    }

    /// Reserves of `orders`, all at once, and `meanwhile` beside them; the answers must fit some order of the
    /// reserves. A reserve retried after a 503 may find its first attempt made: its replay counts as held.
    /// `firstAttempt`, when given, makes each reserve's first attempt (elsewhere): true held, false refused for
    /// shortage, nil not known (the reserve is then made through `engine`, as a retry).
    func burst(
        _ orders: [Int], _ lines: [Line], model: inout ReferenceModel, on engine: InventoryEngine,
        meanwhile: (@Sendable () async throws -> Void)? = nil, firstAttempt: (@Sendable (Int) async throws -> Bool?)? = nil
    ) async throws {
        let namesUsers = model.namesUsers
        let held = try await withThrowingTaskGroup(of: (Int, Bool)?.self, returning: [Int: Bool].self) { group in
            for order in orders {
                group.addTask {
                    if let firstAttempt, let held = try await firstAttempt(order) { return (order, held) }
                    let retried = firstAttempt != nil
                    let user = namesUsers ? ReferenceModel.burstUser(order) : nil
                    let (answer, retriedHere) = try await answeringWithRetries {
                        try await reserve(order, lines, .reject, user: user, on: engine)
                    }
                    switch answer {
                    case .reservation(.reserved, _, let replayed) where !replayed || retried || retriedHere: return (order, true)
                    case .failure(.insufficientStock), .failure(.unknownItems): return (order, false)
                    default: throw CheckFailed(message: "a burst reserve of o\(order) answered \(answer)")
                    }
                }
            }
            if let meanwhile {
                group.addTask {
                    try await meanwhile()
                    return nil
                }
            }
            return try await group.reduce(into: [:]) { if let (order, held) = $1 { $0[order] = held } }
        }
        if let broken = model.acceptBurst(orders: orders, line: lines[0], held: held) {
            throw CheckFailed(message: broken)
        }
    }

    func reserve(
        _ order: Int, _ lines: [Line], _ shortage: ShortageMode, user: String?, options: ReserveOptions = [],
        on engine: InventoryEngine
    ) async throws -> ReferenceModel.Answer {
        try await reserveWithCodes(order, lines, shortage, user: user, options: options, on: engine).answer
    }

    /// A reserve's answer, the codes its lines hold, and its deadline.
    func reserveWithCodes(
        _ order: Int, _ lines: [Line], _ shortage: ShortageMode, user: String?, options: ReserveOptions = [],
        on engine: InventoryEngine
    ) async throws -> (answer: ReferenceModel.Answer, codes: [String], expiresAt: Int64?) {
        let outcome = try await engine.reserve(
            ReserveCommand(
                orderId: orderId(order), bizId: stores.bizId, userId: user,
                items: lines.map { ReserveCommand.Item(skuId: $0.sku, quantity: $0.quantity, codes: $0.codes) },
                ttlSeconds: options.contains(.shortLived) ? 1 : 3600, shortage: shortage,
                dispense: options.contains(.dispense)
            )
        )
        switch outcome {
        case .created(let reservation):
            return (
                .reservation(status: reservation.status, lines: Self.plain(reservation.lines), replayed: false),
                reservation.lines.flatMap(\.codes), reservation.expiresAtMilliseconds
            )
        case .replayed(let reservation):
            return (
                .reservation(status: reservation.status, lines: Self.plain(reservation.lines), replayed: true),
                reservation.lines.flatMap(\.codes), reservation.expiresAtMilliseconds
            )
        }
    }

    func transition(_ outcome: TransitionOutcome) -> ReferenceModel.Answer {
        .reservation(status: outcome.reservation.status, lines: Self.plain(outcome.reservation.lines), replayed: outcome.replayed)
    }

    /// Lines as the model keeps them: by SKU (a cluster answers an order's lines part by part, not in the order
    /// of the request), without codes (not modelled yet).
    static func plain(_ lines: [ReservationLine]) -> [ReservationLine] {
        lines.map { ReservationLine(skuId: $0.skuId, requested: $0.requested, reserved: $0.reserved) }
            .sorted { $0.skuId < $1.skuId }
    }

    /// Calls `call`, retrying a 503 as a client would (the same id is safe to repeat), and maps the answer.
    /// Returns the answer and whether an earlier attempt got 503 (its change may have been made).
    func answering(
        _ call: () async throws -> ReferenceModel.Answer
    ) async throws -> ReferenceModel.Answer {
        try await answeringWithRetries(call).answer
    }

    /// A call the harness makes for itself (a clock read, an expiry, an export), retried on 503 like the clients'
    /// calls; a 4xx is thrown as it is.
    func retrying<T>(_ call: () async throws -> T) async throws -> T {
        var value: T?
        var refusal: (any Error)?
        _ = try await answeringWithRetries {
            do {
                value = try await call()
            } catch let error as InventoryError where Self.failure(error) != nil {
                refusal = error
            }
            return .level(available: 0, reserved: 0)
        }
        if let refusal { throw refusal }
        return value!
    }

    func answeringWithRetries(
        _ call: () async throws -> ReferenceModel.Answer
    ) async throws -> (answer: ReferenceModel.Answer, retried: Bool) {
        var retried = false
        var last = ""
        var attempts = retries
        var attempt = 0
        while attempt < attempts {
            do {
                return (try await call(), retried)
            } catch let error as InventoryError {
                if let failure = Self.failure(error) { return (.failure(failure), retried) }
                last = "\(error)"
                if redisFull.isSet, let script = Self.settlingScriptRefused(last) {
                    throw CheckFailed(message: "\(script), which settles what exists, was refused for Redis being full: \(last)")
                }
                retried = true
                if redisRestarting.isSet {
                    // Redis is on its way back: waiting for it does not count as an attempt.
                    try await waitFor("Redis back", within: .seconds(60), every: .milliseconds(10)) { !redisRestarting.isSet }
                    continue
                }
                attempt += 1
                if attempt == attempts, attempts == retries, mysqlProxy != nil || redisFull.isSet {
                    // The client keeps retrying while MariaDB comes back, or Redis gets room (also when a concurrent
                    // call of a burst ended the outage): the 503s may have changed something or not, and the answers
                    // once it is back must settle it the model's way.
                    mysqlProxy?.down = false
                    try await roomInRedis()
                    attempts += retries
                }
                if last.contains("still being taken back") {
                    // The earlier attempt's journal row goes when the write-back worker applies its take-back: in a
                    // service the worker runs beside every request, here it runs at the program's drains only.
                    _ = try? await stores.drainWithWorker(within: 10)
                }
                try await Task.sleep(for: .milliseconds(20 * attempt))
            }
        }
        throw CheckFailed(message: "answered 503 \(attempts) times: \(last)")
    }

    /// Calls `call` (retrying 503s) and checks its answer against the model's; returns the answer.
    @discardableResult
    func expect(
        _ expected: ReferenceModel.Answer, _ what: String, _ model: ReferenceModel, order: Int? = nil,
        alsoAccepting: [ReferenceModel.Answer] = [], _ call: () async throws -> ReferenceModel.Answer
    ) async throws -> ReferenceModel.Answer {
        let (answer, retried) = try await answeringWithRetries(call)
        if model.accepts(answer, for: expected, order: order, call: what) || alsoAccepting.contains(answer) { return answer }
        // After a 503 the change may have been made by the attempt that failed: the retry's replay is as good.
        if retried, case .reservation(let status, let lines, _) = answer,
            case .reservation(status, lines, _) = expected
        {
            return answer
        }
        // An upload retried after a 503 finds what the failed attempt added as duplicates.
        if retried, case .loaded(let added, let duplicates) = answer, case .loaded(let modelAdded, let modelDuplicates) = expected,
            added <= modelAdded, added + duplicates == modelAdded + modelDuplicates
        {
            return answer
        }
        throw CheckFailed(message: "\(what) answered \(answer); the model says \(expected)")
    }

    /// The settling script a 503 names as refused for memory, if any (`ScriptName.settlingWhenFull`: Redis never
    /// refuses them for memory, so a refusal naming one is a defect; only their own record of an order never seen,
    /// lua/lib/full.lua, is refused, and says so).
    static func settlingScriptRefused(_ message: String) -> String? {
        guard message.contains("OOM command not allowed"), !message.contains("a new record while Redis is full") else { return nil }
        return ScriptName.settlingWhenFull.map(\.rawValue).first { message.contains("script \($0): OOM") }
    }

    static func failure(_ error: InventoryError) -> ReferenceModel.Failure? {
        switch error {
        case .insufficientStock: .insufficientStock
        case .orderClosed: .orderClosed
        case .idempotencyConflict: .idempotencyConflict
        case .notFound: .notFound
        case .invalidState: .invalidState
        case .belowReserved: .belowReserved
        case .unknownItems: .unknownItems
        case .userLimitExceeded: .userLimitExceeded
        case .codeUnavailable: .codeUnavailable
        case .noCodePool: .noCodePool
        case .unavailable, .outcomeUnknown: nil
        default: .invalidState
        }
    }
}
