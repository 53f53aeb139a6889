import Inventory
import LoadHarness

/// A seeded random program for the model check: the steps are drawn from the seed alone (SplitMix64, the load
/// harness's generator: the same on every platform), before anything runs, so a
/// program replays exactly and can be shrunk by leaving steps out. Steps name orders and items by small numbers;
/// the driver turns them into ids of its own business.
public struct Program: Sendable, CustomStringConvertible {
    public let seed: UInt64
    public var steps: [Step]
    /// What the program was drawn with (reserves name users with `userLimits`).
    public let features: Features

    public init(seed: UInt64, steps: [Step], features: Features = []) {
        self.seed = seed
        self.steps = steps
        self.features = features
    }

    public var description: String {
        steps.enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n")
    }

    /// Whether a step kills Redis or fills it (the program then runs on a Redis of its own).
    public var ownsRedis: Bool {
        steps.contains { step in
            switch step {
            case .fault(.redisRestart), .fault(.redisFull), .burstWhileRedisRestarts, .onSecondInstance(.burstWhileRedisRestarts):
                true
            default: false
            }
        }
    }
}

/// One line of a reserve: an item (1-based), a quantity, and the codes it asks for (on the item with a code pool;
/// none: the pool chooses).
public struct Line: Sendable, Equatable, CustomStringConvertible {
    public let sku: UInt64
    public let quantity: Int64
    public let codes: [String]

    public init(sku: UInt64, quantity: Int64, codes: [String] = []) {
        self.sku = sku
        self.quantity = quantity
        self.codes = codes
    }

    public var description: String { "\(sku)x\(quantity)" + (codes.isEmpty ? "" : "=" + codes.joined(separator: "|")) }
}

/// How a reserve differs from a plain hold of an hour (`Features.dispense`, `Features.expiry`).
public struct ReserveOptions: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// `dispense: true`: held and confirmed at once.
    public static let dispense = ReserveOptions(rawValue: 1)
    /// `ttlSeconds: 1`: the hold's deadline passes a second later (a confirm after it is refused; the expiry
    /// step releases it).
    public static let shortLived = ReserveOptions(rawValue: 2)

    public var description: String {
        (contains(.dispense) ? " dispense" : "") + (contains(.shortLived) ? " ttl 1 s" : "")
    }
}

/// What a program does: an API call, a burst of concurrent reserves, or a fault.
public enum Step: Sendable, Equatable, CustomStringConvertible {
    case setStock(sku: UInt64, stock: Int64)
    /// A PUT of the item's stock as it is, with a per-user limit over the item's whole life.
    case setUserLimit(sku: UInt64, limit: Int64)
    /// A PUT of the item's stock as it is, with a backorder limit (how far below zero a backorder reserve may go).
    case setBackorderLimit(sku: UInt64, limit: Int64)
    /// PUT of the item's stock as the model has it, made infinite or finite (`Features.infiniteItems`).
    case setInfinite(sku: UInt64, infinite: Bool)
    /// The item gets a one-time code pool (its stock is its codes).
    case setOneTimePool(sku: UInt64)
    /// Codes uploaded to the item's pool (codes it has already are skipped).
    case uploadCodes(sku: UInt64, codes: [String])
    case adjust(sku: UInt64, id: Int, delta: Int64)
    case reserve(order: Int, lines: [Line], shortage: ShortageMode, options: ReserveOptions = [])
    case confirm(order: Int)
    case cancel(order: Int)
    case refund(order: Int)
    case read(order: Int)
    /// A confirm (or a cancel) of the latest hold whose deadline has passed and that is still reserved, if any
    /// (the model knows which that is when the step runs).
    case lateCall(cancel: Bool)
    /// Reserves of fresh orders, all at once, on the same items.
    case burst(orders: [Int], lines: [Line])
    /// A burst during which Redis is killed (SIGKILL) and started again: calls in flight fail, and the client
    /// retries them once it is back.
    case burstWhileRedisRestarts(orders: [Int], lines: [Line])
    /// A burst sent over HTTP to a service process that is killed (SIGKILL) `afterMilliseconds` ms after the
    /// requests went out: a reserve that got no answer is retried through an instance that lives.
    case burstThroughKilledService(orders: [Int], lines: [Line], afterMilliseconds: Int)
    case fault(Fault)
    /// The retention period of an order that ended runs out: the outbox is drained and every key naming the order
    /// is deleted; its reserve is sent again (the body it had, `Features.retention`), confirmed at once or not, and
    /// the write-back worker runs (a drain). Skipped when the order has not ended. `rebuild`: right after the reserve,
    /// the item of its first line without a per-user limit or a code pool vanishes and is rebuilt from MySQL, while
    /// the duplicate hold waits for the worker.
    case retryAfterRetention(
        order: Int, lines: [Line], shortage: ShortageMode, options: ReserveOptions, confirm: Bool, rebuild: Bool = false
    )
    /// The call made through a second instance of the service on the same stores, whose clock is 2 s ahead.
    indirect case onSecondInstance(Step)

