import Inventory

/// What the service must do, as a pure value: items, orders and adjustments, and the one answer each call must get
/// from the state the earlier calls left. No I/O; the driver compares the real service against it after every step.
public struct ReferenceModel: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        /// On-hand units (held ones included; sold ones not): MySQL's stock after a drain.
        public var onHand: Int64
        public var reserved: Int64 = 0
        /// At most this many units per user, held or sold, over the item's whole life (0: no limit).
        public var userLimit: Int64 = 0
        /// How far below zero `available` may go for a backorder reserve.
        public var backorderLimit: Int64 = 0
        /// Never runs out: a hold takes nothing from what it has to sell, which is its on-hand stock (a sale takes
        /// the units from it; it may go below zero).
        public var infinite = false
        /// What the service answers as available: below zero only after backorders (an infinite item's on-hand).
        public var available: Int64 { infinite ? onHand : onHand - reserved }
    }

    public struct Order: Sendable, Equatable {
        public var status: ReservationStatus
        /// (sku, requested, reserved), in the order's own order; empty for a cancel of an order never reserved.
        public var lines: [ReservationLine]
        public var fingerprint: String
        /// Redis lost the order after the journal had it: it comes back from the journal, which keeps its request
        /// only as a hash (another body is still refused) and only its lines that hold something (`accepts`).
        public var fingerprintLost = false
        /// A cancel made before any reserve, then lost by Redis: its tombstone keeps the order closed, and a
        /// cancel again may be answered as made now or as a replay.
        public var tombstoneOnly = false
        /// Its hash was deleted alone (not a whole data loss): Redis finds the order again through a hold of it
        /// on an item the request names, not otherwise.
        public var hashDeleted = false
        /// The user the order was made for (nil: none named).
        public var user: String?
        /// Held for one second (`ReserveOptions.shortLived`): while it is still reserved, a confirm may find its
        /// deadline passed (and expire it).
        public var shortLived = false
        /// A short-lived hold whose deadline has passed for certain (`Fault.deadlinesPass`): a confirm expires it and
        /// is refused, the expiry step expires it.
        public var due = false
        /// The codes it holds or bought of the item with a code pool (sorted); nil until known (the pool chose them
        /// and the answer has not been seen yet).
        public var codes: [String]? = nil
        /// On a cluster, its directory vanished: it is found again through its parts, and a part that held nothing
        /// (a line of a partial hold that got none) may not be found (`accepts`).
        public var foundByParts = false
        /// Redis forgot it (its keys' retention ran out, `Step.retryAfterRetention`): a call finds it in the journal
        /// again, and a reserve (without a journal window, on async durability) holds anew: a duplicate hold the
        /// write-back worker takes back unless the order went on with it first.
        public var forgotten = false
        /// The order's journal row when it is a duplicate hold its order went on with (the earlier order's, as it
        /// ended): what MySQL's journal shows, and what the order is again once Redis loses it.
        public var journal: JournalState? = nil
        /// On a cluster, the items of the order's parts that came back from `journal` (a part of a duplicate hold
        /// lost): those lines are the journal's rows, and they move with the order (`JournalState.movedLines`).
        public var journalLines: Set<UInt64> = []
    }

    /// The one-time code pool of `Features.codeItem`: every code uploaded, and which are usable (not held by a
    /// reserved order, not sold).
    public struct CodePoolState: Sendable, Equatable {
        public var known: Set<String> = []
        public var usable: Set<String> = []
    }

    public internal(set) var items: [UInt64: Item] = [:]
    public internal(set) var orders: [Int: Order] = [:]
    /// Adjustments by (sku, id): their delta.
    public internal(set) var adjustments: [AdjustmentKey: Int64] = [:]
    /// Redis lost its data during the run: for a retention period (longer than any run) a reserve of an order Redis
    /// does not know asks the journal and its tombstones.
    public internal(set) var journalWindow = false

    /// Units each user holds or bought of an item with a per-user limit, as the service counts them.
    public internal(set) var usage: [UsageKey: Int64] = [:]
    /// The code pool of `Features.codeItem`, once it has one.
    public internal(set) var pool: CodePoolState?
    /// Orders Redis forgot whose reserve was sent again and held anew, by their journal row (`duplicatesSettled`).
    public internal(set) var forgottenEarlier: [Int: Order] = [:]
    /// Every reserve of an order Redis does not know meets the journal (sync durability: at its commit).
    public var reservesAskJournal = false

    public struct UsageKey: Hashable, Sendable {
        public let user: String
        public let sku: UInt64
    }

    public struct AdjustmentKey: Hashable, Sendable {
        public let sku: UInt64
        public let id: Int
    }

    /// Whether reserves name users (`Features.userLimits`): `user(_:)` for a program's reserves, `burstUser(_:)`
    /// for a burst's.
    public let namesUsers: Bool

    public init(namesUsers: Bool = false) {
        self.namesUsers = namesUsers
    }

    /// What a call answers: a reservation (made now or replayed), a stock level, or an error the API maps to 4xx.
    public enum Answer: Sendable, Equatable, CustomStringConvertible {
        case reservation(status: ReservationStatus, lines: [ReservationLine], replayed: Bool)
        case level(available: Int64, reserved: Int64)
        case failure(Failure)
        /// What a code upload did.
        case loaded(added: Int, duplicates: Int)

        public var description: String {
            switch self {
            case .reservation(let status, let lines, let replayed):
                "\(status.rawValue) \(lines.map { "\($0.skuId):\($0.requested):\($0.reserved)" })\(replayed ? " (replay)" : "")"
            case .level(let available, let reserved): "available \(available), reserved \(reserved)"
            case .failure(let failure): "\(failure)"
            case .loaded(let added, let duplicates): "\(added) codes added, \(duplicates) duplicates"
            }
        }
    }

    /// The 4xx answers, by kind (their details are the service's to word).
    public enum Failure: String, Sendable, Equatable, Hashable {
        case insufficientStock, orderClosed, idempotencyConflict, notFound, invalidState, belowReserved, unknownItems
        case userLimitExceeded, codeUnavailable, noCodePool
    }

    public static func fingerprint(
        _ lines: [Line], _ shortage: ShortageMode, user: String? = nil, options: ReserveOptions = []
    ) -> String {
        lines.sorted { $0.sku < $1.sku }.map(\.description).joined(separator: ",") + "|" + shortage.rawValue
            + (user.map { "|" + $0 } ?? "") + "\(options)"
    }

    // MARK: - Calls

    public mutating func setStock(
        sku: UInt64, stock: Int64, userLimit: Int64? = nil, backorderLimit: Int64? = nil, infinite: Bool? = nil
    ) -> Answer {
        let reserved = items[sku]?.reserved ?? 0
        let infinite = infinite ?? items[sku]?.infinite ?? false
        // (An infinite item sells whatever is held: its on-hand stock may be below it.)
        if stock < reserved && !infinite { return .failure(.belowReserved) }
        let item = Item(
            onHand: stock, reserved: reserved, userLimit: userLimit ?? items[sku]?.userLimit ?? 0,
            backorderLimit: backorderLimit ?? items[sku]?.backorderLimit ?? 0, infinite: infinite
        )
        items[sku] = item
        return .level(available: item.available, reserved: reserved)
    }

    /// The item gets a one-time code pool (it has no stock of its own yet; an item not set up yet is made, empty).
    public mutating func setOneTimePool(sku: UInt64) -> Answer {
        let item = items[sku] ?? Item(onHand: 0)
        items[sku] = item
        if pool == nil { pool = CodePoolState() }
        return .level(available: item.available, reserved: item.reserved)
    }

    /// Codes uploaded to the pool: those it did not know become usable stock.
    public mutating func upload(sku: UInt64, codes: [String]) -> Answer {
        guard var state = pool, items[sku] != nil else { return .failure(.noCodePool) }
        let fresh = Set(codes).subtracting(state.known)
        state.known.formUnion(fresh)
        state.usable.formUnion(fresh)
        pool = state
        items[sku]!.onHand += Int64(fresh.count)
        return .loaded(added: fresh.count, duplicates: codes.count - fresh.count)
    }

    /// Checks the codes a reserve (or a read) of `id` answered against what the model knows: the codes the order
    /// took, or, the first time a pool chose them, that they are as many as it holds, distinct and usable (they are
    /// then taken). Why they do not fit, or nil.
    public mutating func answeredCodes(order id: Int, _ codes: [String]) -> String? {
        guard var order = orders[id], order.lines.contains(where: { $0.skuId == Features.codeItem }) else { return nil }
        let answered = codes.sorted()
        if let known = order.codes {
            // An order that ended, come back from the journal, lists no code another order took after it gave it
            // back (CodePoolRepository.assignedCodes).
            let ended = order.status == .cancelled || order.status == .expired || order.status == .refunded
            let missing = Set(known).subtracting(answered)
            if order.fingerprintLost && ended && Set(answered).isSubset(of: known) && missing.isDisjoint(with: pool?.usable ?? []) {
                return nil
            }
            return known == answered ? nil : "o\(id) answered codes \(answered); it took \(known)"
        }
        let held = order.lines.filter { $0.skuId == Features.codeItem }.map(\.reserved).reduce(0, +)
        guard var state = pool, Int64(answered.count) == held, Set(answered).count == answered.count,
            Set(answered).isSubset(of: state.usable)
        else {
            return "o\(id) holds \(held) codes and answered \(answered); usable were \(pool?.usable.sorted() ?? [])"
        }
        if order.status == .reserved || order.status == .confirmed || order.status == .refunded {
            state.usable.subtract(answered)
        }
        if order.status == .refunded { state.usable.formUnion(answered) }
        pool = state
        order.codes = answered
        orders[id] = order
        return nil
    }

    /// The order's codes go back to the pool (a cancel, an expiry, a one-time pool's refund).
    mutating func giveBackCodes(_ order: Order) {
        guard let codes = order.codes, pool != nil else { return }
        pool!.usable.formUnion(codes)
    }

    public mutating func adjust(sku: UInt64, id: Int, delta: Int64) -> Answer {
        guard var item = items[sku] else { return .failure(.notFound) }
        let key = AdjustmentKey(sku: sku, id: id)
        if let earlier = adjustments[key] {
            if earlier != delta { return .failure(.idempotencyConflict) }
            return .level(available: item.available, reserved: item.reserved)
        }
        // A removal may not take available below zero; an addition is made also where backorders took it below.
        if delta < 0 && item.available + delta < 0 { return .failure(.belowReserved) }
        item.onHand += delta
        items[sku] = item
        adjustments[key] = delta
        return .level(available: item.available, reserved: item.reserved)
    }

    public mutating func reserve(
        order id: Int, lines: [Line], shortage: ShortageMode, user: String? = nil, options: ReserveOptions = []
    ) -> Answer {
        let fingerprint = Self.fingerprint(lines, shortage, user: user, options: options)
        if let order = orders[id] {
            if order.status == .cancelled || order.status == .expired { return .failure(.orderClosed) }
            if order.fingerprint != fingerprint { return .failure(.idempotencyConflict) }
            return .reservation(status: order.status, lines: order.lines, replayed: true)
        }
        if lines.contains(where: { items[$0.sku] == nil }) { return .failure(.unknownItems) }
        // codes asked for must each be usable (reserve.lua looks at them before stock)
        if lines.contains(where: { !$0.codes.isEmpty && !Set($0.codes).isSubset(of: pool?.usable ?? []) }) {
            return .failure(.codeUnavailable)
        }
        // As reserve.lua decides: per line, what stock allows, then what the user's allowance allows; a line over
        // the allowance refuses the whole reserve before a short line does (lines name distinct items).
        var held: [ReservationLine] = []
        var short = false
        var overLimit = false
        var outOfAllowance = false
        for line in lines {
            let item = items[line.sku]!
            let available = max(item.available, 0)
            var grant = line.quantity
            switch shortage {
            case _ where item.infinite:
                break
            case .reject:
                if line.quantity > available { short = true }
            case .backorder:
                if item.available - line.quantity < -item.backorderLimit { short = true }
            case .partial:
                grant = min(line.quantity, available)
            }
            if item.userLimit > 0, let user {
                let left = item.userLimit - (usage[UsageKey(user: user, sku: line.sku)] ?? 0)
                if left <= 0 { outOfAllowance = true }
                if grant > left {
                    if shortage == .partial { grant = max(left, 0) } else { overLimit = true }
                }
            }
            held.append(ReservationLine(skuId: line.sku, requested: line.quantity, reserved: grant))
        }
        if overLimit { return .failure(.userLimitExceeded) }
        if short { return .failure(.insufficientStock) }
        if held.allSatisfy({ $0.reserved == 0 }) { return .failure(outOfAllowance ? .userLimitExceeded : .insufficientStock) }
        for line in held {
            items[line.skuId]!.reserved += line.reserved
            count(user, line.skuId, line.reserved)
        }
        let named = lines.flatMap(\.codes).sorted()
        orders[id] = Order(
            status: .reserved, lines: held, fingerprint: fingerprint, user: user, shortLived: options.contains(.shortLived),
            codes: named.isEmpty ? nil : named
        )
        pool?.usable.subtract(named)
        if options.contains(.dispense) { return confirm(order: id) }
        return .reservation(status: .reserved, lines: held, replayed: false)
    }

    /// A confirm that may find the hold's deadline passed (a short-lived hold not yet known to be due): the hold
    /// expires and the confirm is refused. The model as it is then, and the answer; nil for any other order.
    public func confirmedLate(order id: Int) -> (model: ReferenceModel, answer: Answer)? {
        guard let order = orders[id], order.shortLived, !order.due, order.status == .reserved else { return nil }
        var late = self
        late.expire(order: id)
        return (late, .failure(.orderClosed))
    }

    /// Redis's clock has passed the deadline of every short-lived hold made so far.
    public mutating func deadlinesPassed() {
        for (id, order) in orders where order.shortLived && order.status == .reserved { orders[id]!.due = true }
    }

    /// The holds whose deadline has passed for certain and that are still reserved: the expiry step's work.
    public var dueHolds: [Int] {
        orders.filter { $0.value.due && $0.value.status == .reserved }.map(\.key).sorted()
    }

    /// The hold's deadline passed and the sweeper (or a late confirm) released it.
    public mutating func expire(order id: Int) {
        guard var order = orders[id], order.status == .reserved else { return }
        giveBackCodes(order)
        for line in order.lines {
            items[line.skuId]!.reserved -= line.reserved
            if !order.fingerprintLost { count(order.user, line.skuId, -line.reserved) }
        }
        order.status = .expired
        orders[id] = order
    }

    /// The refusals a reserve's lines give each on its own (as one Redis would judge that line alone): a cluster
    /// holds an order part after part and names the first part's reason, so any of these may be its answer.
    public func lineRefusals(lines: [Line], shortage: ShortageMode, user: String?) -> Set<Failure> {
        var reasons = Set<Failure>()
        for line in lines {
            guard let item = items[line.sku], !item.infinite else { continue }
            let available = max(item.available, 0)
            let grant = shortage == .partial ? min(line.quantity, available) : line.quantity
            if shortage == .reject, line.quantity > available { reasons.insert(.insufficientStock) }
            if shortage == .backorder, item.available - line.quantity < -item.backorderLimit {
                reasons.insert(.insufficientStock)
            }
            if shortage == .partial, available == 0 { reasons.insert(.insufficientStock) }
            if item.userLimit > 0, let user {
                let left = item.userLimit - (usage[UsageKey(user: user, sku: line.sku)] ?? 0)
                if grant > left || left <= 0 { reasons.insert(.userLimitExceeded) }
            }
        }
        return reasons
    }

    /// Moves a user's count of an item with a limit.
    mutating func count(_ user: String?, _ sku: UInt64, _ units: Int64) {
        guard let user, (items[sku]?.userLimit ?? 0) > 0, units != 0 else { return }
        usage[UsageKey(user: user, sku: sku), default: 0] += units
    }

    /// Redis rebuilt `sku` from MySQL: each user's count is the journal's, the units of their orders that hold or
    /// sold some (a cancelled order restored from the journal gave nothing back; the rebuild puts that right).
    public mutating func itemRebuilt(sku: UInt64) {
        guard (items[sku]?.userLimit ?? 0) > 0 else { return }
        for key in usage.keys where key.sku == sku { usage[key] = nil }
        // (by the journal's rows: a duplicate hold its order went on with is not one)
        for order in orders.values.map({ $0.journal.map(Order.init(journal:)) ?? $0 })
        where order.status != .cancelled && order.status != .expired {
            for line in order.lines where line.skuId == sku { count(order.user, sku, line.reserved) }
        }
    }

    public mutating func confirm(order id: Int) -> Answer {
        guard var order = orders[id] else { return .failure(.notFound) }
        switch order.status {
        case .reserved where order.due:
            expire(order: id)
            return .failure(.orderClosed)
        case .reserved:
            for line in order.lines {
                items[line.skuId]!.reserved -= line.reserved
                items[line.skuId]!.onHand -= line.reserved
            }
            order.status = .confirmed
            orders[id] = order
            return .reservation(status: .confirmed, lines: order.lines, replayed: false)
        case .confirmed, .refunded:
            return .reservation(status: order.status, lines: order.lines, replayed: true)
        case .cancelled, .expired:
            return .failure(.orderClosed)
        }
    }

    public mutating func cancel(order id: Int) -> Answer {
        guard var order = orders[id] else {
            // A cancel before any reserve is remembered: the order is closed for good.
            orders[id] = Order(status: .cancelled, lines: [], fingerprint: "")
            return .reservation(status: .cancelled, lines: [], replayed: false)
        }
        switch order.status {
        case .reserved:
            giveBackCodes(order)
            for line in order.lines {
                items[line.skuId]!.reserved -= line.reserved
                // An order restored from the journal gives nothing back: its reserve time is not known (README).
                if !order.fingerprintLost { count(order.user, line.skuId, -line.reserved) }
            }
            order.status = .cancelled
            orders[id] = order
            return .reservation(status: .cancelled, lines: order.lines, replayed: false)
        case .cancelled, .expired:
            return .reservation(status: order.status, lines: order.lines, replayed: true)
        case .confirmed, .refunded:
            return .failure(.invalidState)
        }
    }

    public mutating func refund(order id: Int) -> Answer {
        guard var order = orders[id] else { return .failure(.notFound) }
        switch order.status {
        case .confirmed:
            giveBackCodes(order)
            for line in order.lines { items[line.skuId]!.onHand += line.reserved }
            for sku in order.journalLines { order.journal?.movedLines[sku] = .refunded }
            order.status = .refunded
            orders[id] = order
            return .reservation(status: .refunded, lines: order.lines, replayed: false)
        case .refunded:
            return .reservation(status: .refunded, lines: order.lines, replayed: true)
        case .reserved, .cancelled, .expired:
            return .failure(.invalidState)
        }
    }

    /// Whether `answer` is as good as `expected` for a call on `order`: the same, or differing only where an order
    /// came back from the journal after Redis lost it, which keeps less than Redis did (known limits, listed in the
    /// README's model check section): the lines' requested quantities (a partial hold's come back as held, its lines of nothing held not at all), whether
    /// a cancel again of a tombstone is a replay, and a tombstone is not found by calls other than a reserve.
    public func accepts(_ answer: Answer, for expected: Answer, order id: Int?, call: String) -> Bool {
        if answer == expected { return true }
        guard let id, let order = orders[id] else { return false }
        if order.foundByParts, !order.fingerprintLost, case .reservation(let status, let lines, let replayed) = answer,
            case .reservation(status, let modelLines, replayed) = expected
        {
            // its parts that held nothing are not found without the directory
            return lines == modelLines.filter { $0.reserved > 0 } || lines == modelLines
        }
        guard order.fingerprintLost else { return false }
        switch (answer, expected) {
        case (.reservation(let status, let lines, let replayed), .reservation(let modelStatus, let modelLines, let modelReplayed)):
            let held = { (lines: [ReservationLine]) in lines.filter { $0.reserved > 0 }.map { "\($0.skuId):\($0.reserved)" } }
            return status == modelStatus && held(lines) == held(modelLines)
                && (replayed == modelReplayed || order.tombstoneOnly)
        case (.failure(.notFound), _):
            // only a reserve consults the tombstone (it must be refused: that is what the tombstone is for)
            return order.tombstoneOnly && call != "reserve"
        default:
            return false
        }
    }

    /// The user a program's reserve of `order` names: three users share the orders, so their allowances run out.
    public static func user(_ order: Int) -> String { "u\(order % 3)" }

    /// The user of a burst's reserve: one of its own, whose allowance a burst never exhausts.
    public static func burstUser(_ order: Int) -> String { "b\(order)" }

    public func read(order id: Int) -> Answer {
        guard let order = orders[id] else { return .failure(.notFound) }
        return .reservation(status: order.status, lines: order.lines, replayed: false)
    }

    public func level(sku: UInt64) -> Answer {
        guard let item = items[sku] else { return .failure(.notFound) }
        return .level(available: item.available, reserved: item.reserved)
    }

    /// A burst's answers, in any order the service chose to serialise them: each reserve held in full or refused
    /// for shortage (or as unknown, on an item the model does not have). Applies those held; returns why the answers fit no serialisation, or nil when they fit.
    public mutating func acceptBurst(orders ids: [Int], line: Line, held: [Int: Bool]) -> String? {
        guard let item = items[line.sku] else {
            return held.values.contains(true) ? "a burst on an unknown item held something" : nil
        }
        let granted = ids.filter { held[$0] == true }
        let total = Int64(granted.count) * line.quantity
        if total > max(item.available, 0) {
            return "the burst held \(total) units of item \(line.sku), which had \(item.available) available"
        }
        let left = item.available - total
        if granted.count < ids.count && left >= line.quantity {
            return "a reserve of the burst was refused while \(left) units of item \(line.sku) stayed available"
        }
        for id in granted {
            _ = reserve(order: id, lines: [line], shortage: .reject, user: namesUsers ? Self.burstUser(id) : nil)
        }
        return nil
    }
}