    public var description: String {
        switch self {
        case .setStock(let sku, let stock): "PUT stock \(sku) = \(stock)"
        case .setUserLimit(let sku, let limit): "PUT stock \(sku) perUserLimit \(limit)"
        case .setBackorderLimit(let sku, let limit): "PUT stock \(sku) backorderLimit \(limit)"
        case .setInfinite(let sku, let infinite): "PUT stock \(sku) infinite \(infinite)"
        case .setOneTimePool(let sku): "PUT pool \(sku) one-time"
        case .uploadCodes(let sku, let codes): "upload codes \(sku) \(codes)"
        case .adjust(let sku, let id, let delta): "adjust \(sku) a\(id) \(delta >= 0 ? "+" : "")\(delta)"
        case .reserve(let order, let lines, let shortage, let options): "reserve o\(order) \(lines) \(shortage.rawValue)\(options)"
        case .confirm(let order): "confirm o\(order)"
        case .cancel(let order): "cancel o\(order)"
        case .refund(let order): "refund o\(order)"
        case .read(let order): "read o\(order)"
        case .lateCall(let cancel): "\(cancel ? "cancel" : "confirm") the latest hold past its deadline"
        case .burst(let orders, let lines): "burst \(orders.map { "o\($0)" }) each \(lines)"
        case .burstWhileRedisRestarts(let orders, let lines):
            "burst \(orders.map { "o\($0)" }) each \(lines), Redis killed and restarted meanwhile"
        case .burstThroughKilledService(let orders, let lines, let after):
            "burst \(orders.map { "o\($0)" }) each \(lines) over HTTP, the service killed (SIGKILL) after \(after) ms"
        case .fault(let fault): "FAULT \(fault)"
        case .retryAfterRetention(let order, let lines, let shortage, let options, let confirm, let rebuild):
            "o\(order) forgotten (retention over), reserve again \(lines) \(shortage.rawValue)\(options)"
                + "\(rebuild ? ", its item rebuilt" : "")\(confirm ? ", confirm" : ""), drain"
        case .onSecondInstance(let step): "[instance 2, clock +2 s] \(step)"
        }
    }
}

/// What a program may do beyond the calls and key-level faults of the first model check. Programs of the same
/// seed without these are the first model check's programs, step for step (the seeds it found replay).
public struct Features: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// About a third of the calls go through a second instance whose clock is 2 s ahead.
    public static let secondInstance = Features(rawValue: 1)
    /// MariaDB goes down for a few steps now and then.
    public static let mysqlOutages = Features(rawValue: 2)
    /// Item 1 gets a per-user limit, and reserves name users (`ReferenceModel.user(_:)`).
    public static let userLimits = Features(rawValue: 4)

    /// Item 2 gets a backorder limit, and some reserves ask `backorder` instead of `reject`.
    public static let backorder = Features(rawValue: 8)
    /// Some reserves dispense (hold and confirm at once).
    public static let dispense = Features(rawValue: 16)
    /// Some reserves hold for one second; now and then a step expires those whose deadline passed.
    public static let expiry = Features(rawValue: 32)
    /// Processes die: Redis is killed and restarted (between steps, and during bursts), a worker process is killed
    /// in the middle of its work, a service process in the middle of a burst. The program runs on a Redis (or
    /// cluster) of its own when it kills Redis.
    public static let processKills = Features(rawValue: 64)
    /// Item 4 gets a one-time code pool: codes are uploaded (some again), held by orders of their own (the pool
    /// choosing, or named: some held or used already), confirmed, cancelled, refunded; its code set and item vanish.
    public static let codePools = Features(rawValue: 128)
    /// Item 5 never runs out (`InfiniteItemSteps`): held in every shortage mode, sold, refunded, set, adjusted, made
    /// finite and infinite again, and lost.
    public static let infiniteItems = Features(rawValue: 256)
    /// Now and then Redis is copied, and later it goes back to its copy (`Fault.copyRedis`, `Fault.goBack`).
    public static let goingBack = Features(rawValue: 512)
    /// Redis is full for a few steps now and then (`Fault.redisFull`); the program runs on a Redis of its own.
    public static let redisFull = Features(rawValue: 1024)
    /// Now and then an order that ended is forgotten by Redis and its reserve sent again (`Step.retryAfterRetention`).
    public static let retention = Features(rawValue: 2048)

    public static let all: Features = [
        .secondInstance, .mysqlOutages, .userLimits, .backorder, .dispense, .expiry, .processKills, .codePools,
        .infiniteItems, .goingBack, .redisFull, .retention,
    ]

    /// The item `codePools` gives a one-time pool (not one of `Program.items`: the drawn steps never name it).
    public static let codeItem: UInt64 = 4
    /// Where the orders of `codePools` are numbered from (apart from the drawn ones).
    public static let firstCodeOrder = 3_000_000

    /// The item `infiniteItems` makes infinite (not one of `Program.items`).
    public static let infiniteItem: UInt64 = 5
    /// Where the orders and adjustments of `infiniteItems` are numbered from.
    public static let firstInfiniteOrder = 4_000_000
    public static let firstInfiniteAdjustment = 500_000

    /// The per-user limit `userLimits` gives item 1.
    public static let userLimit: Int64 = 6
    /// The backorder limit `backorder` gives item 2.
    public static let backorderLimit: Int64 = 4
}

extension Program {
    /// Items the programs use; few, so orders meet on them.
    public static let items: [UInt64] = [1, 2, 3]

    /// Draws `count` steps from `seed`. Orders are mostly recent ones (so confirms, cancels and replays hit orders
    /// that exist), sometimes unknown ones; faults are about one step in eight. `features` are drawn from a second
    /// generator of the same seed, so that the steps the first one draws stay the same with or without them.
    public static func generate(seed: UInt64, count: Int, features: Features = .all) -> Program {
        var random = SplitMix64(seed: seed)
        var extra = SplitMix64(seed: seed ^ 0x5EC0_4D1A_57A6_E5ED)
        // the reserves' variants and the expiry steps, drawn apart so that the features before them stay as drawn
        var variants = SplitMix64(seed: seed ^ 0x0B5E_0DDE_7E11_A11E)
        var kills = SplitMix64(seed: seed ^ 0x0C1A_55DE_AD0F_F00D)
        var back = SplitMix64(seed: seed ^ 0x0BAC_C0B1_ED0F_F5E7)
        var pool = SplitMix64(seed: seed ^ 0x0C0D_E500_1A11_0CA7)
        var fullness = SplitMix64(seed: seed ^ 0x0F11_1ED0_0F5E_7A11)
        var retention = SplitMix64(seed: seed ^ 0x0E7E_4710_4AF7_E411)
        // whether a retry after retention meets a rebuild of its item: drawn apart, so that seeds found before it keep
        // every other step
        var retentionRebuild = SplitMix64(seed: seed ^ 0x0E7E_4710_0B11_D0E5)
        var reserved: [Int: (lines: [Line], shortage: ShortageMode, options: ReserveOptions)] = [:]
        var fullLeft = 0
        var nextCode = 0
        var nextCodeOrder = Features.firstCodeOrder
        var infinite = InfiniteItemSteps(seed: seed)
        var outageLeft = 0
        var steps: [Step] = Self.items.map { .setStock(sku: $0, stock: Int64.random(in: 5...30, using: &random)) }
        if features.contains(.userLimits) { steps.append(.setUserLimit(sku: 1, limit: Features.userLimit)) }
        if features.contains(.backorder) { steps.append(.setBackorderLimit(sku: 2, limit: Features.backorderLimit)) }
        func codes(from first: Int, count: Int) -> [String] { (first..<first + count).map { "c\($0)" } }
        if features.contains(.codePools) {
            steps += [
                .setStock(sku: Features.codeItem, stock: 0), .setOneTimePool(sku: Features.codeItem),
                .uploadCodes(sku: Features.codeItem, codes: codes(from: 0, count: 8)),
            ]
            nextCode = 8
        }
        if features.contains(.infiniteItems) { steps += InfiniteItemSteps.setUp }
        /// A step of the code pool's own, now and then.
        func codeStep() -> Step? {
            let roll = Int.random(in: 0..<100, using: &pool)
            let quantity = Int64.random(in: 1...3, using: &pool)
            let named = Int.random(in: 0..<3, using: &pool) == 0
            let recent = Int.random(in: max(Features.firstCodeOrder, nextCodeOrder - 5)...nextCodeOrder, using: &pool)
            let first = max(0, nextCode - Int.random(in: 0...2, using: &pool))
            let count = Int.random(in: 1...5, using: &pool)
            let picked = (0..<Int(quantity)).map { _ in "c\(Int.random(in: 0..<max(nextCode, 1), using: &pool))" }
            guard features.contains(.codePools) else { return nil }
            switch roll {
            case 0..<5:
                defer { nextCodeOrder += 1 }
                let wanted = named ? Array(Set(picked)).sorted() : []
                let line = Line(sku: Features.codeItem, quantity: named ? Int64(wanted.count) : quantity, codes: wanted)
                return .reserve(order: nextCodeOrder, lines: [line], shortage: .reject)
            case 5..<8: return .confirm(order: recent)
            case 8..<10: return .cancel(order: recent)
            case 10: return .refund(order: recent)
            case 11: return .read(order: recent)
            case 12..<14:
                nextCode = max(nextCode, first + count)
                return .uploadCodes(sku: Features.codeItem, codes: codes(from: first, count: count))
            case 14: return .fault(.deleteCodeSet(sku: Features.codeItem))
            case 15: return .fault(.deleteItem(sku: Features.codeItem))
            default: return nil
            }
        }
        var nextOrder = 0
        var nextAdjustment = 0
        var adjustments: [Int: (sku: UInt64, delta: Int64)] = [:]
        func someOrder() -> Int {
            // an order no reserve ever names
            if nextOrder == 0 || Int.random(in: 0..<10, using: &random) == 0 { return 1_000_000 + nextOrder }
            return Int.random(in: max(0, nextOrder - 6)..<nextOrder, using: &random)
        }
        func someLines() -> [Line] {
            let count = Int.random(in: 1...2, using: &random)
            return Array(Self.items.shuffled(using: &random).prefix(count)).sorted().map {
                Line(sku: $0, quantity: Int64.random(in: 1...4, using: &random))
            }
        }
        /// A reserve as the features vary it.
        func varied(_ step: Step) -> Step {
            guard case .reserve(let order, let lines, var shortage, var options) = step else { return step }
            let backorderRoll = Int.random(in: 0..<10, using: &variants)
            let dispenseRoll = Int.random(in: 0..<8, using: &variants)
            let shortRoll = Int.random(in: 0..<6, using: &variants)
            if features.contains(.backorder) && shortage == .reject && backorderRoll < 3 { shortage = .backorder }
            if features.contains(.dispense) && dispenseRoll == 0 { options.insert(.dispense) }
            if features.contains(.expiry) && shortRoll == 0 { options.insert(.shortLived) }
            return .reserve(order: order, lines: lines, shortage: shortage, options: options)
        }
        /// Time passes now and then: a confirm or a cancel of a hold past its deadline may follow at once, and the
        /// sweeper's work follows at once or later.
        func timePasses() {
            guard features.contains(.expiry) else { return }
            let roll = Int.random(in: 0..<60, using: &variants)
            let after = Int.random(in: 0..<4, using: &variants)
            guard roll == 0 else { return }
            steps.append(.fault(.deadlinesPass))
            if after < 2 { steps.append(.lateCall(cancel: after == 1)) }
            if after >= 2 { steps.append(.fault(.expireDue)) }
        }
        /// Processes die now and then; some bursts meet a Redis restart.
        func killed(_ step: Step) -> Step {
            let roll = Int.random(in: 0..<100, using: &kills)
            let after = Int.random(in: 0...400, using: &kills)
            if roll == 3 && features.contains(.userLimits) { steps.append(.fault(.deleteUsage(sku: 1))) }
            if roll == 4 && features.contains(.processKills) { steps.append(.fault(.deleteGenerationMarkers)) }
            if roll == 5 && features.contains(.processKills) { steps.append(.fault(.deleteExpiryIndex(shard: after % 4))) }
            if (6..<8).contains(roll) && features.contains(.processKills) {
                steps.append(.fault(.deleteDirectory(order: max(0, nextOrder - 1 - after % 5))))
            }
            guard features.contains(.processKills) else { return step }
            if roll == 0 { steps.append(.fault(.redisRestart)) }
            if roll == 1 || roll == 2 { steps.append(.fault(.workerKilled(afterMilliseconds: after))) }
            if case .burst(let orders, let lines) = step, roll >= 80 {
                return roll < 90
                    ? .burstWhileRedisRestarts(orders: orders, lines: lines)
                    : .burstThroughKilledService(orders: orders, lines: lines, afterMilliseconds: after / 4)
            }
            return step
        }
        /// A fault that lasts a few steps: `from` when `roll` is 0, `to` once `length` steps have passed (`left` counts).
        func lasting(_ left: inout Int, roll: Int, length: Int, from: Fault, to: Fault) {
            if left > 0 {
                left -= 1
                if left == 0 { steps.append(.fault(to)) }
            } else if roll == 0 {
                steps.append(.fault(from))
                left = length
            }
        }
        /// Adds a drawn step, with what the features make of it.
        func append(_ drawn: Step, poolToo: Bool = true) {
            let backRoll = Int.random(in: 0..<100, using: &back)
            if poolToo && features.contains(.goingBack) && backRoll < 2 {
                steps.append(.fault(backRoll == 0 ? .copyRedis : .goBack))
            }
            if poolToo, let codeStep = codeStep() { append(codeStep, poolToo: false) }
            if poolToo, features.contains(.infiniteItems), let step = infinite.next() { append(step, poolToo: false) }
            let step = killed(varied(drawn))
            if case .reserve(let order, let lines, let shortage, let options) = step, reserved[order] == nil {
                reserved[order] = (lines, shortage, options)
            }
            let retentionRoll = Int.random(in: 0..<40, using: &retention)
            let confirmRoll = Bool.random(using: &retention)
            let pick = Int.random(in: 0..<8, using: &retention)
            if features.contains(.retention), retentionRoll == 0, !reserved.isEmpty {
                let recent = reserved.keys.sorted().suffix(8)
                let order = recent[recent.index(recent.startIndex, offsetBy: pick % recent.count)]
                let body = reserved[order]!
                steps.append(
                    .retryAfterRetention(
                        order: order, lines: body.lines, shortage: body.shortage, options: body.options, confirm: confirmRoll,
                        rebuild: Int.random(in: 0..<3, using: &retentionRebuild) == 0
                    )
                )
            }
            timePasses()
            let instanceRoll = Int.random(in: 0..<3, using: &extra)
            let outageRoll = Int.random(in: 0..<40, using: &extra)
            let outageLength = Int.random(in: 2...8, using: &extra)
            if features.contains(.mysqlOutages) {
                lasting(&outageLeft, roll: outageRoll, length: outageLength, from: .mysqlDown, to: .mysqlUp)
            }
            let fullRoll = Int.random(in: 0..<50, using: &fullness)
            let fullLength = Int.random(in: 2...8, using: &fullness)
            if features.contains(.redisFull) {
                lasting(&fullLeft, roll: fullRoll, length: fullLength, from: .redisFull, to: .redisRoom)
            }
            if case .fault = step {
                steps.append(step)
            } else if features.contains(.secondInstance) && instanceRoll == 0 {
                steps.append(.onSecondInstance(step))
            } else {
                steps.append(step)
            }
        }
        while steps.count < count {
            let roll = Int.random(in: 0..<100, using: &random)
            let sku = Self.items.randomElement(using: &random)!
            switch roll {
            case 0..<28:
                let replay = nextOrder > 0 && Int.random(in: 0..<5, using: &random) == 0
                let order = replay ? someOrder() : nextOrder
                if !replay { nextOrder += 1 }
                let shortage: ShortageMode = Int.random(in: 0..<4, using: &random) == 0 ? .partial : .reject
                append(.reserve(order: order, lines: someLines(), shortage: shortage))
            case 28..<42: append(.confirm(order: someOrder()))
            case 42..<54: append(.cancel(order: someOrder()))
            case 54..<60: append(.refund(order: someOrder()))
            case 60..<66: append(.read(order: someOrder()))
            case 66..<70: append(.setStock(sku: sku, stock: Int64.random(in: 0...30, using: &random)))
            case 70..<76:
                let again = nextAdjustment > 0 && Int.random(in: 0..<4, using: &random) == 0
                let id = again ? Int.random(in: 0..<nextAdjustment, using: &random) : nextAdjustment
                if !again { nextAdjustment += 1 }
                var delta = Int64.random(in: -5...8, using: &random)
                if delta == 0 { delta = 1 }
                // a replay mostly repeats its body (a retry); sometimes it does not (a conflict)
                if again, let earlier = adjustments[id], Bool.random(using: &random) { delta = earlier.delta }
                let target = again ? adjustments[id]?.sku ?? sku : sku
                if adjustments[id] == nil { adjustments[id] = (target, delta) }
                append(.adjust(sku: target, id: id, delta: delta))
            case 76..<81:
                let orders = (0..<Int.random(in: 3...8, using: &random)).map { nextOrder + $0 }
                nextOrder += orders.count
                append(.burst(orders: orders, lines: [Line(sku: sku, quantity: Int64.random(in: 1...3, using: &random))]))
            case 81..<86: append(.fault(.deleteItem(sku: sku)))
            case 86..<88: append(.fault(.deleteReserveKey(order: someOrder(), sku: sku)))
            case 88: append(.fault(.deleteOrder(order: someOrder(), sku: sku)))
            case 89..<91:
                append(.fault(.deleteAdjustmentKey(sku: sku, id: Int.random(in: 0...max(0, nextAdjustment - 1), using: &random))))
            case 91..<95: append(.fault(.drain))
            case 95..<97: append(.fault(.drainThenLoseEverything))
            default: append(.fault(.reconcileFix))
            }
        }
        return Program(seed: seed, steps: steps, features: features)
    }
}
